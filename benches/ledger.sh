#!/usr/bin/env bash
# Benchmark the receipt ledger (RFC 0011). Not a timed test: prints figures.
#
#   bash benches/ledger.sh [COUNT]        (default 100000)
#
# Builds `--profile dist` (PROFILE=release or debug for others), appends COUNT receipts to a fresh state store (each in its
# own durable transaction, as `csc run --ledger` does; per-append latency),
# signs a checkpoint, then times `csc ledger verify` of the whole log (best
# of 3), an inclusion proof, and prints the proof size.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT="${1:-100000}"
# PROFILE=debug measures a dev build instead (slower; an upper bound).
PROFILE="${PROFILE:-dist}"
# NO_BUILD=1 measures the binaries already built.
if [ -n "${NO_BUILD:-}" ]; then
  :
elif [ "$PROFILE" != debug ]; then
  cargo build --profile "$PROFILE" --quiet --bin csc --example ledger_bench
else
  cargo build --quiet --bin csc --example ledger_bench
fi
T="${CARGO_TARGET_DIR:-target}/$PROFILE"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
chmod 700 "$WORK"
"$T"/examples/ledger_bench "$COUNT" "$WORK/state"
# Which flushes a run makes (RFC 0011 "Durability"): a new store, 1 append,
# then 20 runs of open + append + close (and 20 baseline fdatasyncs).
if command -v strace >/dev/null; then
  strace -f -y -e trace=fsync,fdatasync -o "$WORK/strace.log" \
    "$T"/examples/ledger_bench 1 "$WORK/strace-state" 20 >/dev/null
  echo "flushes of a new store + 1 append + 20 runs, then the run-end phase (strace -f -y; expect one fdatasync of ledger.log per append, the new store's own flushes, the receipts' fsyncs, and no directory fsync per append):"
  sed -E 's/^[0-9]+ +//; s/ = .*//; s/\([0-9]+</(</; s#/[^>]*/##' "$WORK/strace.log" | sort | uniq -c
fi
KEY=tests/data/interop/keys/test-key.seed.raw
PUB=$(python3 -c 'import base64,sys; print(base64.b64encode(open(sys.argv[1],"rb").read()).decode())' tests/data/interop/keys/test-key.pub.raw)
printf '{"keyring_version":"csc.keyring.v1","keys":[{"key_id":"bench","public_key":"%s"}]}\n' "$PUB" > "$WORK/ring.json"
start=$(date +%s.%N)
"$T"/csc ledger checkpoint --signing-key "$KEY" --key-id bench --state-dir "$WORK/state"
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" 'BEGIN { printf "checkpoint (re-verifies the log, then signs): %.3fs\n", b - a }'
best=""
for run in 1 2 3; do
  start=$(date +%s.%N)
  "$T"/csc ledger verify --state-dir "$WORK/state" --keyring "$WORK/ring.json" >"$WORK/out"
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
  echo "verify run $run: $(tail -1 "$WORK/out") in ${secs}s"
  if [ -z "$best" ] || awk -v s="$secs" -v b="$best" 'BEGIN { exit !(s < b) }'; then best=$secs; fi
done
echo "ledger verify: $COUNT entries, best ${best}s"
"$T"/csc ledger export --state-dir "$WORK/state" > "$WORK/export.jsonl"
start=$(date +%s.%N)
"$T"/csc ledger verify --export "$WORK/export.jsonl" --keyring "$WORK/ring.json" | tail -1
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" 'BEGIN { printf "ledger verify --export: %.3fs\n", b - a }'
# An inclusion proof for a receipt in the middle of the log.
python3 - "$WORK/export.jsonl" "$((COUNT / 2))" "$WORK/receipt.json" <<'PY'
import json, sys
with open(sys.argv[1]) as f:
    for line in f:
        e = json.loads(line)
        if e.get("type") == "entry" and e["index"] == int(sys.argv[2]):
            json.dump(e["receipt"], open(sys.argv[3], "w"))
            break
PY
start=$(date +%s.%N)
"$T"/csc ledger prove "$WORK/receipt.json" --state-dir "$WORK/state" > "$WORK/proof.json"
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" 'BEGIN { printf "ledger prove: %.3fs\n", b - a }'
python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); print("inclusion proof: %d hashes for %d entries, %d bytes" % (len(p["audit_path"]), p["tree_size"], len(open(sys.argv[1]).read())))' "$WORK/proof.json"
"$T"/csc ledger verify-proof "$WORK/proof.json" "$WORK/receipt.json" --keyring "$WORK/ring.json"
