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
