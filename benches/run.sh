#!/usr/bin/env bash
# Benchmarks for `csc run` (local mode). Not a timed test: prints figures.
#
#   1. one-command contract running `true`, signed receipt: median wall time
#      of the whole csc process (N runs, after warm-up);
#   2. a command writing 1 GiB to stdout under the default 10 MiB cap,
#      --quiet: wall time, drain rate, peak RSS.
#
# Usage: benches/run.sh [N]   (default N=300; needs python3 for timing)
set -euo pipefail
N="${1:-300}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PROFILE="${PROFILE:-dist}"
cargo build --profile "$PROFILE" --quiet --manifest-path "$ROOT/Cargo.toml"
CSC="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/csc"
WS="$(mktemp -d)"
trap 'rm -rf "$WS"' EXIT
cd "$WS"

cat > policy.yaml <<POL
policy_schema_version: csc.policy.v0.1
name: bench
allow_commands: ["true", "dd"]
allowed_effect_types: [observe]
allowed_risk_classes: [low]
max_timeout_sec: 600
network: deny
allow_secret_refs: false
allowed_cwd_prefixes: ["$WS"]
allowed_read_prefixes: ["$WS"]
POL
contract() { # id argv-json
  cat <<CON
{"version":"csc.v0.1","contract_id":"bench-$1","intent":"bench","actor":{"agent_id":"a","session_id":"s","initiating_user":"u","delegation_scope":"d"},
"commands":[{"id":"$1","exec":{"argv":$2},"cwd":"$WS","read_paths":[],"write_paths":[],"network":"deny","env_allow":[],"secret_refs":[],"timeout_sec":600,"proposed_effect_type":"observe"}],
"risk_class":"low","approval_mode":"policy_only","justification":"bench"}
CON
}
contract true '["true"]' > true.json
contract big '["dd","if=/dev/zero","bs=1M","count=1024","status=none"]' > big.json
head -c 32 /dev/urandom > seed.key

echo "filesystem of the workspace: $(df -T "$WS" | awk 'NR==2{print $2}')"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$N" "$CSC" <<'PY'
import os, sys, time, statistics
n, csc = int(sys.argv[1]), sys.argv[2]
devnull = os.open("/dev/null", os.O_RDWR)
fa = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]

def run(argv):
    t = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, dict(os.environ), file_actions=fa)
    _, status, usage = os.wait4(pid, 0)
    dt = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"csc failed: {argv}")
    return dt, usage

def bench_true(receipt, label):
    argv = [csc, "run", "true.json", "policy.yaml", "--receipt-out", receipt,
            "--quiet", "--sign", "--signing-key", "seed.key", "--key-id", "bench"]
    for _ in range(20):
        run(argv)
    ts = sorted(run(argv)[0] for _ in range(n))
    pct = lambda p: ts[min(len(ts) - 1, int(len(ts) * p))] * 1e3
    print(f"[1] signed `true` run, receipt on {label}: median {statistics.median(ts)*1e3:.2f} ms "
          f"(p10 {pct(0.1):.2f}, p90 {pct(0.9):.2f}; n={n})")

bench_true("out/receipt.json", "the workspace filesystem (fsync'd)")
if os.path.isdir("/dev/shm"):
    shm = f"/dev/shm/csc-bench-{os.getpid()}/receipt.json"
    bench_true(shm, "tmpfs /dev/shm")
    os.remove(shm)
    os.rmdir(os.path.dirname(shm))

argv = [csc, "run", "big.json", "policy.yaml", "--receipt-out", "out/big.json", "--quiet"]

def run_big():
    # csc's own peak RSS: VmHWM of its address space, sampled from /proc
    # while it runs (wait4's ru_maxrss would also count the writer and the
    # spawning python process).
    t = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, dict(os.environ), file_actions=fa)
    hwm = 0
    while True:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        hwm = max(hwm, int(line.split()[1]))
        except OSError:
            pass
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.002)
    dt = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("csc failed on the 1 GiB run")
    return dt, hwm

results = [run_big() for _ in range(5)]
dts = sorted(r[0] for r in results)
hwm = max(r[1] for r in results)
med = statistics.median(dts)
print(f"[2] 1 GiB stdout, default cap, --quiet: median {med:.3f} s wall "
      f"({1/med:.2f} GiB/s incl. process start), best {dts[0]:.3f} s; "
      f"csc peak RSS {hwm/1024:.1f} MiB (max of 5 runs)")
PY
grep -q '"stdout_truncated": true' out/big.json && echo "    receipt: stdout_truncated=true"
