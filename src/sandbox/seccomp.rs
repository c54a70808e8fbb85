//! seccomp-BPF filter, installed last before exec.
//!
//! Layout ([`compile`]): an architecture check (kill on mismatch) and the
//! x32-ABI guard (syscall numbers with `__X32_SYSCALL_BIT` set → `EPERM`;
//! seccompiler has none); a balanced tree on the syscall number that
//! denies every syscall of [`rule_table`] denied whatever its arguments
//! and allows every syscall nothing filters, so that any number is
//! decided within a dozen instructions (the kernel emulates the filter
//! for every number at install time); then csc's own checks: `clone3` →
//! `ENOSYS` (its flags live in memory and cannot be inspected, so libc
//! falls back to `clone`, whose flags argument *is* filtered for
//! `CLONE_NEW*` bits) and the socket calls; last, the rules that look at
//! arguments, compiled by `seccompiler` (allow by default, `EPERM` on
//! match).
//!
//! csc's own checks carry the socket policy ([`SocketPolicy`]):
//! `socket(2)` is allowed only for `AF_INET`/`AF_INET6` (the private
//! network namespace with `network: deny`, the host's with `full`) and
//! `AF_NETLINK` with protocol `NETLINK_ROUTE` (glibc's `getaddrinfo` /
//! `getifaddrs`); `AF_UNIX` only when the operator opted in
//! (`--allow-unix-sockets`); every other family (`AF_VSOCK`, `AF_PACKET`,
//! `AF_ALG`, `AF_BLUETOOTH`, ...) fails with `EAFNOSUPPORT`.
//! `socketpair(2)` is allowed for `AF_UNIX` only, and without the opt-in
//! only for connection-oriented types (`SOCK_STREAM`, `SOCK_SEQPACKET`):
//! a `SOCK_DGRAM` pair could `sendto(2)` any pathname datagram socket it
//! can name. There is no `socketcall(2)` multiplexer on the supported
//! architectures, and foreign ABIs that have one (i386 on x86_64) are
//! killed by the architecture check.

use std::collections::BTreeMap;

use super::error::{Cause, StepResult, failed};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

/// Which sockets the filter lets a sandboxed process create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketPolicy {
    /// Operator opt-in (`--allow-unix-sockets`): `socket(AF_UNIX, ...)`
    /// and every `socketpair(AF_UNIX, ...)` type are allowed.
    pub allow_unix_sockets: bool,
}

/// The only `AF_NETLINK` protocol allowed (`NETLINK_ROUTE`): what glibc's
/// resolver and `getifaddrs` use. Diagnostics (`NETLINK_SOCK_DIAG`),
/// uevents (`NETLINK_KOBJECT_UEVENT`), audit, netfilter, ... are refused.
pub const NETLINK_ROUTE: u32 = libc::NETLINK_ROUTE as u32;

impl SocketPolicy {
    /// Stable description for the sandbox profile.
    pub fn describe(self) -> serde_json::Value {
        let mut allowed: Vec<&str> = vec!["AF_INET", "AF_INET6", "AF_NETLINK (NETLINK_ROUTE only)"];
        if self.allow_unix_sockets {
            allowed.push("AF_UNIX");
        }
        serde_json::json!({
            "allow_unix_sockets": self.allow_unix_sockets,
            "socket_allowed_families": allowed,
            "socket_af_unix": if self.allow_unix_sockets { "allowed (operator opt-in)" } else { "errno EPERM" },
            "socket_other_families": "errno EAFNOSUPPORT",
            "netlink_other_protocols": "errno EPROTONOSUPPORT",
            "socketpair": if self.allow_unix_sockets {
                "AF_UNIX, any type"
            } else {
                "AF_UNIX with SOCK_STREAM or SOCK_SEQPACKET (else errno EPERM); other families errno EAFNOSUPPORT"
            },
            "socketcall": "none on this architecture; foreign ABIs are killed by the arch check",
        })
    }
}

/// Condition under which a listed syscall is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyWhen {
    /// Always.
    Always,
    /// `clone` with any `CLONE_NEW*` flag in its flags argument.
    CloneNewNamespace,
    /// `ioctl` with request `TIOCSTI` or `TIOCLINUX`.
    TerminalInjection,
    /// `personality` with anything but `PER_LINUX` (0) or the query value.
    NonDefaultPersonality,
}

impl DenyWhen {
    /// Stable name for profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyWhen::Always => "always",
            DenyWhen::CloneNewNamespace => "clone_flags_has_CLONE_NEW*",
            DenyWhen::TerminalInjection => "ioctl_TIOCSTI_or_TIOCLINUX",
            DenyWhen::NonDefaultPersonality => "personality_not_PER_LINUX",
        }
    }
}

/// `open_tree_attr` (Linux 6.15; same number on every architecture using
/// the unified table) — not yet in the libc crate.
const SYS_OPEN_TREE_ATTR: i64 = 467;
/// `TIOCSTI` (asm-generic value, shared by x86_64, aarch64 and riscv64).
pub const TIOCSTI: u64 = 0x5412;
/// `TIOCLINUX` (asm-generic value).
pub const TIOCLINUX: u64 = 0x541C;
/// `__X32_SYSCALL_BIT`.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Namespace-creating clone flags (CLONE_NEWTIME shares a bit with the
/// exit signal for clone(2) and can only be requested through clone3 /
/// unshare, both of which are refused).
pub const CLONE_NEW_FLAGS: [(&str, u64); 7] = [
    ("CLONE_NEWNS", libc::CLONE_NEWNS as u64),
    ("CLONE_NEWCGROUP", libc::CLONE_NEWCGROUP as u64),
    ("CLONE_NEWUTS", libc::CLONE_NEWUTS as u64),
    ("CLONE_NEWIPC", libc::CLONE_NEWIPC as u64),
    ("CLONE_NEWUSER", libc::CLONE_NEWUSER as u64),
    ("CLONE_NEWPID", libc::CLONE_NEWPID as u64),
    ("CLONE_NEWNET", libc::CLONE_NEWNET as u64),
];

macro_rules! always {
    ($($name:ident),* $(,)?) => {
        [$((stringify!($name), libc::$name as i64, DenyWhen::Always)),*]
    };
}

/// One denied syscall: `(name, number, condition)`.
pub type Rule = (&'static str, i64, DenyWhen);

/// Every denied syscall. Names drop the `SYS_` prefix.
pub fn rule_table() -> Vec<Rule> {
    let mut t: Vec<Rule> = always![
        SYS_mount,
        SYS_umount2,
        SYS_pivot_root,
        SYS_chroot,
        SYS_move_mount,
        SYS_open_tree,
        SYS_fsopen,
        SYS_fsconfig,
        SYS_fsmount,
        SYS_fspick,
        SYS_mount_setattr,
        SYS_unshare,
        SYS_setns,
        SYS_ptrace,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
        SYS_pidfd_getfd,
        SYS_io_uring_setup,
        SYS_io_uring_enter,
        SYS_io_uring_register,
        SYS_bpf,
        SYS_perf_event_open,
        SYS_keyctl,
        SYS_add_key,
        SYS_request_key,
        SYS_userfaultfd,
        SYS_open_by_handle_at,
        SYS_name_to_handle_at,
        SYS_kexec_load,
        SYS_kexec_file_load,
        SYS_init_module,
        SYS_finit_module,
        SYS_delete_module,
        SYS_acct,
        SYS_swapon,
        SYS_swapoff,
        SYS_reboot,
        SYS_syslog,
        SYS_quotactl,
        SYS_quotactl_fd,
    ]
    .to_vec();
    #[cfg(target_arch = "x86_64")]
    t.extend(always![SYS_uselib, SYS_lookup_dcookie]);
    t.push(("open_tree_attr", SYS_OPEN_TREE_ATTR, DenyWhen::Always));
    t.push(("clone", libc::SYS_clone, DenyWhen::CloneNewNamespace));
    t.push(("ioctl", libc::SYS_ioctl, DenyWhen::TerminalInjection));
    t.push((
        "personality",
        libc::SYS_personality,
        DenyWhen::NonDefaultPersonality,
    ));
    for e in &mut t {
        e.0 = e.0.strip_prefix("SYS_").unwrap_or(e.0);
    }
    t
}

/// Names of denied syscalls, sorted, with their condition.
pub fn denied_list() -> Vec<(String, &'static str)> {
    let mut v: Vec<(String, &'static str)> = rule_table()
        .into_iter()
        .map(|(n, _, w)| (n.to_string(), w.as_str()))
        .collect();
    v.push(("clone3".into(), "always (ENOSYS)"));
    #[cfg(target_arch = "x86_64")]
    v.push(("<x32 ABI: nr & 0x40000000>".into(), "always"));
    v.sort();
    v
}

#[cfg(target_arch = "x86_64")]
const ARCH: (TargetArch, u32) = (TargetArch::x86_64, 0xC000_003E); // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const ARCH: (TargetArch, u32) = (TargetArch::aarch64, 0xC000_00B7); // AUDIT_ARCH_AARCH64
#[cfg(target_arch = "riscv64")]
const ARCH: (TargetArch, u32) = (TargetArch::riscv64, 0xC000_00F3); // AUDIT_ARCH_RISCV64

/// Architecture name of the filter.
pub fn arch_name() -> &'static str {
    match ARCH.0 {
        TargetArch::x86_64 => "x86_64",
        TargetArch::aarch64 => "aarch64",
        TargetArch::riscv64 => "riscv64",
    }
}

fn cond(arg: u8, len: SeccompCmpArgLen, op: SeccompCmpOp, v: u64) -> StepResult<SeccompCondition> {
    SeccompCondition::new(arg, len, op, v).map_err(failed("seccomp condition"))
}

fn rules_for(when: DenyWhen) -> StepResult<Vec<SeccompRule>> {
    let rule = |c: Vec<SeccompCondition>| SeccompRule::new(c).map_err(failed("seccomp rule"));
    Ok(match when {
        DenyWhen::Always => Vec::new(),
        DenyWhen::CloneNewNamespace => CLONE_NEW_FLAGS
            .iter()
            .map(|&(_, bit)| {
                rule(vec![cond(
                    0,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(bit),
                    bit,
                )?])
            })
            .collect::<Result<_, _>>()?,
        DenyWhen::TerminalInjection => [TIOCSTI, TIOCLINUX]
            .iter()
            .map(|&req| {
                rule(vec![cond(
                    1,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    req,
                )?])
            })
            .collect::<Result<_, _>>()?,
        DenyWhen::NonDefaultPersonality => vec![rule(vec![
            cond(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, 0)?,
            cond(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, 0xffff_ffff)?,
        ])?],
    })
}

// Classic BPF opcodes.
/// `BPF_LD | BPF_W | BPF_ABS` (0x00 | 0x00 | 0x20).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const BPF_ALU_AND_K: u16 = 0x04 | 0x50;
/// `SOCK_TYPE_MASK`: the socket type without `SOCK_NONBLOCK`/`SOCK_CLOEXEC`.
const SOCK_TYPE_MASK: u32 = 0xf;

// The socket checks read the low 32 bits of `int` arguments.
#[cfg(not(target_endian = "little"))]
compile_error!("seccomp argument offsets assume a little-endian architecture");
/// Offset of the low 32 bits of syscall argument `i` in `struct seccomp_data`.
const fn arg_lo(i: u32) -> u32 {
    16 + 8 * i
}

fn ins(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The program's head: arch check (kill on mismatch), the syscall number
/// loaded, the x32 guard.
fn head() -> Vec<sock_filter> {
    let mut p = vec![
        ins(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        ins(BPF_JMP_JEQ_K, 1, 0, ARCH.1),
        ins(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        ins(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
    ];
    if ARCH.0 == TargetArch::x86_64 {
        p.push(ins(BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT));
        p.push(ins(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::EPERM as u32));
    }
    p
}

/// csc's own checks after the dispatch: clone3 → ENOSYS, socket policy.
fn own_checks(sockets: SocketPolicy) -> Vec<sock_filter> {
    let mut p = vec![
        ins(BPF_JMP_JEQ_K, 0, 1, libc::SYS_clone3 as u32),
        ins(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ];
    p.extend(guarded(libc::SYS_socket, socket_block(sockets)));
    p.extend(guarded(libc::SYS_socketpair, socketpair_block(sockets)));
    p
}

fn ret(v: u32) -> sock_filter {
    ins(BPF_RET_K, 0, 0, v)
}

fn errno(e: i32) -> sock_filter {
    ret(SECCOMP_RET_ERRNO | e as u32)
}

/// `body` runs only for syscall `nr` (accumulator holds the number on
/// entry); every path through `body` returns, so the accumulator still
/// holds the number for whatever follows.
fn guarded(nr: i64, body: Vec<sock_filter>) -> Vec<sock_filter> {
    let skip = u8::try_from(body.len()).unwrap_or(u8::MAX);
    let mut v = vec![ins(BPF_JMP_JEQ_K, 0, skip, nr as u32)];
    v.extend(body);
    v
}

/// The rule table split by condition: numbers denied whatever the
/// arguments, and the rules that look at arguments.
fn split_table() -> (Vec<u32>, Vec<Rule>) {
    let (always, conditional): (Vec<_>, Vec<_>) = rule_table()
        .into_iter()
        .partition(|(_, _, when)| *when == DenyWhen::Always);
    (
        always.iter().map(|(_, nr, _)| *nr as u32).collect(),
        conditional,
    )
}

/// Numbers the checks behind the dispatch decide: the conditional rules'
/// and csc's own (`clone3`, the socket calls).
fn decided_later(conditional: &[Rule]) -> Vec<u32> {
    let mut later: Vec<u32> = conditional.iter().map(|(_, nr, _)| *nr as u32).collect();
    later.extend([libc::SYS_clone3, libc::SYS_socket, libc::SYS_socketpair].map(|n| n as u32));
    later
}

/// Where a jump of [`dispatch`] goes before offsets are known.
#[derive(Clone, Copy)]
enum Target {
    Next,
    At(usize),
    /// The block's `EPERM` return.
    Deny,
    /// Past the block: the checks behind it decide.
    Later,
}

/// A balanced tree of comparisons on the accumulator (the syscall number):
/// `EPERM` for a number in `denied`, fall through past the block for one
/// in `later` (decided by the checks behind it), `ALLOW` for every other
/// number, each after at most ~8 instructions. Before it, every number
/// ran through seccompiler's linear chains of all ~45 rules: the kernel
/// emulates the filter for each syscall number when it is installed (the
/// action cache of `seccomp_cache_prepare`) and converts and JIT-compiles
/// every instruction, which made the `seccomp(2)` call before each
/// target's exec cost ~0.35 ms (docs/benchmarks.md, issue 14).
fn dispatch(denied: &[u32], later: &[u32]) -> StepResult<Vec<sock_filter>> {
    fn node(out: &mut Vec<(u16, Target, Target, u32)>, nrs: &[u32], denied: &[u32]) {
        if nrs.len() <= 3 {
            for &n in nrs {
                let hit = if denied.contains(&n) {
                    Target::Deny
                } else {
                    Target::Later
                };
                out.push((BPF_JMP_JEQ_K, hit, Target::Next, n));
            }
            out.push((BPF_RET_K, Target::Next, Target::Next, SECCOMP_RET_ALLOW));
            return;
        }
        let mid = nrs.len() / 2;
        let split = out.len();
        out.push((BPF_JMP_JGE_K, Target::Next, Target::Next, nrs[mid]));
        node(out, &nrs[..mid], denied);
        out[split].1 = Target::At(out.len());
        node(out, &nrs[mid..], denied);
    }
    let mut nrs: Vec<u32> = denied.iter().chain(later).copied().collect();
    nrs.sort_unstable();
    nrs.dedup();
    let mut sym = Vec::new();
    node(&mut sym, &nrs, denied);
    let deny_at = sym.len();
    sym.push((
        BPF_RET_K,
        Target::Next,
        Target::Next,
        SECCOMP_RET_ERRNO | libc::EPERM as u32,
    ));
    let offset = |i: usize, t: Target| -> StepResult<u8> {
        let to = match t {
            Target::Next => i + 1,
            Target::At(j) => j,
            Target::Deny => deny_at,
            Target::Later => deny_at + 1,
        };
        u8::try_from(to - (i + 1))
            .map_err(|_| Cause::refused("seccomp dispatch tree: jump out of range"))
    };
    sym.iter()
        .enumerate()
        .map(|(i, &(code, jt, jf, k))| Ok(ins(code, offset(i, jt)?, offset(i, jf)?, k)))
        .collect()
}

/// seccompiler's program for `table` (allow by default, `EPERM` on match).
fn rule_chains(table: &[Rule]) -> StepResult<BpfProgram> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &(_, nr, when) in table {
        rules.insert(nr, rules_for(when)?);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        ARCH.0,
    )
    .map_err(failed("seccomp filter"))?;
    filter
        .try_into()
        .map_err(failed::<seccompiler::BackendError>(
            "compile seccomp filter",
        ))
}

/// `socket(domain, type, protocol)`.
fn socket_block(sockets: SocketPolicy) -> Vec<sock_filter> {
    let unix = if sockets.allow_unix_sockets {
        ret(SECCOMP_RET_ALLOW)
    } else {
        errno(libc::EPERM)
    };
    // Jump offsets are relative to the next instruction.
    vec![
        /* 0 */ ins(BPF_LD_W_ABS, 0, 0, arg_lo(0)),
        /* 1 */ ins(BPF_JMP_JEQ_K, 8, 0, libc::AF_INET as u32), // -> 10
        /* 2 */ ins(BPF_JMP_JEQ_K, 7, 0, libc::AF_INET6 as u32), // -> 10
        /* 3 */ ins(BPF_JMP_JEQ_K, 2, 0, libc::AF_NETLINK as u32), // -> 6
        /* 4 */ ins(BPF_JMP_JEQ_K, 4, 0, libc::AF_UNIX as u32), // -> 9
        /* 5 */ errno(libc::EAFNOSUPPORT),
        /* 6 */ ins(BPF_LD_W_ABS, 0, 0, arg_lo(2)),
        /* 7 */ ins(BPF_JMP_JEQ_K, 2, 0, NETLINK_ROUTE), // -> 10
        /* 8 */ errno(libc::EPROTONOSUPPORT),
        /* 9 */ unix,
        /* 10 */ ret(SECCOMP_RET_ALLOW),
    ]
}

/// `socketpair(domain, type, protocol, sv)`.
fn socketpair_block(sockets: SocketPolicy) -> Vec<sock_filter> {
    let mut v = vec![
        ins(BPF_LD_W_ABS, 0, 0, arg_lo(0)),
        ins(BPF_JMP_JEQ_K, 1, 0, libc::AF_UNIX as u32),
        errno(libc::EAFNOSUPPORT),
    ];
    if sockets.allow_unix_sockets {
        v.push(ret(SECCOMP_RET_ALLOW));
    } else {
        v.extend([
            ins(BPF_LD_W_ABS, 0, 0, arg_lo(1)),
            ins(BPF_ALU_AND_K, 0, 0, SOCK_TYPE_MASK),
            ins(BPF_JMP_JEQ_K, 2, 0, libc::SOCK_STREAM as u32),
            ins(BPF_JMP_JEQ_K, 1, 0, libc::SOCK_SEQPACKET as u32),
            errno(libc::EPERM),
            ret(SECCOMP_RET_ALLOW),
        ]);
    }
    v
}

/// Compile the complete filter program: [`head`], the [`dispatch`] tree
/// (the rules without conditions decided in it), csc's [`own_checks`],
/// then seccompiler's chains for the rules that look at arguments.
pub fn compile(sockets: SocketPolicy) -> StepResult<BpfProgram> {
    let (denied, conditional) = split_table();
    let mut prog = head();
    prog.extend(dispatch(&denied, &decided_later(&conditional))?);
    prog.extend(own_checks(sockets));
    prog.extend(rule_chains(&conditional)?);
    if prog.len() > 4096 {
        return Err(Cause::refused(format!(
            "BPF program too long ({} instructions)",
            prog.len()
        )));
    }
    Ok(prog)
}

/// The program for `sockets`, compiled once per process and then shared:
/// the profile computed before a run and the (forked) helper use the same
/// copy, so a run compiles it at most once.
pub fn program(sockets: SocketPolicy) -> StepResult<&'static [sock_filter]> {
    static PROGRAMS: [std::sync::OnceLock<StepResult<BpfProgram>>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    PROGRAMS[usize::from(sockets.allow_unix_sockets)]
        .get_or_init(|| compile(sockets))
        .as_deref()
        .map_err(|e| Cause::refused(e.to_string()))
}

/// Bytes of the program as the kernel sees them (`struct sock_filter`
/// array, native endianness).
pub fn program_bytes(prog: &[sock_filter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prog.len() * 8);
    for i in prog {
        out.extend_from_slice(&i.code.to_ne_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_ne_bytes());
    }
    out
}

/// SHA-256 (hex) of [`program_bytes`].
pub fn digest(prog: &[sock_filter]) -> String {
    crate::canonical::sha256_hex(&program_bytes(prog))
}

/// Install the filter on the calling thread (requires `no_new_privs`).
pub(crate) fn install(prog: &[sock_filter]) -> StepResult<()> {
    seccompiler::apply_filter(prog).map_err(|e| Cause::refused(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal classic-BPF interpreter for the subset seccompiler and the
    /// prefix emit, to test the filter's decisions without a kernel.
    fn run(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        run_counted(prog, arch, nr, args).0
    }

    /// [`run`], also returning how many instructions ran.
    fn run_counted(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> (u32, usize) {
        let mut steps = 0;
        let mut data = Vec::new();
        data.extend_from_slice(&nr.to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for a in args {
            data.extend_from_slice(&a.to_ne_bytes());
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            steps += 1;
            let i = &prog[pc];
            let class = i.code & 0x07;
            match class {
                0x00 => {
                    let off = i.k as usize;
                    acc = u32::from_ne_bytes(data[off..off + 4].try_into().unwrap());
                    pc += 1;
                }
                0x05 => {
                    let op = i.code & 0xf0;
                    if op == 0x00 {
                        pc += 1 + i.k as usize;
                        continue;
                    }
                    let t = match op {
                        0x10 => acc == i.k,
                        0x20 => acc > i.k,
                        0x30 => acc >= i.k,
                        0x40 => acc & i.k != 0,
                        _ => panic!("op {op:#x}"),
                    };
                    pc += 1 + if t { i.jt as usize } else { i.jf as usize };
                }
                0x04 => {
                    // ALU: only AND with K is used by seccompiler.
                    assert_eq!(i.code & 0xf0, 0x50);
                    acc &= i.k;
                    pc += 1;
                }
                0x06 => return (i.k, steps),
                _ => panic!("class {class:#x}"),
            }
        }
    }

    const ALLOW: u32 = 0x7fff_0000;
    const EPERM: u32 = SECCOMP_RET_ERRNO | libc::EPERM as u32;

    #[test]
    fn denies_every_listed_syscall_unconditionally() {
        let prog = compile(SocketPolicy::default()).unwrap();
        for (name, nr, when) in rule_table() {
            if when == DenyWhen::Always {
                assert_eq!(run(&prog, ARCH.1, nr as u32, [0; 6]), EPERM, "{name}");
            }
        }
    }

    #[test]
    fn allows_ordinary_syscalls() {
        let prog = compile(SocketPolicy::default()).unwrap();
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_exit_group,
        ] {
            assert_eq!(run(&prog, ARCH.1, nr as u32, [0; 6]), ALLOW);
        }
    }

    #[test]
    fn clone_is_filtered_by_namespace_flags() {
        let prog = compile(SocketPolicy::default()).unwrap();
        let plain = (libc::CLONE_VM | libc::CLONE_FS | libc::SIGCHLD) as u64;
        assert_eq!(
            run(
                &prog,
                ARCH.1,
                libc::SYS_clone as u32,
                [plain, 0, 0, 0, 0, 0]
            ),
            ALLOW
        );
        for (name, bit) in CLONE_NEW_FLAGS {
            assert_eq!(
                run(
                    &prog,
                    ARCH.1,
                    libc::SYS_clone as u32,
                    [plain | bit, 0, 0, 0, 0, 0]
                ),
                EPERM,
                "{name}"
            );
        }
        assert_eq!(
            run(&prog, ARCH.1, libc::SYS_clone3 as u32, [0; 6]),
            SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
    }

    #[test]
    fn ioctl_and_personality_conditions() {
        let prog = compile(SocketPolicy::default()).unwrap();
        let io = libc::SYS_ioctl as u32;
        assert_eq!(run(&prog, ARCH.1, io, [1, TIOCSTI, 0, 0, 0, 0]), EPERM);
        assert_eq!(run(&prog, ARCH.1, io, [1, TIOCLINUX, 0, 0, 0, 0]), EPERM);
        // Upper 32 bits of the request are ignored by the kernel: still denied.
        assert_eq!(
            run(&prog, ARCH.1, io, [1, (1u64 << 32) | TIOCSTI, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(run(&prog, ARCH.1, io, [1, 0x5401, 0, 0, 0, 0]), ALLOW);
        let pers = libc::SYS_personality as u32;
        assert_eq!(run(&prog, ARCH.1, pers, [0; 6]), ALLOW);
        assert_eq!(
            run(&prog, ARCH.1, pers, [0xffff_ffff, 0, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(run(&prog, ARCH.1, pers, [0x0040000, 0, 0, 0, 0, 0]), EPERM);
    }

    #[test]
    fn wrong_arch_is_killed_and_x32_is_denied() {
        let prog = compile(SocketPolicy::default()).unwrap();
        assert_eq!(run(&prog, 0x4000_0003, 1, [0; 6]), SECCOMP_RET_KILL_PROCESS);
        if ARCH.0 == TargetArch::x86_64 {
            assert_eq!(run(&prog, ARCH.1, X32_SYSCALL_BIT | 1, [0; 6]), EPERM);
            assert_eq!(
                run(
                    &prog,
                    ARCH.1,
                    X32_SYSCALL_BIT | libc::SYS_execve as u32,
                    [0; 6]
                ),
                EPERM
            );
        }
    }

    fn sock(prog: &[sock_filter], nr: i64, domain: u64, ty: u64, proto: u64) -> u32 {
        run(prog, ARCH.1, nr as u32, [domain, ty, proto, 0, 0, 0])
    }

    #[test]
    fn socket_families_are_filtered() {
        let deny = compile(SocketPolicy::default()).unwrap();
        let opt_in = compile(SocketPolicy {
            allow_unix_sockets: true,
        })
        .unwrap();
        let eafno = SECCOMP_RET_ERRNO | libc::EAFNOSUPPORT as u32;
        let s = libc::SYS_socket;
        let stream = (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as u64;
        for prog in [&deny, &opt_in] {
            for af in [libc::AF_INET, libc::AF_INET6] {
                assert_eq!(sock(prog, s, af as u64, stream, 0), ALLOW);
                // The kernel reads an int: upper bits do not matter.
                assert_eq!(sock(prog, s, (1 << 32) | af as u64, stream, 0), ALLOW);
            }
            assert_eq!(sock(prog, s, libc::AF_NETLINK as u64, 3, 0), ALLOW);
            for proto in [
                libc::NETLINK_KOBJECT_UEVENT,
                libc::NETLINK_SOCK_DIAG,
                libc::NETLINK_AUDIT,
                libc::NETLINK_NETFILTER,
                libc::NETLINK_GENERIC,
            ] {
                assert_eq!(
                    sock(prog, s, libc::AF_NETLINK as u64, 3, proto as u64),
                    SECCOMP_RET_ERRNO | libc::EPROTONOSUPPORT as u32,
                    "netlink protocol {proto}"
                );
            }
            for af in [
                libc::AF_VSOCK,
                libc::AF_PACKET,
                libc::AF_ALG,
                libc::AF_BLUETOOTH,
                libc::AF_TIPC,
                libc::AF_KEY,
                libc::AF_CAN,
                libc::AF_XDP,
                libc::AF_RDS,
                42, // AF_QIPCRTR
                libc::AF_NFC,
                255,
            ] {
                assert_eq!(sock(prog, s, af as u64, stream, 0), eafno, "family {af}");
                assert_eq!(
                    sock(prog, s, (1 << 32) | af as u64, stream, 0),
                    eafno,
                    "family {af}"
                );
            }
        }
        assert_eq!(sock(&deny, s, libc::AF_UNIX as u64, stream, 0), EPERM);
        assert_eq!(sock(&opt_in, s, libc::AF_UNIX as u64, stream, 0), ALLOW);
    }

    #[test]
    fn socketpair_is_unix_and_connection_oriented() {
        let deny = compile(SocketPolicy::default()).unwrap();
        let opt_in = compile(SocketPolicy {
            allow_unix_sockets: true,
        })
        .unwrap();
        let sp = libc::SYS_socketpair;
        let unix = libc::AF_UNIX as u64;
        for ty in [libc::SOCK_STREAM, libc::SOCK_SEQPACKET] {
            let ty = (ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) as u64;
            assert_eq!(sock(&deny, sp, unix, ty, 0), ALLOW);
            assert_eq!(sock(&opt_in, sp, unix, ty, 0), ALLOW);
        }
        let dgram = (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as u64;
        assert_eq!(sock(&deny, sp, unix, dgram, 0), EPERM);
        assert_eq!(sock(&opt_in, sp, unix, dgram, 0), ALLOW);
        for prog in [&deny, &opt_in] {
            for af in [libc::AF_INET, libc::AF_TIPC, libc::AF_VSOCK] {
                assert_eq!(
                    sock(prog, sp, af as u64, 1, 0),
                    SECCOMP_RET_ERRNO | libc::EAFNOSUPPORT as u32
                );
            }
        }
    }

    #[test]
    fn socket_policy_changes_the_program() {
        let a = digest(&compile(SocketPolicy::default()).unwrap());
        let b = digest(
            &compile(SocketPolicy {
                allow_unix_sockets: true,
            })
            .unwrap(),
        );
        assert_ne!(a, b);
    }

    #[test]
    fn digest_is_stable() {
        assert_eq!(
            digest(&compile(SocketPolicy::default()).unwrap()),
            digest(&compile(SocketPolicy::default()).unwrap())
        );
        assert_eq!(digest(&compile(SocketPolicy::default()).unwrap()).len(), 64);
    }

    /// The program as it was before the dispatch tree: csc's checks, then
    /// seccompiler's chains for the whole rule table.
    fn chains_only(sockets: SocketPolicy) -> Vec<sock_filter> {
        let mut p = head();
        p.extend(own_checks(sockets));
        p.extend(rule_chains(&rule_table()).unwrap());
        p
    }

    /// The tree changes no decision: every syscall number (native, x32,
    /// foreign arch) with every argument the rules look at gets the same
    /// verdict as from the chains of the whole table. Fails if the tree
    /// allows or denies a number the chains decide otherwise.
    #[test]
    fn the_dispatch_tree_changes_no_decision() {
        let (mut listed, conditional) = split_table();
        listed.extend(decided_later(&conditional));
        let values: [u64; 12] = [
            0,
            libc::AF_UNIX as u64,
            libc::AF_INET as u64,
            libc::AF_INET6 as u64,
            libc::AF_NETLINK as u64,
            libc::AF_PACKET as u64,
            libc::SOCK_DGRAM as u64,
            libc::SOCK_SEQPACKET as u64,
            libc::TIOCSTI,
            libc::CLONE_NEWUSER as u64,
            0xffff_ffff,
            4,
        ];
        for policy in [false, true] {
            let new = compile(SocketPolicy {
                allow_unix_sockets: policy,
            })
            .unwrap();
            let old = chains_only(SocketPolicy {
                allow_unix_sockets: policy,
            });
            let mut nrs: Vec<u32> = (0..1024).collect();
            nrs.extend((0..1024).map(|n| n | X32_SYSCALL_BIT));
            nrs.extend([0x3fff_ffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff]);
            for nr in nrs {
                for arch in [ARCH.1, 0x4000_0003] {
                    let mut argsets = vec![[0u64; 6], [u64::MAX; 6]];
                    if listed.contains(&nr) {
                        for a in values {
                            for b in values {
                                for c in values {
                                    argsets.push([a, b, c, 0, 0, 0]);
                                }
                            }
                        }
                    }
                    for args in argsets {
                        assert_eq!(
                            run(&new, arch, nr, args),
                            run(&old, arch, nr, args),
                            "nr {nr:#x} arch {arch:#x} args {args:?} unix {policy}"
                        );
                    }
                }
            }
        }
    }

    /// What the kernel emulates for each syscall number at install time,
    /// and converts and compiles: every number decided without looking at
    /// arguments is decided within a dozen instructions, in a program
    /// under two thirds as long as the chains of the whole table.
    #[test]
    fn numbers_are_decided_within_a_few_instructions() {
        let prog = compile(SocketPolicy::default()).unwrap();
        let old = chains_only(SocketPolicy::default());
        let later = decided_later(&split_table().1);
        let mut longest = (0, 0);
        for nr in (0..1024u32).filter(|nr| !later.contains(nr)) {
            let (_, steps) = run_counted(&prog, ARCH.1, nr, [0; 6]);
            let (_, before) = run_counted(&old, ARCH.1, nr, [0; 6]);
            longest = (longest.0.max(steps), longest.1.max(before));
        }
        assert!(longest.0 <= 12, "{} instructions for a number", longest.0);
        assert!(longest.1 > 50, "the chains alone took {}", longest.1);
        assert!(
            prog.len() * 3 < old.len() * 2,
            "{} instructions against {}",
            prog.len(),
            old.len()
        );
    }
}
