#!/usr/bin/env bash
# Benchmark the state store (RFC 0014): what consumption + ledger append add
# to a run, and sustained append throughput, for the embedded SQLite store
# and a local PostgreSQL (a throwaway cluster started here as uid 65534) over
# its unix socket (trust) and over loopback TCP with TLS (verify-full) and a
# SCRAM password. Not a timed test: prints figures.
#
#   bash benches/state.sh [RUNS] [THREADS] [APPENDS]     (default 300 8 4000)
#
# NO_BUILD=1 measures the binaries already built; BASELINE=DIR also measures
# the csc and state_bench binaries in DIR (an older build) in the same run,
# on a database that older csc migrated.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-300}"; THREADS="${2:-8}"; APPENDS="${3:-4000}"
PROFILE="${PROFILE:-dist}"
if [ -n "${NO_BUILD:-}" ]; then
  :
elif [ "$PROFILE" != debug ]; then
  cargo build --profile "$PROFILE" --quiet --bin csc --example state_bench
else
  cargo build --quiet --bin csc --example state_bench
fi
T="${CARGO_TARGET_DIR:-target}/$PROFILE"
B="$T/examples/state_bench"
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort | tail -1)"
WORK="$(mktemp -d)"
chmod 755 "$WORK"
mkdir -m 700 "$WORK/state"
mkdir -p "$WORK/pg/data" "$WORK/pg/sock" "$WORK/pki"
chown -R 65534:65534 "$WORK/pg"
chmod 700 "$WORK/pg/data"
as_pg() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
cleanup() {
  as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
# A throwaway CA and a server certificate for "localhost".
(
  cd "$WORK/pki"
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=bench ca" -keyout ca.key -out ca.crt \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign >/dev/null 2>&1
  openssl req "${ec[@]}" -subj /CN=localhost -keyout server.key -out server.csr >/dev/null 2>&1
  printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile ext -out server.crt >/dev/null 2>&1
)
install -o 65534 -g 65534 -m 600 "$WORK/pki/server.key" "$WORK/pki/server.crt" "$WORK/pg/data/"
printf 'local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n' >"$WORK/pg/data/pg_hba.conf"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w \
  -o "-k $WORK/pg/sock -p $PORT -c listen_addresses=127.0.0.1 -c max_connections=100 -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key ${PG_OPTS:-}" \
  start >/dev/null
PASS="bench-$RANDOM$RANDOM"
"$PGBIN/psql" -qX -h "$WORK/pg/sock" -p "$PORT" -U postgres -c "ALTER ROLE postgres PASSWORD '$PASS'" postgres
for db in after before; do
  "$PGBIN/psql" -qX -h "$WORK/pg/sock" -p "$PORT" -U postgres -c "CREATE DATABASE $db" postgres
done
URL="postgresql:///after?host=$WORK/pg/sock&port=$PORT&user=postgres"
TLS_URL="postgresql://postgres:$PASS@localhost:$PORT/after?sslmode=verify-full&sslrootcert=$WORK/pki/ca.crt"
"$T/csc" state migrate --state-url "$URL"
echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== SQLite store ($WORK/state, same disk as the receipts)"
"$B" "$WORK/state" "$RUNS" "${SQLITE_THREADS:-$THREADS}" "$APPENDS"
if [ -n "${BASELINE:-}" ]; then
  BURL="postgresql:///before?host=$WORK/pg/sock&port=$PORT&user=postgres"
  "$BASELINE/csc" state migrate --state-url "$BURL"
  echo "== BASELINE $BASELINE: PostgreSQL, unix socket (trust)"
  "$BASELINE/state_bench" "$BURL" "$RUNS" "$THREADS" "$APPENDS"
fi
echo "== PostgreSQL $(basename "$(dirname "$PGBIN")"), unix socket (trust; fsync on, synchronous_commit on)"
"$B" "$URL" "$RUNS" "$THREADS" "$APPENDS"
echo "== PostgreSQL, loopback TCP, TLS verify-full, SCRAM-SHA-256 password"
"$B" "$TLS_URL" "$RUNS" "$THREADS" "$APPENDS"
# A local pooler keeps server backends (and their compiled functions) alive
# between `csc run` processes: the per-run connection is then a cheap one.
if command -v pgbouncer >/dev/null; then
  mkdir -p "$WORK/bouncer"
  BPORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  printf '"postgres" ""\n' >"$WORK/bouncer/users"
  cat >"$WORK/bouncer/ini" <<INI
[databases]
after = host=$WORK/pg/sock port=$PORT dbname=after user=postgres
[pgbouncer]
listen_addr =
listen_port = $BPORT
unix_socket_dir = $WORK/bouncer
auth_type = trust
auth_file = $WORK/bouncer/users
pool_mode = transaction
ignore_startup_parameters = options
max_client_conn = 200
default_pool_size = 20
logfile = $WORK/bouncer/log
pidfile = $WORK/bouncer/pid
INI
  chown -R 65534:65534 "$WORK/bouncer"
  as_pg pgbouncer -d -q "$WORK/bouncer/ini"
  sleep 1
  echo "== PostgreSQL through a local pgbouncer (transaction pooling, unix socket)"
  "$B" "postgresql:///after?host=$WORK/bouncer&port=$BPORT&user=postgres" "$RUNS" "$THREADS" "$APPENDS" || true
  kill "$(cat "$WORK/bouncer/pid")" 2>/dev/null || true
fi
echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg)"
