#!/usr/bin/env bash
# End-to-end example: decide, run with a signed receipt, verify the receipt.
# Uses a throwaway key and state directory; prints each step.
set -euo pipefail
cd "$(dirname "$0")/.."
CSC=${CSC:-./target/release/csc}
CONTRACT=examples/contracts/list-repo.json
POLICY=policies/readonly-dev.yaml
WORK=$(mktemp -d "${TMPDIR:-/tmp}/csc-quickstart.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
step() { printf '\n%s$ %s%s\n' "$B" "$*" "$N"; "$@"; }

step "$CSC" check "$CONTRACT" "$POLICY"
step "$CSC" keygen --out "$WORK/key.pem" --public-out "$WORK/key.pub.pem"
step "$CSC" run "$CONTRACT" "$POLICY" --quiet \
  --sign --signing-key "$WORK/key.pem" --key-id quickstart \
  --receipt-out "$WORK/receipt.json" --state-dir "$WORK/state"
step cat "$WORK/receipt.json"
step "$CSC" verify-receipt "$WORK/receipt.json" \
  --public-key "$WORK/key.pub.pem" --key-id quickstart \
  --contract "$CONTRACT" --policy "$POLICY"

# Hardened mode: the same contract inside csc's own kernel sandbox.
if "$CSC" doctor >/dev/null 2>&1; then
  step "$CSC" run "$CONTRACT" "$POLICY" --mode hardened --quiet \
    --sign --signing-key "$WORK/key.pem" --key-id quickstart \
    --receipt-out "$WORK/hardened.json" --state-dir "$WORK/state"
  step "$CSC" verify-receipt "$WORK/hardened.json" \
    --public-key "$WORK/key.pub.pem" --key-id quickstart \
    --contract "$CONTRACT" --policy "$POLICY"
else
  if [ "${CSC_REQUIRE_SANDBOX:-}" = 1 ]; then
    printf '\nFAIL: CSC_REQUIRE_SANDBOX=1 but hardened mode is not available; `%s doctor` says why:\n' "$CSC"
    "$CSC" doctor || true
    exit 1
  fi
  printf '\nSKIP: hardened mode is not available on this host; `%s doctor` says why:\n' "$CSC"
  "$CSC" doctor || true
fi
