#!/bin/bash
# A long node-simulation run: TOTAL seeds from FIRST, in chunks of CHUNK seeds, one vitest
# process at a time under `nice -n 19` (run it from the repository root). Each chunk is
# logged to LOG with its wall time; a failing seed is logged (its chunk's output is kept
# next to LOG) and the run goes on from the seed after it. Touch LOG.stop to stop between
# chunks. Replay a failing seed alone with QUORUM_SEED=<seed> (see the chunk's output).
#   usage: packages/raft/test/long-run.sh FIRST TOTAL CHUNK LOG
set -u
FIRST=$1 TOTAL=$2 CHUNK=$3 LOG=$4
END=$((FIRST + TOTAL))
next=$FIRST
echo "$(date -u +%FT%TZ) begin first=$FIRST total=$TOTAL chunk=$CHUNK head=$(git rev-parse --short HEAD)" >>"$LOG"
began=$(date +%s)
while [ "$next" -lt "$END" ]; do
  [ -e "$LOG.stop" ] && { echo "$(date -u +%FT%TZ) stopped at $next" >>"$LOG"; break; }
  n=$((END - next)); [ "$n" -gt "$CHUNK" ] && n=$CHUNK
  out="$LOG.chunk-$next"
  t0=$(date +%s)
  QUORUM_SEEDS=$n QUORUM_SEED_START=$next nice -n 19 pnpm exec vitest run --project raft \
    packages/raft/test/node-simulation.test.ts -t 'five RaftNodes keep' >"$out" 2>&1
  rc=$?
  if [ $rc -eq 0 ] && grep -q '1 passed' "$out"; then
    echo "$(date -u +%FT%TZ) ok seeds $next..$((next + n - 1)) ($n) in $(($(date +%s) - t0)) s, load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$LOG"
    rm -f "$out"
    next=$((next + n))
  else
    bad=$(grep -oE 'seed [0-9]+ failed' "$out" | head -1 | grep -oE '[0-9]+')
    echo "$(date -u +%FT%TZ) FAIL rc=$rc in the chunk from $next: seed '${bad}' (output: $out)" >>"$LOG"
    [ -n "$bad" ] || { echo "no failing seed in the output; stopping" >>"$LOG"; break; }
    next=$((bad + 1))
  fi
done
echo "$(date -u +%FT%TZ) end next=$next wall $(($(date +%s) - began)) s" >>"$LOG"
