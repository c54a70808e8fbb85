#!/usr/bin/env bash
# The copy-paste host setups of docs/agent-integration.md against a built
# csc, with the real host CLIs (pinned below, installed from npm into a
# temp prefix). The checks themselves run without network (`unshare -n`
# when available) and with a throw-away HOME:
#   - Claude Code: `claude mcp add csc -- csc mcp ...`, then
#     `claude mcp list`, whose health check starts the server over stdio
#     and must report csc "Connected" (and a server that cannot start
#     "Failed", the negative control);
#   - Codex: the documented `[mcp_servers.csc]` block of config.toml,
#     parsed by `codex mcp get csc --json` (Codex connects to MCP servers
#     only inside a model session, which needs an account: not checked).
# Usage: .ci/mcp-hosts.sh path/to/csc
set -euo pipefail
CLAUDE_CODE_VERSION=2.1.332
CODEX_VERSION=0.171.0
CSC="$(realpath "$1")"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
npm install --silent --no-audit --no-fund --prefix "$T/npm" \
    "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" "@openai/codex@$CODEX_VERSION"
export PATH="$T/npm/node_modules/.bin:$PATH" HOME="$T/home"
export DISABLE_TELEMETRY=1 DISABLE_AUTOUPDATER=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1
mkdir -p "$HOME" "$T/ws"
offline=()
if unshare -n true 2>/dev/null; then offline=(unshare -n --); fi
cat > "$T/ws/policy.yaml" <<POL
policy_schema_version: csc.policy.v0.1
name: host-check
allow_commands: ["true"]
allowed_effect_types: [observe]
allowed_risk_classes: [low]
max_timeout_sec: 60
network: deny
allow_secret_refs: false
allowed_cwd_prefixes: ["$T/ws"]
allowed_read_prefixes: ["$T/ws"]
POL
head -c 32 /dev/urandom > "$T/ws/key.seed"
cd "$T/ws"
echo "claude $(claude --version), codex $(codex --version 2>/dev/null)"

# Claude Code (docs: "Claude Code")
"${offline[@]}" claude mcp add csc -- "$CSC" mcp --policy "$T/ws/policy.yaml" \
    --sign --signing-key "$T/ws/key.seed" --key-id ops-1 --state-dir "$T/ws/state" >/dev/null
"${offline[@]}" claude mcp add broken -- "$CSC" mcp --policy "$T/ws/missing.yaml" >/dev/null
list="$("${offline[@]}" claude mcp list 2>&1)"
echo "$list"
grep -q "^csc: .*Connected" <<<"$list" || { echo "FAIL: claude could not connect to csc mcp"; exit 1; }
grep -q "^broken: .*Failed" <<<"$list" || { echo "FAIL: the negative control connected"; exit 1; }

# Codex (docs: "Codex", the config.toml block with this machine's paths)
mkdir -p "$HOME/.codex"
cat > "$HOME/.codex/config.toml" <<TOML
[mcp_servers.csc]
command = "$CSC"
args = ["mcp", "--policy", "$T/ws/policy.yaml", "--sign",
        "--signing-key", "$T/ws/key.seed", "--key-id", "ops-1",
        "--state-dir", "$T/ws/state"]
TOML
got="$("${offline[@]}" codex mcp get csc --json 2>/dev/null)"
python3 - "$CSC" "$got" <<'PY'
import json, sys
csc, got = sys.argv[1], json.loads(sys.argv[2])
t = got["transport"]
assert got["enabled"] and t["type"] == "stdio" and t["command"] == csc, got
assert t["args"][:3] == ["mcp", "--policy", t["args"][2]] and "--sign" in t["args"], got
print("codex parsed [mcp_servers.csc]:", t["command"], " ".join(t["args"]))
PY
echo "OK: host setups"
