#!/usr/bin/env bash
# The issue's full real-network runs (root and a Docker engine needed): 30 s of Raft under
# partition, kill and pause on the netns and docker backends (both must be VALID), then a short
# run with the stale-reads bug on each (must be INVALID). Prints each verdict and the time taken.
set -u
cd "$(dirname "$0")/.."
store="${STORE:-/tmp/splitbrain-real-network}"
status=0
for backend in netns docker; do
  start=$(date +%s.%N)
  out=$(python3 -m splitbrain test --backend "$backend" --system raft \
        --nemesis partition,kill,pause --time-limit 30 --store "$store" 2>&1)
  rc=$?
  end=$(date +%s.%N)
  printf '%-7s raft partition,kill,pause 30s: exit %d (%s) in %.1f s\n' "$backend" "$rc" \
    "$(echo "$out" | grep -oE 'verdict: [A-Z]+' | tail -1)" "$(echo "$end - $start" | bc)"
  [ "$rc" = 0 ] || status=1
  found=no
  for seed in 1 2 3; do
    python3 -m splitbrain test --backend "$backend" --system raft --bug stale-reads --workload kv \
      --nemesis partition-leader --nodes 3 --time-limit 8 --opt check-quorum=false \
      --opt harness.nemesis_interval_s=1.5 --opt harness.client_timeout_s=0.5 --seed "$seed" \
      --store "$store" >/dev/null 2>&1
    if [ $? = 1 ]; then found="yes (seed $seed)"; break; fi
  done
  echo "$backend raft --bug stale-reads found invalid: $found"
  [ "$found" != no ] || status=1
done
exit $status
