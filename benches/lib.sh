# Shared by the bench scripts that time `true` through csc: sourced, not run.
#
# write_true_bench COMMAND_ID — in the current directory (the workspace
# $WS), write policy.yaml (allows `true`, no network, reads and cwd in $WS),
# true.json (one command COMMAND_ID running `true` in $WS) and a random
# Ed25519 seed.key for signed receipts.
write_true_bench() {
    cat > policy.yaml <<POL
policy_schema_version: csc.policy.v0.1
name: bench
allow_commands: ["true"]
allowed_effect_types: [observe]
allowed_risk_classes: [low]
max_timeout_sec: 600
network: deny
allow_secret_refs: false
allowed_cwd_prefixes: ["$WS"]
allowed_read_prefixes: ["$WS"]
POL
    cat > true.json <<CON
{"version":"csc.v0.1","contract_id":"bench-true","intent":"bench","actor":{"agent_id":"a","session_id":"s","initiating_user":"u","delegation_scope":"d"},
"commands":[{"id":"$1","exec":{"argv":["true"]},"cwd":"$WS","read_paths":[],"write_paths":[],"network":"deny","env_allow":[],"secret_refs":[],"timeout_sec":600,"proposed_effect_type":"observe"}],
"risk_class":"low","approval_mode":"policy_only","justification":"bench"}
CON
    head -c 32 /dev/urandom > seed.key
}

# prepare_true_bench — the preamble of the scripts that time `true`
# through csc next to bubblewrap (needs ROOT): CSC (as given, or the
# `--profile dist` build), BWRAP, and a fresh workspace WS, removed on
# exit, holding write_true_bench's files and empty out/ and state/; the
# current directory becomes WS.
prepare_true_bench() {
    if [ -z "${CSC:-}" ]; then
        cargo build --profile dist --locked --quiet --manifest-path "$ROOT/Cargo.toml"
        CSC="${CARGO_TARGET_DIR:-$ROOT/target}/dist/csc"
    fi
    CSC="$(realpath "$CSC")"
    command -v bwrap >/dev/null || { echo "missing bwrap (apt-get install -y bubblewrap)" >&2; exit 2; }
    BWRAP="$(command -v bwrap)"
    WS="$(mktemp -d)"
    trap 'rm -rf "$WS"' EXIT
    cd "$WS"
    write_true_bench true
    mkdir -p out state
}
