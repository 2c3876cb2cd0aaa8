#!/bin/sh
# Ten blinks at 1 Hz on every online headset, once all are synchronized within 200 µs.
# Extra arguments are passed on (e.g. --json, --nodes headset-01,headset-02, --count forever --retain).
set -e
HUB=${HUB:-hub.local}
exec lockstep trigger blink --group headsets --broker "mqtt://$HUB:1883" \
  --line 17 --on 100ms --every 1s --count 10 --ready-within 200us "$@"
