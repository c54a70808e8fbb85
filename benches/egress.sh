#!/usr/bin/env bash
# Benchmark allowlisted egress: a 10 MiB download from a loopback HTTP
# server, (a) with curl directly on the host, (b) with curl inside a
# hardened sandbox (`network: allowlisted`) through csc's egress proxy
# with HTTP CONNECT (`curl -p`), (c) the same sandbox with
# `network: full` and a direct download (sandbox cost without the proxy).
# Also reports csc's peak RSS (the process hosting the proxy) during (b).
#
# Usage: benches/egress.sh [--runs N] [--size-mib M]
# Needs: hyperfine, GNU time (/usr/bin/time), python3, curl.
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=30
SIZE=10
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --size-mib) SIZE="$2"; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
for tool in hyperfine python3 curl /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 2; }
done

PROFILE="${PROFILE:-dist}"
CSC="${CSC_BIN:-target/$PROFILE/csc}"
if [ -z "${CSC_BIN:-}" ]; then
    cargo build --profile "$PROFILE" --quiet
fi

WORK="$(mktemp -d /tmp/csc-egress-bench.XXXXXX)"
chmod 755 "$WORK"
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

head -c $((SIZE * 1024 * 1024)) /dev/urandom >"$WORK/blob"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$WORK" >/dev/null 2>&1 &
SERVER_PID=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/blob" && break; sleep 0.1; done

CURL="/usr/bin/curl -sS -o /dev/null --max-time 60"
spec() { # name network url extra-curl-args config
    cat >"$WORK/$1.json" <<JSON
{"spec": {"segments": [["/bin/sh", "-c", "$CURL $4 $3"]], "cwd": "$WORK",
  "env": [["PATH", "/usr/bin:/bin"]], "read_paths": ["$WORK"], "write_paths": [], "network": "$2"},
 "config": $5}
JSON
}
EGRESS='{"egress": {"allow": ["blob.test:'"$PORT"'"], "allow_cidr": ["127.0.0.0/8"], "test_resolve": ["blob.test=127.0.0.1"]}}'
spec proxy allowlisted "http://blob.test:$PORT/blob" "-p" "$EGRESS"
spec full full "http://127.0.0.1:$PORT/blob" "" "{}"

hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$WORK/h.json" \
    -n "curl direct (host)" "$CURL http://127.0.0.1:$PORT/blob" \
    -n "csc hardened, network full, direct" "$CSC __sandbox-run --spec $WORK/full.json" \
    -n "csc hardened, allowlisted, CONNECT via proxy" "$CSC __sandbox-run --spec $WORK/proxy.json" \
    >/dev/null
python3 - "$WORK/h.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
base = r[0]["median"]
print("| command | median ms | p10 ms | p90 ms | vs direct |")
print("|---|---|---|---|---|")
for x in r:
    t = sorted(x["times"])
    p = lambda q: t[min(len(t) - 1, int(q * len(t)))] * 1000
    print(f"| {x['command']} | {x['median']*1000:.1f} | {p(0.1):.1f} | {p(0.9):.1f} | {100*(x['median']/base-1):+.0f} % |")
PY
RSS=()
for _ in $(seq 5); do
    RSS+=("$(/usr/bin/time -f %M "$CSC" __sandbox-run --spec "$WORK/proxy.json" 2>&1 >/dev/null | tail -1)")
done
printf 'csc peak RSS during the proxied download (KiB, 5 runs): %s\n' "${RSS[*]}"
