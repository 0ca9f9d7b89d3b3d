#!/usr/bin/env bash
# Builds a module image from a Debian root file system, without any
# container registry:
#   debian-image.sh TAG NAME PACKAGES ENTRYPOINT FILE...
#
#   NAME        what the image is, for its commit message
#   PACKAGES    comma-separated, for debootstrap --include
#   ENTRYPOINT  the image's ENTRYPOINT, as JSON
#   FILE...     copied to /opt/module/ (0644, root-owned)
#
# The root file system is a `debootstrap --variant=minbase` of this machine's
# Debian release with PACKAGES, trimmed, cached as a tarball under
# target/debian-rootfs/; the files are added to it and the result goes
# through `docker import`. The image runs as uid 10001, with no init.
#
# Idempotent: an image TAG whose content-hash label matches its inputs is
# left alone. Progress goes to stderr, the tag alone to stdout.
# Needs root (debootstrap), docker, and a Debian mirror (DEBIAN_MIRROR,
# http://deb.debian.org/debian by default); DEBIAN_SUITE overrides the
# release read from /etc/os-release.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[[ $# -ge 5 ]] || { echo "usage: $0 TAG NAME PACKAGES ENTRYPOINT FILE..." >&2; exit 2; }
tag=$1 name=$2 include=$3 entrypoint=$4
shift 4
files=("$@")
cache="$root/target/debian-rootfs"
label=org.forklet.content-hash
uid=10001

say() { echo "$name image: $*" >&2; }
die() { echo "$name image: error: $*" >&2; exit 1; }

command -v docker >/dev/null || die "docker is not installed"
docker version >/dev/null 2>&1 || die "the Docker engine is not reachable ($(docker version 2>&1 | tail -n 1))"
command -v sha256sum >/dev/null || die "sha256sum (coreutils) is missing"

if [[ -z "${DEBIAN_SUITE:-}" ]]; then
  [[ -r /etc/os-release ]] || die "no /etc/os-release: set DEBIAN_SUITE (e.g. bookworm)"
  # shellcheck disable=SC1091
  . /etc/os-release
  [[ "${ID:-}" == debian && -n "${VERSION_CODENAME:-}" ]] ||
    die "${PRETTY_NAME:-this system} is not a Debian release with a codename: set DEBIAN_SUITE (e.g. bookworm)"
  DEBIAN_SUITE=$VERSION_CODENAME
fi
suite=$DEBIAN_SUITE
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
for file in "${files[@]}"; do
  [[ -f "$file" ]] || die "no file $file"
done

# What the image is made of: a change to any of these rebuilds it.
hash=$( {
  for file in "${files[@]}"; do basename "$file"; sha256sum <"$file"; done
  sha256sum <"$here/debian-image.sh"
  echo "$suite $arch $include $entrypoint"
} | sha256sum | cut -c1-16)
current() { docker image inspect --format "{{index .Config.Labels \"$label\"}}" "$tag" 2>/dev/null || true; }
if [[ "$(current)" == "$hash" ]]; then
  echo "$tag"
  exit 0
fi

mkdir -p "$cache"
# One build at a time (tests may build in parallel); the winner's image serves all.
exec 9>"$cache/.lock"
command -v flock >/dev/null && flock 9
if [[ "$(current)" == "$hash" ]]; then
  echo "$tag"
  exit 0
fi

# The root file system depends only on the release, the packages and the trimming
# below: bump the recipe version when that changes.
recipe=2
packages=$(echo "$include" | sha256sum | cut -c1-8)
rootfs="$cache/$suite-$arch-$packages-r$recipe.tar"
if [[ ! -s "$rootfs" ]]; then
  [[ $(id -u) -eq 0 ]] || die "debootstrap needs root to build $rootfs (run as root once; later builds reuse it)"
  if ! command -v debootstrap >/dev/null; then
    command -v apt-get >/dev/null || die "debootstrap is missing and there is no apt-get to install it"
    say "installing debootstrap with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! log=$(apt-get update -q 2>&1 && apt-get install -y -q --no-install-recommends debootstrap </dev/null 2>&1); then
      echo "$log" | tail -n 20 >&2
      die "could not install debootstrap"
    fi
  fi
  work=$(mktemp -d "$cache/build.XXXXXX")
  # debootstrap mounts /proc and /sys in the target; never delete through them.
  cleanup() {
    grep -o " $work/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf --one-file-system "$work"
  }
  trap cleanup EXIT
  say "debootstrap $suite/$arch (minbase, $include) from $mirror: about a minute, once"
  if ! debootstrap --variant=minbase --arch="$arch" --include="$include" \
    "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 20 "$work/debootstrap.log" >&2
    [[ -f "$work/root/debootstrap/debootstrap.log" ]] && tail -n 20 "$work/root/debootstrap/debootstrap.log" >&2
    die "debootstrap $suite failed (log above)"
  fi
  r="$work/root"
  say "trimming the root file system"
  # Documentation (copyright notices stay), manuals, translations, apt's
  # caches and lists, logs, device nodes (Docker provides /dev), time zones
  # but UTC, and iconv's charset modules (the modules here need none).
  find "$r/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
  find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$r"/usr/share/{man,info,lintian,linda,locale}/* "$r"/usr/share/common-licenses \
    "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
    "$r"/var/log/* "$r"/dev/* "$r"/tmp/* "$r"/run/* "$r"/debootstrap \
    "$r"/usr/lib/*-linux-gnu/gconv
  find "$r/usr/share/zoneinfo" -mindepth 1 -maxdepth 1 ! -name Etc ! -name UTC \
    -exec rm -rf {} + 2>/dev/null || true
  # The module's user, so `id` and ps show a name; files stay root-owned.
  echo "module:x:$uid:$uid:forkspacer module:/nonexistent:/usr/sbin/nologin" >>"$r/etc/passwd"
  echo "module:x:$uid:" >>"$r/etc/group"
  echo "module:*:19000:0:99999:7:::" >>"$r/etc/shadow"
  mkdir -p "$r/opt/module"
  tar --numeric-owner -C "$r" -cf "$work/rootfs.tar" .
  mv "$work/rootfs.tar" "$rootfs"
  cleanup
  trap - EXIT
  say "cached $rootfs ($(du -h "$rootfs" | cut -f1))"
fi

say "importing $tag"
previous=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$rootfs" "$stage/image.tar"
mkdir -p "$stage/files/opt/module"
added=()
for file in "${files[@]}"; do
  install -m 0644 "$file" "$stage/files/opt/module/$(basename "$file")"
  added+=("./opt/module/$(basename "$file")")
done
tar --numeric-owner --owner=0 --group=0 -C "$stage/files" -rf "$stage/image.tar" "${added[@]}"
if ! id=$(docker import \
  --change "USER $uid:$uid" \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV PORT=8080" \
  --change "ENV PYTHONUNBUFFERED=1" \
  --change "ENV PYTHONDONTWRITEBYTECODE=1" \
  --change "EXPOSE 8080" \
  --change "WORKDIR /" \
  --change "ENTRYPOINT $entrypoint" \
  --change 'CMD []' \
  --change "LABEL $label=$hash" \
  --message "forklet example: $name ($suite, $hash)" \
  "$stage/image.tar" "$tag" 2>&1); then
  echo "$id" >&2
  die "docker import failed"
fi
# The image this one replaces would be left dangling: remove it unless in use.
if [[ -n "$previous" && "$previous" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]]; then
  docker rmi "$previous" >/dev/null 2>&1 || true
fi
say "built $tag ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}'))"
echo "$tag"
