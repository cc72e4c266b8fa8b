#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Reads a server's GET /metrics page on stdin and prints one line on the connect routes' store
writer: commits, writes per commit, mean commit time and the share of commits past 2.5 and 5 ms."""
import sys

values = {}
for line in sys.stdin:
    if line.startswith("#") or not line.strip():
        continue
    name, value = line.rsplit(" ", 1)
    values[name] = float(value)

commits = values.get("synergos_rest_write_commit_seconds_count", 0.0)
if not commits:
    print("  store writer: no commits in GET /metrics")
    sys.exit(0)
writes = values.get("synergos_rest_writes_total", 0.0)
buckets = {}
for name, count in values.items():
    if name.startswith("synergos_rest_write_commit_seconds_bucket") and "+Inf" not in name:
        buckets[float(name.split('"')[1])] = count


def share_over(seconds):
    within = max((n for bound, n in buckets.items() if bound <= seconds), default=0.0)
    return 100.0 * (commits - within) / commits


mean_ms = 1000.0 * values.get("synergos_rest_write_commit_seconds_sum", 0.0) / commits
print(f"  store writer (GET /metrics): {commits:.0f} commits of {writes / commits:.1f} writes on "
      f"average, {mean_ms:.2f} ms each; {share_over(0.0025):.1f}% over 2.5 ms, "
      f"{share_over(0.005):.1f}% over 5 ms")
