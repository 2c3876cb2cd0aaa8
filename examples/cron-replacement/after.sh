#!/bin/sh
# AFTER: the same script with `lockstep wait`. It returns at 12:00:10.000 (local
# time, or --tz), to the microsecond of this node's clock; the rest of the delay
# is the shell starting python3. For the command itself on time, use `at`:
#   exec lockstep at 12:00:10 -- python3 /home/pi/blink.py
# Add --ntp hub.local to use lockstep's own NTP client instead of the system clock.
set -e
lockstep wait 12:00:10
exec python3 /home/pi/blink.py
