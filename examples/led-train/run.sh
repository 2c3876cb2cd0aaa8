#!/bin/sh
# An LED train on one node: 10 pulses of 100 ms, one per second, starting on
# the next whole second + 2 s. Each edge is its own scheduled instant, phase-
# locked to the start (pulse k at start + k·1 s), so nothing drifts.
#
#   ./run.sh                 # GPIO17, driver auto (gpiod if libgpiod 2, else sysfs)
#   LINE=27 COUNT=20 ./run.sh
#   DRIVER=sim ./run.sh      # no hardware: reports the true instant of each edge
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if command -v lockstep >/dev/null 2>&1; then lockstep() { command lockstep "$@"; }
else lockstep() { node "$here/../../dist/src/cli/main.js" "$@"; }; fi

LINE=${LINE:-17}
COUNT=${COUNT:-10}
DRIVER=${DRIVER:-auto}
# A whole-second start, so several nodes given the same command are in phase.
start=@$(( $(date +%s) + 3 ))

lockstep fire blink --line "$LINE" --at "$start" --on 100ms --every 1s --count "$COUNT" \
  --driver "$DRIVER" --json | tee led-train.jsonl
echo "reports in led-train.jsonl (plannedNs, actualNs, latenessNs, errorBoundNs per edge)" >&2
