#!/usr/bin/env bash
# Benchmark: `csc verify-receipt` over N signed receipts in one call.
#
#   bash benches/verify.sh [COUNT]        (default 10000)
#
# Builds `--profile dist` (PROFILE=release for the quick build),
# generates COUNT distinct signed receipts with
# examples/gen_signed_receipts.rs (TEST ONLY interop key), then times one
# verify-receipt call over all of them (best of 3) and prints receipts/s.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT="${1:-10000}"
PROFILE="${PROFILE:-dist}"
T="${CARGO_TARGET_DIR:-target}/$PROFILE"
cargo build --profile "$PROFILE" --quiet --bin csc --example gen_signed_receipts
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$T"/examples/gen_signed_receipts "$COUNT" "$WORK/receipts" >/dev/null
KEY=tests/data/interop/keys/test-key.pub.raw
best=""
for run in 1 2 3; do
  start=$(date +%s.%N)
  # Paths via xargs would split the call; pass them all at once (fits ARG_MAX).
  "$T"/csc verify-receipt --quiet --public-key "$KEY" \
      --key-id csc-interop-test-key-1 "$WORK"/receipts/*.json 2>"$WORK/summary"
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
  echo "run $run: $(cat "$WORK/summary") in ${secs}s"
  if [ -z "$best" ] || awk -v s="$secs" -v b="$best" 'BEGIN { exit !(s < b) }'; then best=$secs; fi
done
start=$(date +%s.%N)
"$T"/csc verify-receipt --quiet --jobs 1 --public-key "$KEY" \
    --key-id csc-interop-test-key-1 "$WORK"/receipts/*.json 2>/dev/null
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" -v n="$COUNT" \
  'BEGIN { printf "single thread (--jobs 1): %.0f receipts/s (%.3fs)\n", n / (b - a), b - a }'
awk -v n="$COUNT" -v b="$best" -v c="$(nproc)" \
  'BEGIN { printf "verify-receipt: %d receipts, best %.3fs, %.0f receipts/s (%d cores)\n", n, b, n / b, c }'
