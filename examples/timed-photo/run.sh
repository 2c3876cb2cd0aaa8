#!/bin/sh
# One photo at an exact instant. rpicam-still is started now and kept waiting
# in signal mode; at the instant (minus the camera's calibrated lead) it gets
# SIGUSR1. The file is named after the trigger and this node.
#
#   ./run.sh                         # at the next whole minute, into ./photos
#   AT=12:00:00 LEAD_MS=35 ./run.sh  # a time of day; the measured lead of this camera
#   DRIVER=sim ./run.sh              # no camera: the simulated recorder
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if command -v lockstep >/dev/null 2>&1; then lockstep() { command lockstep "$@"; }
else lockstep() { node "$here/../../dist/src/cli/main.js" "$@"; }; fi

now=$(date +%s)
AT=${AT:-@$(( (now / 60 + 1) * 60 ))}
LEAD_MS=${LEAD_MS:-0}
OUT=${OUT:-photos}
DRIVER=${DRIVER:-auto}

lockstep fire capture --at "$AT" --out "$OUT" --name timed --lead-ms "$LEAD_MS" --driver "$DRIVER" --json
ls -l "$OUT" 2>/dev/null || true
