#!/usr/bin/env bash
# Builds an example module as a static binary and packs it into a FROM
# scratch image, with no registry:
#   build-image.sh [BIN [TAG]]    BIN: hello-module (default) or misbehave-module
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-hello-module}
tag=${2:-forklet-examples/${bin%-module}:dev}
target=x86_64-unknown-linux-gnu
# A separate target dir: static RUSTFLAGS would otherwise rebuild the whole workspace.
export CARGO_TARGET_DIR="$root/target/static-modules"
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --quiet --release --locked --manifest-path "$root/Cargo.toml" -p hello-module --bin "$bin" --target "$target"
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$CARGO_TARGET_DIR/$target/release/$bin" "$context/module"
cp "$here/Dockerfile" "$context/"
# DOCKER_BUILDKIT=0: the classic builder is always present; buildx may not be.
if ! log=$(DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$context" 2>&1); then
  echo "$log" >&2
  exit 1
fi
echo "$tag"
