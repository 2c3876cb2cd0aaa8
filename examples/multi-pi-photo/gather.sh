#!/bin/sh
# Copies every camera's files for capture NAME into ./NAME/ (cameras named in nodes/*.env).
set -e
NAME=${1:?usage: gather.sh NAME}
mkdir -p "$NAME"
for env in "$(dirname "$0")"/nodes/*.env; do
  cam=$(basename "$env" .env)
  scp -q "lockstep@$cam.local:/var/lib/lockstep/photos/*$NAME*" "$NAME/" || echo "gather: nothing from $cam" >&2
done
ls -l "$NAME"
