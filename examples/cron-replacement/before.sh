#!/bin/sh
# BEFORE: started by cron at 12:00 ("0 12 * * * /home/pi/blink-at-noon.sh"), then
# polls the clock until second 10. The blink starts 30-55 ms late (the sleep
# granularity plus a fork of `date` every 50 ms), at a different moment on every
# Pi, and burns a process per poll.
while [ "10" -gt "$(date +%S)" ]; do sleep 0.05; done
exec python3 /home/pi/blink.py
