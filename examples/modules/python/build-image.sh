#!/usr/bin/env bash
# Builds the python example module image without any container registry:
#   build-image.sh [TAG]          TAG: forklet-examples/python:dev by default
#
# Python 3 (stdlib only) as PID 1, uid 10001, on a debootstrapped Debian root
# file system (see ../debian-image.sh, which caches it under target/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# python3-minimal has the interpreter; http.server and json are in the stdlib package.
exec bash "$here/../debian-image.sh" "${1:-forklet-examples/python:dev}" python \
  python3-minimal,libpython3-stdlib \
  '["/usr/bin/python3", "/opt/module/server.py"]' \
  "$here/server.py"
