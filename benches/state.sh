#!/usr/bin/env bash
# Benchmark the state store (RFC 0014): what consumption + ledger append add
# to a run, and sustained append throughput, for the embedded SQLite store
# and a local PostgreSQL (a throwaway cluster on a unix socket, started here
# as uid 65534). Not a timed test: prints figures.
#
#   bash benches/state.sh [RUNS] [THREADS] [APPENDS]     (default 300 8 4000)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-300}"; THREADS="${2:-8}"; APPENDS="${3:-4000}"
PROFILE="${PROFILE:-release}"
# NO_BUILD=1 measures the binaries already built.
if [ -n "${NO_BUILD:-}" ]; then
  :
elif [ "$PROFILE" = release ]; then
  cargo build --release --quiet --bin csc --example state_bench
else
  cargo build --quiet --bin csc --example state_bench
fi
B="${CARGO_TARGET_DIR:-target}/$PROFILE/examples/state_bench"
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort | tail -1)"
WORK="$(mktemp -d)"
chmod 755 "$WORK"
mkdir -m 700 "$WORK/state"
mkdir -p "$WORK/pg/data" "$WORK/pg/sock"
chown -R 65534:65534 "$WORK/pg"
chmod 700 "$WORK/pg/data"
cleanup() {
  setpriv --reuid=65534 --regid=65534 --clear-groups "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
as_pg() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w \
  -o "-k $WORK/pg/sock -c listen_addresses= -c max_connections=100" start >/dev/null
URL="postgresql:///postgres?host=$WORK/pg/sock&user=postgres"
"${CARGO_TARGET_DIR:-target}/$PROFILE/csc" state migrate --state-url "$URL"
echo "== SQLite store ($WORK/state, same disk as the receipts)"
"$B" "$WORK/state" "$RUNS" "${SQLITE_THREADS:-$THREADS}" "$APPENDS"
echo "== PostgreSQL $(basename "$(dirname "$PGBIN")") (unix socket, fsync on, synchronous_commit on)"
"$B" "$URL" "$RUNS" "$THREADS" "$APPENDS"
