#!/usr/bin/env bash
# Side-by-side benchmark of a hardened csc run against bubblewrap (issue 14).
# Not a timed test: prints figures.
#
# In ONE invocation, interleaved A B C D A B C D … (so drifting machine load
# hits every command alike), whole processes timed with posix_spawn + wait4:
#   A  csc run --mode hardened, signed receipt, of `true`
#   B  bwrap --unshare-all --die-with-parent, read-only /usr, /etc and the
#      workspace, of `true` (no Landlock, seccomp, policy, signature, receipt)
#   C  csc run --mode local, signed receipt, of `true`
#   D  csc check of the same contract and policy
# CPU ms is user+system time of the whole process tree (wait4 rusage, the
# harness being a child subreaper so that processes a command leaves behind,
# like bwrap's pid-1 child, are counted too), which a loaded machine
# distorts far less than wall time.
# Prints medians, p10/p90, the hardened csc/bwrap ratio, and peak RSS (GNU
# time's %M: the largest process of the tree, max over 10 runs; not from
# the timing harness, whose posix_spawn would report its own RSS).
#
# Usage: benches/hardened_vs_bwrap.sh [N]      (default N=200 rounds)
#   CSC=path  use that binary (default: build and use `--profile dist`)
#   EXTRA="cmd …"  also time this command line in the rotation (E); several
#                  command lines separated by " ;; " (E, F, …), e.g. the
#                  same hardened run with a before and an after binary
# Needs: bwrap (apt-get install -y bubblewrap), python3, /usr/bin/time.
set -euo pipefail
N="${1:-200}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
prepare_true_bench

echo "csc: $CSC ($(stat -c %s "$CSC") bytes; $(file -b "$CSC" | cut -d, -f1-2))"
echo "bwrap: $($BWRAP --version)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
echo "receipt filesystem: $(df -T "$WS" | awk 'NR==2{print $2}'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$N" "$CSC" "$BWRAP" "$WS" "${EXTRA:-}" <<'PY'
import os, shlex, statistics, sys, time
n, csc, bwrap, ws, extra = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
devnull = os.open("/dev/null", os.O_RDWR)
fa = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
      (os.POSIX_SPAWN_DUP2, devnull, 2)]
sign = ["--quiet", "--sign", "--signing-key", "seed.key", "--key-id", "bench",
        "--state-dir", "state"]
cmds = [
    ("csc run --mode hardened (signed)",
     [csc, "run", "true.json", "policy.yaml", "--mode", "hardened",
      "--receipt-out", "out/h.json"] + sign),
    ("bwrap --unshare-all, ro /usr /etc workspace",
     [bwrap, "--unshare-all", "--die-with-parent", "--new-session",
      "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
      "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
      "--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev",
      "--tmpfs", "/tmp", "--ro-bind", ws, ws,
      "--chdir", ws, "/usr/bin/true"]),
    ("csc run --mode local (signed)",
     [csc, "run", "true.json", "policy.yaml", "--receipt-out", "out/l.json"] + sign),
    ("csc check", [csc, "check", "true.json", "policy.yaml"]),
]
for e in (x.strip() for x in extra.split(" ;; ")):
    if e:
        cmds.append(("extra: " + e, shlex.split(e)))

# Child subreaper: bwrap exits without reaping its pid-1 child (which then
# tears the namespaces down on its own), so wait4 on bwrap alone would miss
# that child's CPU. Orphans are reparented to this harness and reaped (and
# counted) below; wall time stays "until the command exits".
import ctypes
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER

def run(argv):
    t = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, {"PATH": "/usr/bin:/bin"}, file_actions=fa)
    _, status, ru = os.wait4(pid, 0)
    dt = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed ({os.waitstatus_to_exitcode(status)}): {shlex.join(argv)}")
    c = ru.ru_utime + ru.ru_stime
    while True:
        try:
            _, _, ru = os.wait4(-1, 0)
        except ChildProcessError:
            break
        c += ru.ru_utime + ru.ru_stime
    return dt, c

def peak_rss_mib(argv):
    best = 0
    for _ in range(10):
        r, w = os.pipe()
        fa2 = fa[:2] + [(os.POSIX_SPAWN_DUP2, w, 2)]
        pid = os.posix_spawn("/usr/bin/time", ["/usr/bin/time", "-f", "%M"] + argv,
                             {"PATH": "/usr/bin:/bin"}, file_actions=fa2)
        os.close(w)
        with os.fdopen(r) as f:
            out = f.read().split()
        os.waitpid(pid, 0)
        best = max(best, int(out[-1]))
    return best / 1024

for _ in range(10):
    for _, argv in cmds:
        run(argv)
times = [[] for _ in cmds]
cpu = [[] for _ in cmds]
for _ in range(n):
    for i, (_, argv) in enumerate(cmds):
        dt, c = run(argv)
        times[i].append(dt * 1e3)
        cpu[i].append(c * 1e3)
rss = [peak_rss_mib(argv) for _, argv in cmds]
print(f"load average after: {open('/proc/loadavg').read().split()[:3]}; rounds: {n}")
print(f"| command | median ms | p10 ms | p90 ms | CPU ms (median) | peak RSS MiB (max) |")
print(f"|---|---|---|---|---|---|")
med = []
cmed = []
for i, (name, _) in enumerate(cmds):
    t = sorted(times[i])
    p = lambda q: t[min(len(t) - 1, int(q * len(t)))]
    med.append(statistics.median(t))
    cmed.append(statistics.median(cpu[i]))
    print(f"| {name} | {med[-1]:.2f} | {p(0.1):.2f} | {p(0.9):.2f} | {cmed[-1]:.2f} | {rss[i]:.1f} |")
print(f"hardened csc / bwrap: wall {med[0] / med[1]:.2f}, CPU {cmed[0] / cmed[1]:.2f}")
for i in range(4, len(cmds)):
    print(f"extra / bwrap: wall {med[i] / med[1]:.2f}, CPU {cmed[i] / cmed[1]:.2f}; "
          f"extra / hardened csc: wall {med[i] / med[0]:.2f}, CPU {cmed[i] / cmed[0]:.2f}")
PY
