#!/usr/bin/env bash
# Measures forklet against its design targets on this machine's Docker engine.
# Prints numbers; asserts nothing (timings belong here, not in tests).
#
#   bench/run.sh [--json] [ADOPT_N]   ADOPT_N: modules for the restart test (default 200)
#                                     --json: every figure as one JSON object on stdout
#                                     (the words go to stderr then)
#
# 1. ready latency: manifest written -> phase ready, against a hand-written
#    `docker run` + poll /health every 10 ms + POST /install, in alternating
#    rounds, for the hello module and for a module that takes a second to
#    start (the python example) (target: <= 1.0x);
# 2. idle: CPU and RSS of forkletd with 50 ready modules (targets: ~0 %, < 15 MB);
# 3. adoption: a restart with ADOPT_N running modules, until every runner was
#    found healthy, with no /install (target: about 2 s for 200).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
json=false
if [[ "${1:-}" == --json ]]; then
  json=true
  shift
fi
adopt_n=${1:-200}
rounds=10
image=forklet-examples/hello:dev
slow_image=forklet-examples/python:dev
declare -A figures
say() { if $json; then echo "$@" >&2; else echo "$@"; fi; }
figure() { figures[$1]=$2; }

say "==> building (release) and the example images"
cargo build --quiet --release --locked --manifest-path "$root/Cargo.toml" -p forkletd -p forklet
"$root/examples/modules/build-image.sh" hello-module "$image" >/dev/null
"$root/examples/modules/python/build-image.sh" "$slow_image" >/dev/null
bin="$root/target/release"
work=$(mktemp -d "${TMPDIR:-/tmp}/forklet-bench.XXXXXX")
mkdir -p "$work/manifests"
sock="$work/forkletd.sock"
daemon=""
instance=""
keep_log=false
cleanup() {
  [[ -n "$daemon" ]] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
  docker ps -aq --filter "name=forklet-bench-" | xargs -r docker rm -f >/dev/null
  # Only this run's runners: the instance label of its own daemon.
  [[ -n "$instance" ]] && docker ps -aq --filter "label=forklet.instance=$instance" | xargs -r docker rm -f >/dev/null
  # After a failure the daemon's log stays, for reading.
  if $keep_log; then rm -rf "$work/state" "$work/manifests"; else rm -rf "$work"; fi
}
trap cleanup EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
phase() { curl -s --unix-socket "$sock" "http://forkletd/v1/modules/default/$1" | grep -o '"phase":"[a-z]*"' | cut -d'"' -f4; }
count_phase() { curl -s --unix-socket "$sock" http://forkletd/v1/modules | grep -o "\"phase\":\"$1\"" | wc -l; }
# module NAME [IMAGE [DELAY]]: a Module manifest; DELAY seconds before it listens.
module() {
  cat <<EOF
apiVersion: batch.forkspacer.com/v1
kind: Module
metadata: {name: $1}
spec:
  workspace: {name: dev}
  config: {startDelaySeconds: ${3:-0}}
  source:
    raw:
      kind: Custom
      metadata: {name: $1, version: 1.0.0, supportedOperatorVersion: '*'}
      spec: {image: '${2:-$image}'}
EOF
}
start_daemon() {
  FORKLET_LOG=forkletd=debug "$bin/forkletd" --manifests "$work/manifests" --state-dir "$work/state" \
    --socket "$sock" --max-concurrent 16 2>>"$work/forkletd.log" &
  daemon=$!
  wait_for 30 "the control socket" curl -sf --unix-socket "$sock" http://forkletd/v1/modules -o /dev/null
}
# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds, or gives up.
wait_for() {
  local limit=$(( $(now_ms) + $1 * 1000 )) what=$2
  shift 2
  until "$@"; do
    if [[ $(now_ms) -gt $limit ]]; then
      echo "gave up waiting for $what; forkletd log: $work/forkletd.log" >&2
      keep_log=true
      exit 1
    fi
    sleep 0.01
  done
}
at_least() { [[ $(count_phase "$1") -ge $2 ]]; }
phase_is() { [[ "$(phase "$1")" == "$2" ]]; }

echo 'apiVersion: batch.forkspacer.com/v1
kind: Workspace
metadata: {name: dev}' >"$work/manifests/workspace.yaml"
start_daemon

# latency LABEL IMAGE DELAY: alternating rounds of the hand-written way and
# forklet's for IMAGE (listening DELAY seconds late); the medians of each.
latency() {
  # LABEL names modules, so it is a Kubernetes name: `-`, never `_`.
  local label=$1 img=$2 delay=$3 key=${1//-/_} baseline=() forklet_ms=() i t0 id port b f
  for i in $(seq 1 $rounds); do
    t0=$(now_ms)
    id=$(docker run -d --name "forklet-bench-$label-$i" -e PORT=8080 -e START_DELAY_SECONDS="$delay" \
      -p 127.0.0.1::8080 "$img")
    port=$(docker port "$id" 8080/tcp | head -1 | cut -d: -f2)
    wait_for 30 "the baseline's /health" curl -sf "http://127.0.0.1:$port/health" -o /dev/null
    curl -sf -X POST -H 'Content-Type: application/json' -d '{}' "http://127.0.0.1:$port/install" >/dev/null
    baseline+=($(( $(now_ms) - t0 )))
    docker rm -f "$id" >/dev/null

    t0=$(now_ms)
    module "lat-$label-$i" "$img" "$delay" >"$work/manifests/lat-$label-$i.yaml"
    wait_for 60 "lat-$label-$i ready" phase_is "lat-$label-$i" ready
    forklet_ms+=($(( $(now_ms) - t0 )))
    if [[ -z "$instance" ]]; then
      id=$(curl -s --unix-socket "$sock" "http://forkletd/v1/modules/default/lat-$label-$i" | grep -o '"containerId":"[0-9a-f]*"' | cut -d'"' -f4)
      instance=$(docker inspect -f '{{index .Config.Labels "forklet.instance"}}' "$id")
    fi
    rm "$work/manifests/lat-$label-$i.yaml"
    wait_for 60 "lat-$label-$i gone" phase_is "lat-$label-$i" ""
  done
  b=$(printf '%s\n' "${baseline[@]}" | median)
  f=$(printf '%s\n' "${forklet_ms[@]}" | median)
  figure "latency_${key}_baseline_ms" "$b"
  figure "latency_${key}_forklet_ms" "$f"
  figure "latency_${key}_ratio" "$(awk "BEGIN {printf \"%.2f\", $f/$b}")"
  say "    $label: docker run + poll + install: ${b} ms; forklet manifest -> ready: ${f} ms; ratio ${figures[latency_${key}_ratio]} (target <= 1.0)"
}
say "==> 1. ready latency ($rounds alternating rounds each, medians)"
latency hello "$image" 0
latency slow-start "$slow_image" 1

say "==> 2. idle with 50 modules"
for i in $(seq 1 50); do module "idle-$i" >"$work/manifests/idle-$i.yaml"; done
wait_for 300 "50 modules ready" at_least ready 50
sleep 2
t1=$(awk '{print $14+$15}' "/proc/$daemon/stat")
sleep 10
t2=$(awk '{print $14+$15}' "/proc/$daemon/stat")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$daemon/status")
anon=$(awk '/RssAnon/ {print $2}' "/proc/$daemon/status")
figure idle_cpu_ticks_10s "$(( t2 - t1 ))"
figure idle_rss_kb "$rss"
figure idle_heap_kb "$anon"
say "    CPU over 10 s: $(( t2 - t1 )) ticks of $(getconf CLK_TCK)/s; RSS ${rss} kB, of which ${anon} kB heap and stacks (target < 15360 kB)"

say "==> 3. adoption of $adopt_n running modules after a restart"
for i in $(seq 51 "$adopt_n"); do module "idle-$i" >"$work/manifests/idle-$i.yaml"; done
t0=$(now_ms)
wait_for 1200 "$adopt_n modules ready" at_least ready "$adopt_n"
figure cold_start_ms "$(( $(now_ms) - t0 ))"
say "    (started $adopt_n modules in ${figures[cold_start_ms]} ms)"
kill -TERM "$daemon"; wait "$daemon" || true
lines_before=$(wc -l <"$work/forkletd.log")
t0=$(now_ms)
start_daemon
adopted_all() { [[ $(tail -n +"$((lines_before + 1))" "$work/forkletd.log" | grep -c 'runner healthy') -ge $adopt_n ]]; }
wait_for 300 "every runner adopted" adopted_all
adopted=$(( $(now_ms) - t0 ))
installs=$(tail -n +"$((lines_before + 1))" "$work/forkletd.log" | grep -c 'calling POST /install' || true)
figure adopt_modules "$adopt_n"
figure adopt_ms "$adopted"
figure adopt_installs "$installs"
say "    every runner adopted and healthy in ${adopted} ms; /install calls after the restart: ${installs} (target: ~2000 ms, 0)"

say "==> cleaning up"
rm "$work/manifests/"idle-*.yaml
none_left() { [[ $(curl -s --unix-socket "$sock" http://forkletd/v1/modules) == "[]" ]]; }
wait_for 600 "every module uninstalled" none_left

if $json; then
  # Every figure is a number: only the keys need quotes.
  for key in "${!figures[@]}"; do printf '"%s": %s\n' "$key" "${figures[$key]}"; done |
    sort | paste -sd, - | sed 's/^/{/; s/$/}/'
fi
