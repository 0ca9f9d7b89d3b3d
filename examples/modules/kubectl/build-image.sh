#!/usr/bin/env bash
# Builds the kubectl example module image without any container registry:
#   build-image.sh [TAG]          TAG: forklet-examples/kubectl:dev by default
#
# Debian's kubectl (kubernetes-client) and Python 3 (stdlib only) as PID 1,
# uid 10001, on a debootstrapped Debian root file system (see
# ../debian-image.sh, which caches it under target/). The same image serves
# as a stand-in Kubernetes API server for forklet's tests (apiserver.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/../debian-image.sh" "${1:-forklet-examples/kubectl:dev}" kubectl \
  python3-minimal,libpython3-stdlib,kubernetes-client,ca-certificates \
  '["/usr/bin/python3", "/opt/module/server.py"]' \
  "$here/server.py" "$here/apiserver.py"
