#!/usr/bin/env bash
# Builds the Debian package (both binaries, the system and user units, the
# forklet group, /etc/forklet/manifests) with cargo-deb:
#   packaging/deb.sh            -> prints the .deb's path
# The units are the ones in systemd/, with the packaged binaries' paths and,
# for the system unit, the control socket given to the forklet group.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb@3.8.0
assets="$root/target/deb-assets"
rm -rf "$assets"
mkdir -p "$assets"
# Members of the forklet group may use the control socket, as members of
# the docker group use Docker's.
sed -e 's|^ExecStart=/usr/local/bin/forkletd \(.*\)|ExecStart=/usr/bin/forkletd \1 --socket-group forklet|' \
    -e 's|^RuntimeDirectoryMode=0700|RuntimeDirectoryMode=0750|' \
    -e 's|^\[Service\]|[Service]\nGroup=forklet|' \
    -e '/^#   install -m/d; /^#   systemctl daemon-reload/d' \
    -e 's|(root only)|(root and the forklet group)|' \
    systemd/forkletd.service >"$assets/forkletd.service"
sed -e 's|^ExecStart=%h/.cargo/bin/forkletd|ExecStart=/usr/bin/forkletd|' \
    -e '/^#   cargo install/d; /^#   install -D/d' \
    systemd/forkletd-user.service >"$assets/forkletd-user.service"
grep -q '^ExecStart=/usr/bin/forkletd .*--socket-group forklet$' "$assets/forkletd.service" ||
  { echo "deb.sh: the system unit's ExecStart did not take the packaged path" >&2; exit 1; }
grep -q '^ExecStart=/usr/bin/forkletd$' "$assets/forkletd-user.service" ||
  { echo "deb.sh: the user unit's ExecStart did not take the packaged path" >&2; exit 1; }
cargo build --locked --release -p forkletd -p forklet >&2
# Manual pages, from the same definitions as --help (forklet man).
mkdir -p "$assets/man"
forklet="target/release/forklet"
"$forklet" man >"$assets/man/forklet.1"
for command in $("$forklet" --help | awk '/^Commands:/ {on = 1; next} on && /^  [a-z]/ {print $1} /^$/ {on = 0}'); do
  [[ "$command" == help ]] && continue
  "$forklet" man "$command" >"$assets/man/forklet-$command.1"
done
gzip -9n "$assets"/man/*.1
cargo deb --locked --no-build -p forklet 2>&1 | tail -n 1
