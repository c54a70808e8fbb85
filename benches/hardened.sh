#!/usr/bin/env bash
# Benchmark the hardened sandbox: median wall time and peak RSS of a
# sandboxed `true` through the hidden `csc __sandbox-run` verb, compared
# with bubblewrap when it is installed.
#
# Usage: benches/hardened.sh [--runs N] [--write]
#   --write   replace the "hardened sandbox" section of docs/benchmarks.md
# Needs: hyperfine, GNU time (/usr/bin/time), python3. For the comparison:
#   apt-get install -y bubblewrap hyperfine
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=300
WRITE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --write) WRITE=1; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

for tool in hyperfine python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y hyperfine time)" >&2; exit 2; }
done

PROFILE="${PROFILE:-dist}"
CSC="${CSC_BIN:-target/$PROFILE/csc}"
if [ -z "${CSC_BIN:-}" ]; then
    cargo build --profile "$PROFILE" --quiet
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
spec() {
    cat >"$WORK/$1.json" <<EOF
{"spec": {"segments": [["/usr/bin/true"]], "cwd": "/usr", "env": [], "read_paths": [], "write_paths": [], "network": "$2"}}
EOF
}
spec deny deny
spec full full

BWRAP_CMD="bwrap --unshare-all --die-with-parent --new-session --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 --ro-bind /etc /etc --proc /proc --dev /dev --tmpfs /tmp --chdir /usr /usr/bin/true"

declare -a NAMES CMDS
NAMES+=("csc hardened, network deny"); CMDS+=("$CSC __sandbox-run --spec $WORK/deny.json")
NAMES+=("csc hardened, network full"); CMDS+=("$CSC __sandbox-run --spec $WORK/full.json")
NAMES+=("csc --version (process start only)"); CMDS+=("$CSC --version")
if command -v bwrap >/dev/null; then
    NAMES+=("bwrap --unshare-all (no Landlock/seccomp)"); CMDS+=("$BWRAP_CMD")
fi

rows=""
for i in "${!CMDS[@]}"; do
    cmd="${CMDS[$i]}"
    hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$WORK/h$i.json" "$cmd" >/dev/null 2>&1
    rss=""
    for _ in $(seq 1 25); do
        rss="$rss $(/usr/bin/time -f %M $cmd 2>&1 >/dev/null | tail -1)"
    done
    row="$(python3 - "$WORK/h$i.json" "${NAMES[$i]}" $rss <<'EOF'
import json, statistics, sys
r = json.load(open(sys.argv[1]))["results"][0]
t = sorted(r["times"])
rss = sorted(int(x) for x in sys.argv[3:])
p = lambda q: t[min(len(t) - 1, int(q * len(t)))] * 1000
print(f"| {sys.argv[2]} | {statistics.median(t) * 1000:.1f} | {p(0.1):.1f} | {p(0.9):.1f} | {statistics.median(rss) / 1024:.1f} |")
EOF
)"
    rows="$rows$row"$'\n'
done

KERNEL="$(uname -r)"
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
NPROC="$(nproc)"
MEM="$(free -g | awk '/Mem:/{print $2}')"
LL="$($CSC sandbox-profile --json | python3 -c 'import json,sys; p=json.load(sys.stdin)["profile"]["landlock"]; print(p["abi"])')"
REPORT="## hardened sandbox

Command: \`benches/hardened.sh --runs $RUNS\` — \`csc __sandbox-run\` of \`/usr/bin/true\`
(user+mount+pid+ipc+uts+cgroup[+net] namespaces, tmpfs root with read-only
binds of /usr and /etc, Landlock ABI $LL, seccomp, caps dropped, rlimits),
measured end to end with \`hyperfine -N\` (wall time, including csc start,
helper re-exec, namespace teardown). Peak RSS: GNU time \`%M\`, the largest
single process in the tree, median of 25 runs.

Machine: $NPROC × $CPU, ${MEM} GiB RAM, Linux $KERNEL, run as $(id -un).

| command | median ms | p10 ms | p90 ms | peak RSS MiB |
|---|---|---|---|---|
$rows
Target: ≤ 5 ms, ≤ 10 MiB. RSS is met; wall time is not on this VM. \`perf stat\`
shows ~6 ms of CPU per run (0.37 CPUs utilized): three execs (csc, the
re-exec'd helper, the target) each pay ~1–1.5 ms of dynamic-loader CPUID
probing, which traps to the hypervisor here, and the rest of the wall time is
spent waiting on namespace creation/teardown (RCU grace periods), which
bubblewrap pays as well. The native sandbox does strictly more than the
bwrap line (Landlock, seccomp, capability drop, rlimits, pid cap).
"
echo "$REPORT"

if [ "$WRITE" = 1 ]; then
    mkdir -p docs
    python3 - docs/benchmarks.md "$REPORT" <<'EOF'
import re, sys, os
path, section = sys.argv[1], sys.argv[2].rstrip() + "\n"
text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
pat = re.compile(r"^## hardened sandbox\n.*?(?=^## |\Z)", re.S | re.M)
text = pat.sub(lambda _: section + "\n", text) if pat.search(text) else text.rstrip() + "\n\n" + section
open(path, "w").write(text)
EOF
    echo "wrote docs/benchmarks.md"
fi
