#!/usr/bin/env bash
# Builds the hello module as a static binary and packs it into a FROM scratch
# image, with no registry: `build-image.sh [TAG]` (default forklet-examples/hello:dev).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
tag=${1:-forklet-examples/hello:dev}
target=x86_64-unknown-linux-gnu
# A separate target dir: static RUSTFLAGS would otherwise rebuild the whole workspace.
export CARGO_TARGET_DIR="$root/target/static-modules"
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --quiet --release --locked --manifest-path "$root/Cargo.toml" -p hello-module --target "$target"
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$CARGO_TARGET_DIR/$target/release/hello-module" "$here/Dockerfile" "$context/"
# DOCKER_BUILDKIT=0: the classic builder is always present; buildx may not be.
if ! log=$(DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$context" 2>&1); then
  echo "$log" >&2
  exit 1
fi
echo "$tag"
