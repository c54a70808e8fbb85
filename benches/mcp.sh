#!/usr/bin/env bash
# Benchmarks for `csc mcp` (RFC 0013). Not a timed test: prints figures.
#
#   1. `check_contract` round trip over stdio once the server runs: one
#      JSON-RPC request written to the server's stdin, its response read
#      back from stdout; median / p90 of N calls after warm-up.
#   2. `run_contract` of `true` in hardened mode (signed) through a running
#      server vs the same contract with `csc run --mode hardened` (a new
#      process per run), interleaved A B A B ...; medians and the ratio.
#      With `local` as second argument, both in local mode.
#
# Usage: benches/mcp.sh [N] [hardened|local]   (default N=200, hardened;
# needs python3; hardened mode needs what `csc doctor` checks)
set -euo pipefail
N="${1:-200}"
MODE="${2:-hardened}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PROFILE="${PROFILE:-dist}"
cargo build --profile "$PROFILE" --quiet --manifest-path "$ROOT/Cargo.toml"
CSC="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/csc"
WS="$(mktemp -d)"
trap 'rm -rf "$WS"' EXIT
cd "$WS"

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
write_true_bench t
mkdir -p receipts state

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$N" "$CSC" "$MODE" "$WS" <<'PY'
import json, os, statistics, subprocess, sys, time
n, csc, mode, ws = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
sign = ["--sign", "--signing-key", f"{ws}/seed.key", "--key-id", "bench"]
flags = ["--mode", mode] + sign + ["--state-dir", f"{ws}/state"]
contract = json.load(open(f"{ws}/true.json"))
srv = subprocess.Popen(
    [csc, "mcp", "--policy", f"{ws}/policy.yaml", "--receipt-dir", f"{ws}/receipts"] + flags,
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
next_id = [0]
def call(method, params):
    next_id[0] += 1
    msg = {"jsonrpc": "2.0", "id": next_id[0], "method": method, "params": params}
    srv.stdin.write((json.dumps(msg) + "\n").encode())
    while True:
        line = srv.stdout.readline()
        if not line:
            sys.exit("csc mcp stopped")
        r = json.loads(line)
        if r.get("id") == next_id[0]:
            return r
call("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "bench", "version": "0"}})
srv.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')

def timed(f):
    t = time.perf_counter_ns(); f(); return (time.perf_counter_ns() - t) / 1e6

def check():
    r = call("tools/call", {"name": "check_contract", "arguments": {"contract": contract}})
    assert r["result"]["structuredContent"]["decision"] == "allow", r
def mcp_run():
    r = call("tools/call", {"name": "run_contract", "arguments": {"contract": contract}})
    assert r["result"]["structuredContent"]["status"] == "success", r
def cli_run():
    p = subprocess.run([csc, "run", f"{ws}/true.json", f"{ws}/policy.yaml", "--quiet",
                        "--receipt-out", f"{ws}/r.json"] + flags,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert p.returncode == 0, p

def show(name, xs):
    xs = sorted(xs)
    p = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]
    print(f"{name:55s} median {statistics.median(xs):7.3f} ms  p10 {p(0.1):7.3f}  p90 {p(0.9):7.3f}  (n={len(xs)})")
    return statistics.median(xs)

for _ in range(20): check()
show("check_contract round trip (csc mcp, stdio)", [timed(check) for _ in range(n)])
for _ in range(5): mcp_run(); cli_run()
a, b = [], []
for _ in range(n):
    a.append(timed(mcp_run)); b.append(timed(cli_run))
ma = show(f"run_contract of true, {mode} (csc mcp)", a)
mb = show(f"csc run of true, {mode} (new process)", b)
print(f"ratio run_contract / csc run: {ma / mb:.2f}")
srv.stdin.close(); srv.wait()
PY
