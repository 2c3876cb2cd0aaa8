#!/bin/sh
# One capture named $1 on every online camera, once all are synchronized within 500 µs.
set -e
NAME=${1:?usage: shoot.sh NAME [lockstep trigger options]}
shift
HUB=${HUB:-hub.local}
exec lockstep trigger capture --name "$NAME" --group photo --broker "mqtt://$HUB:1883" --ready-within 500us "$@"
