#!/usr/bin/env bash
# Runs forklet on the bundled examples: builds the hello module image and the
# binaries, starts forkletd on a copy of examples/manifests, waits for the
# modules to be ready and shows them with `forklet get`. Then it deletes the
# manifests (so the modules are uninstalled and their containers removed) and
# stops the daemon. `--keep` leaves everything running and says how to stop it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
keep=false
[[ "${1:-}" == "--keep" ]] && keep=true

echo "==> building the hello module image (static binary, FROM scratch)"
"$root/examples/modules/build-image.sh" hello-module >/dev/null
echo "==> building forkletd and forklet"
cargo build --quiet --locked --manifest-path "$root/Cargo.toml" -p forkletd -p forklet
bin="$root/target/debug"

work=$(mktemp -d "${TMPDIR:-/tmp}/forklet-example.XXXXXX")
mkdir -p "$work/manifests"
cp "$root"/examples/manifests/* "$work/manifests/"
export FORKLET_SOCKET="$work/forkletd.sock"
"$bin/forkletd" --manifests "$work/manifests" --state-dir "$work/state" 2>"$work/forkletd.log" &
daemon=$!

stop() {
  kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
}
trap 'stop; echo "forkletd log: $work/forkletd.log"' ERR INT

echo "==> waiting for the example modules to be ready"
for _ in $(seq 1 600); do
  if ! kill -0 "$daemon" 2>/dev/null; then
    echo "forkletd exited:" >&2
    cat "$work/forkletd.log" >&2
    exit 1
  fi
  phases=$("$bin/forklet" get modules -o json 2>/dev/null | grep -o '"phase": "[a-z]*"' || true)
  if [[ -n "$phases" ]] && ! grep -qv '"ready"' <<<"$phases"; then
    break
  fi
  sleep 0.1
done

echo
"$bin/forklet" get modules
echo
"$bin/forklet" get workspaces
echo
if grep -qv '"ready"' <<<"$phases"; then
  echo "not every module became ready; see $work/forkletd.log" >&2
  stop
  exit 1
fi

if $keep; then
  cat <<MSG
forkletd keeps running (pid $daemon) on $work/manifests. Try:
  export FORKLET_SOCKET=$FORKLET_SOCKET
  $bin/forklet get module hello -o yaml
  sed -i 's/hibernated: false/hibernated: true/' $work/manifests/app-installer.yaml
To stop: rm $work/manifests/*.yaml, wait for \`forklet get modules\` to be empty, then kill $daemon
MSG
  exit 0
fi

echo "==> removing the manifests: forklet uninstalls the modules"
rm "$work/manifests/"*.yaml
for _ in $(seq 1 600); do
  [[ "$("$bin/forklet" get modules -o json)" == "[]" ]] && break
  sleep 0.1
done
stop
rm -rf "$work"
echo "done: modules uninstalled, runner containers removed, forkletd stopped"
