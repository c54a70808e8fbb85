#!/usr/bin/env bash
# Benchmark `csc check` end to end (process start, load, validate, decide).
#
# Usage: benches/check.sh [RUNS]
# Builds the shipped binary (`--profile dist`; PROFILE=release for the
# quick build), then times `csc check` on a typical contract
# and policy. Uses hyperfine when installed, otherwise a Python timer over
# RUNS runs (default 200) reporting the median wall time.
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS="${1:-200}"
CONTRACT=examples/contracts/ci-test-run.json
POLICY=policies/ci-build-test.yaml
PROFILE="${PROFILE:-dist}"
BIN="target/$PROFILE/csc"
# The operator flags `csc run` needs for this contract: without them
# `check` (like `run`) refuses its env_allow names.
FLAGS="--allow-env HOME --allow-env CARGO_HOME --allow-env RUSTUP_HOME"

cargo build --profile "$PROFILE" --quiet
# shellcheck disable=SC2086
"$BIN" check "$CONTRACT" "$POLICY" $FLAGS >/dev/null  # must be an allow

echo "machine: $(uname -srm); $(nproc) CPU(s): $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "command: $BIN check $CONTRACT $POLICY $FLAGS"

if command -v hyperfine >/dev/null 2>&1; then
    hyperfine --warmup 20 --runs "$RUNS" -N \
        --export-json target/bench-check.json \
        "$BIN check $CONTRACT $POLICY $FLAGS"
    python3 - <<'PY'
import json, statistics
r = json.load(open("target/bench-check.json"))["results"][0]
print(f"median: {statistics.median(r['times']) * 1000:.3f} ms over {len(r['times'])} runs")
PY
else
    # shellcheck disable=SC2086
    python3 - "$RUNS" "$BIN" "$CONTRACT" "$POLICY" $FLAGS <<'PY'
import statistics, subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2:]
cmd = [cmd[0], "check", *cmd[1:]]
for _ in range(20):
    subprocess.run(cmd, stdout=subprocess.DEVNULL)
times = []
for _ in range(runs):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL)
    times.append(time.perf_counter() - t)
print(f"median: {statistics.median(times) * 1000:.3f} ms over {runs} runs (python timer)")
PY
fi
