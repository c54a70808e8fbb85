#!/usr/bin/env bash
# Benchmark of the `files_written` scan (local mode). Not a timed test:
# prints figures. A contract whose write scope holds N regular files in
# N/1000 directories (default 200 000) writes one file; prints the
# receipt's files_written/error, csc's wall time and peak RSS.
#
# Usage: benches/effects.sh [N]   (CSC=path/to/csc to skip the build;
#   otherwise `--profile dist`, or PROFILE=release)
set -euo pipefail
N="${1:-200000}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${CSC:-}" ]; then
  PROFILE="${PROFILE:-dist}"
  cargo build --profile "$PROFILE" --quiet --manifest-path "$ROOT/Cargo.toml"
  CSC="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/csc"
fi
WS="$(mktemp -d)"
trap 'rm -rf "$WS"' EXIT
cd "$WS"
cat > policy.yaml <<POL
policy_schema_version: csc.policy.v0.1
name: bench
allow_commands: [sh]
allowed_effect_types: [transform_local]
allowed_risk_classes: [low]
max_timeout_sec: 600
network: deny
allow_secret_refs: false
allowed_cwd_prefixes: ["$WS"]
allowed_read_prefixes: ["$WS"]
allowed_write_prefixes: ["$WS"]
POL
cat > c.json <<CON
{"version":"csc.v0.1","contract_id":"bench-effects","intent":"bench","actor":{"agent_id":"a","session_id":"s","initiating_user":"u","delegation_scope":"d"},
"commands":[{"id":"w","exec":{"argv":["sh","-c","echo x > out/000/new"]},"cwd":"$WS","read_paths":[],"write_paths":["$WS/out/**"],"network":"deny","env_allow":[],"secret_refs":[],"timeout_sec":600,"proposed_effect_type":"transform_local"}],
"risk_class":"low","approval_mode":"policy_only","justification":"bench"}
CON
python3 - "$N" <<'PY'
import os, sys
n = int(sys.argv[1])
for d in range(max(1, n // 1000)):
    os.makedirs(f"out/{d:03}")
    for f in range(min(1000, n)):
        open(f"out/{d:03}/file-with-a-longish-name-{f:04}", "w").close()
PY
echo "filesystem: $(df -T "$WS" | awk 'NR==2{print $2}'); $(nproc) cores; $(uname -sr); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "entries: $N files in $((N / 1000)) directories; csc: $CSC"
/usr/bin/time -f "wall %e s, peak RSS %M KiB" "$CSC" run c.json policy.yaml --receipt-out r.json --quiet
python3 -c 'import json; r = json.load(open("r.json")); print("files_written:", r["effect_summary"]["files_written"], "error:", repr(r["error"]))'
