#!/usr/bin/env bash
# What a run's ledger append costs, two builds compared in the same minutes
# (issue 11). Not a timed test: prints figures.
#
#   bash benches/ledger_ab.sh BEFORE_LEDGER_BENCH AFTER_LEDGER_BENCH [ROUNDS] [RUNS]
#
# Each argument is an `examples/ledger_bench` binary (e.g. one built from
# `git archive main` and one from this tree: `cargo build --release
# --example ledger_bench`, binary in $CARGO_TARGET_DIR/release/examples).
# ROUNDS (default 3) times, alternating A B: a new state store in a
# directory on the disk (under target/, never tmpfs), 300 appends, then RUNS
# (default 300) runs of open + append + close against one 4 KiB write +
# fdatasync in the same directory (the disk's flush), with the ratio, the
# floor (per-run minus one flush) and the CPU time per run. Prints the load
# average with every line.
set -euo pipefail
cd "$(dirname "$0")/.."
A="$1"; B="$2"; ROUNDS="${3:-3}"; RUNS="${4:-300}"
BASE="${CARGO_TARGET_DIR:-target}/ledger-ab"
mkdir -p "$BASE"; chmod 700 "$BASE"
for round in $(seq "$ROUNDS"); do
  for which in before after; do
    bin="$A"; [ "$which" = after ] && bin="$B"
    dir="$(mktemp -d -p "$BASE")"
    echo "== round $round, $which ($(cut -d' ' -f1-3 /proc/loadavg))"
    "$bin" 300 "$dir/state" "$RUNS" | tail -2
    rm -rf "$dir"
  done
done
