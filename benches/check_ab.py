#!/usr/bin/env python3
"""Same-run A/B of `csc check` start-up (issue 14). Not a timed test.

Usage: benches/check_ab.py N CONTRACT POLICY CSC_A CSC_B [...]
Runs `CSC check CONTRACT POLICY` for each binary, interleaved A B A B ...,
N rounds after 20 warm-up rounds, whole processes from posix_spawn + wait4;
prints wall and CPU (user+system, wait4 rusage) medians and the ratio of
each binary's CPU median to the first one's. CPU time is what a loaded
machine distorts least.
"""
import os
import statistics
import sys
import time

n, contract, policy, bins = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
dn = os.open("/dev/null", os.O_RDWR)
fa = [(os.POSIX_SPAWN_DUP2, dn, 1), (os.POSIX_SPAWN_DUP2, dn, 2)]


def run(b):
    t = time.perf_counter()
    pid = os.posix_spawn(b, [b, "check", contract, policy], {"PATH": "/usr/bin:/bin"},
                         file_actions=fa)
    _, st, ru = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(st) not in (0, 1, 2):
        sys.exit(f"{b} failed: {st}")
    return (time.perf_counter() - t) * 1e3, (ru.ru_utime + ru.ru_stime) * 1e3


for _ in range(20):
    for b in bins:
        run(b)
wall = [[] for _ in bins]
cpu = [[] for _ in bins]
for _ in range(n):
    for i, b in enumerate(bins):
        w, c = run(b)
        wall[i].append(w)
        cpu[i].append(c)
print("load average after:", " ".join(open("/proc/loadavg").read().split()[:3]))
base = statistics.median(cpu[0])
for i, b in enumerate(bins):
    m = statistics.median(cpu[i])
    print(f"{b}: wall median {statistics.median(wall[i]):.3f} ms, "
          f"CPU median {m:.3f} ms, CPU ratio {m / base:.2f}")
