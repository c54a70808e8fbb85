#!/usr/bin/env bash
# Where the wall time of a hardened run goes, phase by phase, next to
# bubblewrap's (issue 14). Not a timed test: prints figures.
#
# Records kernel tracepoints (process exec/fork/exit and a few syscalls:
# unshare, pivot_root, open_tree, landlock_restrict_self, seccomp, fsync,
# fdatasync, renameat) system-wide while N signed `csc run --mode hardened`
# of `true` and N bubblewrap runs of `true` (the binds of
# benches/hardened_vs_bwrap.sh) alternate, 10 ms apart so that no run
# overlaps the next. Tracepoints cost ~1 µs per event, far less than
# strace or `perf trace`, so the phases keep their real proportions.
# Prints, per phase, the median time since the run's exec of csc (or
# bwrap), and the median length of each stretch:
#   start-up and decision   exec of csc → fork of the setup helper
#   sandbox setup           fork of the helper → exec of the target
#                           (bwrap: exec of bwrap → exec of the target,
#                           which includes bwrap's own start-up)
#   target                  exec of `true` → its exit
#   evidence                exit of `true` → csc gone (receipt signed,
#                           written and flushed, ledger entry appended)
#
# Usage: benches/timeline.sh [N]      (default N=60)
#   CSC=path  use that binary (default: build and use `--profile dist`)
# Needs: root, perf (linux-perf) with tracepoints, bwrap, python3.
set -euo pipefail
N="${1:-60}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
for tool in perf python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 2; }
done
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
prepare_true_bench

cat > runs.sh <<EOF
for i in \$(seq $N); do
    "$CSC" run true.json policy.yaml --mode hardened --receipt-out out/h.json \
        --quiet --sign --signing-key seed.key --key-id bench --state-dir state >/dev/null 2>&1
    sleep 0.01
    "$BWRAP" --unshare-all --die-with-parent --new-session --ro-bind /usr /usr \
        --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 \
        --ro-bind /etc /etc --proc /proc --dev /dev --tmpfs /tmp --ro-bind "$WS" "$WS" \
        --chdir "$WS" /usr/bin/true
    sleep 0.01
done
EOF
events=sched:sched_process_exec,sched:sched_process_fork,sched:sched_process_exit
for s in unshare pivot_root open_tree landlock_restrict_self seccomp fsync fdatasync renameat clone; do
    events="$events,syscalls:sys_enter_$s"
done
echo "csc: $CSC; $(bwrap --version); $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
perf record -q -o trace.data -a -e "$events" -- bash runs.sh >/dev/null 2>&1
perf script -i trace.data -F comm,pid,tid,time,event,trace 2>/dev/null > trace.txt

python3 - "$CSC" "$BWRAP" trace.txt "$N" <<'PY'
import re, statistics, sys
csc, bwrap, path, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
line_re = re.compile(r'\s*(\S+)\s+(\d+)/(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)')
runs, cur = [], None
for line in open(path):
    m = line_re.match(line)
    if not m:
        continue
    comm, pid, _tid, t, ev, rest = m.groups()
    t, pid = float(t) * 1000, int(pid)
    if ev == 'sched:sched_process_exec' and (f'filename={csc} ' in rest or f'filename={bwrap} ' in rest):
        cur = {'kind': 'csc' if csc in rest else 'bwrap', 't0': t, 'main': pid, 'marks': {}}
        runs.append(cur)
        continue
    if cur is None or comm in ('bash', 'sleep', 'perf'):
        continue
    t -= cur['t0']
    marks, main = cur['marks'], cur['main']
    def mark(name):
        marks.setdefault(name, t)
    if ev == 'syscalls:sys_enter_clone' and pid == main:
        mark('fork into the sandbox (csc: the setup helper)')
    elif ev == 'syscalls:sys_enter_unshare':
        mark('unshare')
    elif ev == 'syscalls:sys_enter_pivot_root':
        mark('first pivot_root')
    elif ev == 'syscalls:sys_enter_open_tree':
        mark('first bind (open_tree)')
        marks['last bind (open_tree)'] = t
    elif ev == 'syscalls:sys_enter_landlock_restrict_self':
        mark('Landlock')
    elif ev == 'syscalls:sys_enter_seccomp':
        mark('seccomp')
    elif ev == 'sched:sched_process_exec' and 'filename=/usr/bin/true' in rest:
        mark('exec of the target')
    elif ev == 'sched:sched_process_exit' and 'comm=true' in rest:
        mark('exit of the target')
    elif ev in ('syscalls:sys_enter_fsync', 'syscalls:sys_enter_fdatasync') and 'exit of the target' in marks:
        mark('first flush')
        marks['last flush starts'] = t
    elif ev == 'syscalls:sys_enter_renameat':
        mark('receipt renamed')
    elif ev == 'sched:sched_process_exit' and pid == main and 'group_dead=true' in rest:
        mark('gone')

def med(kind, name):
    v = [r['marks'][name] for r in runs if r['kind'] == kind and name in r['marks']]
    return statistics.median(v) if v else None

for kind in ('csc', 'bwrap'):
    done = sum(1 for r in runs if r['kind'] == kind and 'gone' in r['marks'])
    print(f"\n{kind}: {done} of {n} runs traced; median ms since exec of {kind}")
    names = sorted({k for r in runs if r['kind'] == kind for k in r['marks']},
                   key=lambda k: med(kind, k))
    for k in names:
        print(f"  {med(kind, k):7.3f}  {k}")

def span(kind, a, b):
    v = [r['marks'][b] - (r['marks'][a] if a else 0) for r in runs
         if r['kind'] == kind and b in r['marks'] and (a is None or a in r['marks'])]
    return statistics.median(v) if v else float('nan')

print("\nstretch (median ms)            csc      bwrap")
rows = [
    ("start-up and decision", span('csc', None, 'fork into the sandbox (csc: the setup helper)'), 0.0),
    ("sandbox setup", span('csc', 'fork into the sandbox (csc: the setup helper)', 'exec of the target'),
     span('bwrap', None, 'exec of the target')),
    ("target", span('csc', 'exec of the target', 'exit of the target'),
     span('bwrap', 'exec of the target', 'exit of the target')),
    ("evidence / exit", span('csc', 'exit of the target', 'gone'),
     span('bwrap', 'exit of the target', 'gone')),
    ("whole run", span('csc', None, 'gone'), span('bwrap', None, 'gone')),
]
for name, a, b in rows:
    print(f"  {name:<26} {a:7.3f}  {b:7.3f}")
PY
