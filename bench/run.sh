#!/usr/bin/env bash
# Measures forklet against its design targets on this machine's Docker engine.
# Prints numbers; asserts nothing (timings belong here, not in tests).
#
#   bench/run.sh [--json] [SCALE_N [COLD_N]]
#       SCALE_N: modules for the scale figures (default 1000)
#       COLD_N:  modules for the cold start and the first sleep (default 200)
#       --json:  every figure as one JSON object on stdout (the words go to
#                stderr then)
#   BENCH_SKIP="1 3 5" skips those sections, to measure the scale figures
#   alone; "2" skips section 2 and all after it (they build on it), to
#   measure the ready latency alone. Other sections cannot be skipped.
#
# 1. ready latency: manifest written -> phase ready, against a hand-written
#    `docker run` + poll /health every 10 ms + POST /install, in alternating
#    rounds, for the hello module and for a module that starts a second late
#    (the python example), broken down by forkletd's own log lines
#    (target: <= 1.0x);
# 2. cold start: COLD_N manifests at once -> all ready, against the same
#    containers started by `docker run -d` at the same parallelism
#    (target: <= 1.1x);
# 3. a workspace schedule sleeping all COLD_N modules at once (then woken),
#    beside the engine's own `docker stop` at that N;
# 4. growing to SCALE_N: `forklet get module` while modules are installed
#    (target: <= 20 ms), beside the CLI's own start and the API's answer;
# 5. idle with SCALE_N: CPU over 600 s, RSS (targets: <= 0.1 %, <= 40 MB),
#    `forklet get modules -o json` (target: <= 50 ms);
# 6. a workspace schedule sleeping all SCALE_N (target: linear in N: the
#    time per module as at COLD_N, where the engine's own stop allows it);
# 7. a restart adopting SCALE_N running modules with no /install
#    (target: <= 3 s).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
json=false
if [[ "${1:-}" == --json ]]; then
  json=true
  shift
fi
scale_n=${1:-1000}
cold_n=${2:-200}
if ((cold_n > scale_n)); then
  echo "COLD_N ($cold_n) must not be above SCALE_N ($scale_n)" >&2
  exit 2
fi
# Each runner takes two entries in the kernel's neighbour table (README, "A
# thousand modules"); past its limit, calls to runners time out at random
# and the figures would be the kernel's, so the run stops before it starts.
# An engine on another kernel (DOCKER_HOST tcp:// or ssh://, a VM) has its
# own table: BENCH_NEIGHBOUR_CHECK=off skips the check. 128: the host's own
# entries, as forkletd's warning counts them (daemon/src/neighbours.rs).
neighbour_limit=$(cat /proc/sys/net/ipv4/neigh/default/gc_thresh3 2>/dev/null || echo "")
if [[ "${BENCH_NEIGHBOUR_CHECK:-on}" != off && "${DOCKER_HOST:-unix://}" == unix://* &&
      "$neighbour_limit" =~ ^[0-9]+$ ]] && (( 2 * scale_n + 128 > neighbour_limit )); then
  echo "the kernel's neighbour table holds $neighbour_limit entries and $scale_n runners need about $(( 2 * scale_n + 128 )):" >&2
  echo "raise it first (as root): sysctl -p $root/systemd/60-forklet.conf" >&2
  echo "(an engine on another kernel: BENCH_NEIGHBOUR_CHECK=off)" >&2
  exit 2
fi
rounds=10
parallel=16
# Long enough for every periodic task at its idle rate: rescan (30 s),
# hibernation clock and heap trim (60 s), engine look (5 min), orphan sweep
# (10 min when nothing is suspect).
idle_window=${BENCH_IDLE_SECONDS:-600}
image=forklet-examples/hello:dev
slow_image=forklet-examples/python:dev
declare -A figures
say() { if $json; then echo "$@" >&2; else echo "$@"; fi; }
skip=" ${BENCH_SKIP:-} "
wanted() { [[ "$skip" != *" $1 "* ]]; }
report() {
  if $json; then
    # Every figure is a number: only the keys need quotes.
    for key in "${!figures[@]}"; do printf '"%s": %s\n' "$key" "${figures[$key]}"; done |
      sort | paste -sd, - | sed 's/^/{/; s/$/}/'
  fi
}
# A figure that could not be measured is null, so the JSON stays JSON.
figure() { figures[$1]=${2:-null}; }

say "==> building (release) and the example images"
cargo build --quiet --release --locked --manifest-path "$root/Cargo.toml" -p forkletd -p forklet
"$root/examples/modules/build-image.sh" hello-module "$image" >/dev/null
"$root/examples/modules/python/build-image.sh" "$slow_image" >/dev/null
bin="$root/target/release"
work=$(mktemp -d "${TMPDIR:-/tmp}/forklet-bench.XXXXXX")
mkdir -p "$work/manifests"
sock="$work/forkletd.sock"
log="$work/forkletd.log"
daemon=""
instance=""
keep_log=false
cleanup() {
  [[ -n "$daemon" ]] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
  docker ps -aq --filter "name=forklet-bench-" | xargs -r docker rm -f >/dev/null
  docker network rm forklet-bench-stop >/dev/null 2>&1 || true
  # Only this run's runners: the instance label of its own daemon.
  [[ -n "$instance" ]] && docker ps -aq --filter "label=forklet.instance=$instance" | xargs -r docker rm -f >/dev/null
  # After a failure the daemon's log stays, for reading.
  if $keep_log; then rm -rf "$work/state" "$work/manifests"; else rm -rf "$work"; fi
}
trap cleanup EXIT

now_us() { echo $(( $(date +%s%N) / 1000 )); }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
p95() { sort -n | awk '{a[NR]=$1} END {i=int(NR*0.95+0.999); if (i<1) i=1; print a[i]}'; }
# ratio A B: A/B to two places, or null unless both are numbers and B is not 0.
ratio() {
  if [[ "$1" =~ ^[0-9.]+$ && "$2" =~ ^[0-9.]+$ ]] && awk "BEGIN {exit !($2 > 0)}"; then
    awk "BEGIN {printf \"%.2f\", $1/$2}"
  else
    echo null
  fi
}
api() { curl -s --unix-socket "$sock" "http://forkletd$1"; }
phase() { api "/v1/modules/default/$1" | grep -o '"phase":"[a-z]*"' | cut -d'"' -f4; }
count_phase() { api /v1/modules | grep -o "\"phase\":\"$1\"" | wc -l; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$daemon/stat"; }
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
# workspace [SLEEP_AT_UNIX_SECONDS]: the workspace, with a schedule that
# sleeps it at that second (UTC) and wakes it twelve hours later.
workspace() {
  echo 'apiVersion: batch.forkspacer.com/v1
kind: Workspace
metadata: {name: dev}'
  if [[ -n "${1:-}" ]]; then
    local s m h
    read -r s m h <<<"$(date -u -d "@$1" '+%-S %-M %-H')"
    echo "spec:
  autoHibernation:
    enabled: true
    timezone: UTC
    schedule: '$s $m $h * * *'
    wakeSchedule: '$s $m $(( (h + 12) % 24 )) * * *'"
  fi
}
start_daemon() {
  FORKLET_LOG=forkletd=debug "$bin/forkletd" --manifests "$work/manifests" --state-dir "$work/state" \
    --socket "$sock" --max-concurrent "$parallel" --log-format json 2>>"$log" &
  daemon=$!
  wait_for 30 "the control socket" curl -sf --unix-socket "$sock" http://forkletd/v1/modules -o /dev/null
}
# wait_for SECONDS WHAT COMMAND...: polls COMMAND every $poll s until it
# succeeds, or gives up.
poll=0.01
wait_for() {
  local limit=$(( $(now_ms) + $1 * 1000 )) what=$2
  shift 2
  until "$@"; do
    if [[ $(now_ms) -gt $limit ]]; then
      echo "gave up waiting for $what; forkletd log: $log" >&2
      keep_log=true
      exit 1
    fi
    sleep "$poll"
  done
}
at_least() { [[ $(count_phase "$1") -ge $2 ]]; }
phase_is() { [[ "$(phase "$1")" == "$2" ]]; }
none_left() { [[ $(api /v1/modules) == "[]" ]]; }
# Modules m-FROM..m-TO, written at once.
write_modules() { for i in $(seq "$1" "$2"); do module "m-$i" >"$work/manifests/m-$i.yaml"; done; }

workspace >"$work/manifests/workspace.yaml"
start_daemon

# latency LABEL IMAGE DELAY: alternating rounds of the hand-written way and
# forklet's for IMAGE (listening DELAY seconds late); the medians of each,
# and of each of forkletd's steps.
latency() {
  # LABEL names modules, so it is a Kubernetes name: `-`, never `_`.
  local label=$1 img=$2 delay=$3 key=${1//-/_} baseline=() forklet_ms=() i t0 t1 id port b f waiter
  : >"$work/rounds"
  for i in $(seq 1 $rounds); do
    t0=$(now_ms)
    id=$(docker run -d --name "forklet-bench-$label-$i" -e PORT=8080 -e START_DELAY_SECONDS="$delay" \
      -p 127.0.0.1::8080 "$img")
    port=$(docker port "$id" 8080/tcp | head -1 | cut -d: -f2)
    wait_for 30 "the baseline's /health" curl -sf "http://127.0.0.1:$port/health" -o /dev/null
    curl -sf -X POST -H 'Content-Type: application/json' -d '{}' "http://127.0.0.1:$port/install" >/dev/null
    baseline+=($(( $(now_ms) - t0 )))
    docker rm -f "$id" >/dev/null

    # Seen ready the way a user of forklet waits for it: on the event
    # stream, no poll. The waiter is started (and looking) before the clock.
    "$bin/forklet" --socket "$sock" wait module "lat-$label-$i" --for=phase=ready --timeout 60s >/dev/null &
    waiter=$!
    sleep 0.2
    t0=$(now_us)
    module "lat-$label-$i" "$img" "$delay" >"$work/manifests/lat-$label-$i.yaml"
    if ! wait "$waiter"; then
      echo "lat-$label-$i did not become ready; forkletd log: $log" >&2
      keep_log=true
      exit 1
    fi
    t1=$(now_us)
    echo "lat-$label-$i $t0 $t1" >>"$work/rounds"
    forklet_ms+=($(( (t1 - t0) / 1000 )))
    if [[ -z "$instance" ]]; then
      id=$(api "/v1/modules/default/lat-$label-$i" | grep -o '"containerId":"[0-9a-f]*"' | cut -d'"' -f4)
      instance=$(docker inspect -f '{{index .Config.Labels "forklet.instance"}}' "$id")
    fi
    rm "$work/manifests/lat-$label-$i.yaml"
    wait_for 60 "lat-$label-$i gone" phase_is "lat-$label-$i" ""
  done
  b=$(printf '%s\n' "${baseline[@]}" | median)
  f=$(printf '%s\n' "${forklet_ms[@]}" | median)
  figure "latency_${key}_baseline_ms" "$b"
  figure "latency_${key}_forklet_ms" "$f"
  figure "latency_${key}_ratio" "$(ratio "$f" "$b")"
  say "    $label: docker run + poll + install: ${b} ms; forklet manifest -> ready: ${f} ms; ratio ${figures[latency_${key}_ratio]} (target <= 1.0)"
  local steps="" spans
  if ! spans=$(python3 "$root/bench/spans.py" "$log" "$work/rounds"); then
    echo "bench/spans.py could not read forkletd's log: $log" >&2
    keep_log=true
    exit 1
  fi
  while read -r step ms; do
    [[ -n "$step" ]] || continue
    figure "latency_${key}_step_${step}_ms" "$ms"
    steps+=" $step +$ms"
  done <<<"$spans"
  say "      forkletd's steps (median ms after the one before):$steps"
}
if wanted 1; then
  say "==> 1. ready latency ($rounds alternating rounds each, medians)"
  latency hello "$image" 0
  latency slow-start "$slow_image" 1
fi
if ! wanted 2; then
  report
  exit 0
fi

# Bulk waits take seconds to minutes: a poll every 0.1 s (one list of the
# modules) costs them little accuracy and leaves the cores to the work.
poll=0.1
say "==> 2. cold start of $cold_n modules ($parallel at a time)"
t0=$(now_ms)
seq 1 "$cold_n" | xargs -P "$parallel" -I{} docker run -d --init --name "forklet-bench-cold-{}" \
  -e PORT=8080 -p 127.0.0.1::8080 "$image" >/dev/null
figure cold_baseline_ms "$(( $(now_ms) - t0 ))"
docker ps -aq --filter "name=forklet-bench-cold-" | xargs -r docker rm -f >/dev/null
t0=$(now_ms)
write_modules 1 "$cold_n"
wait_for 1200 "$cold_n modules ready" at_least ready "$cold_n"
figure cold_forklet_ms "$(( $(now_ms) - t0 ))"
figure cold_ratio "$(ratio "${figures[cold_forklet_ms]}" "${figures[cold_baseline_ms]}")"
say "    docker run -d x$cold_n (started, no health or install): ${figures[cold_baseline_ms]} ms; forklet manifests -> all ready: ${figures[cold_forklet_ms]} ms; ratio ${figures[cold_ratio]} (target <= 1.1)"

# sleep_all N: the workspace's schedule sleeps its N modules a few seconds
# from now; the time from that second until all N are asleep. Then the
# schedule goes and they wake.
sleep_all() {
  local n=$1 at
  at=$(( $(date +%s) + 3 ))
  workspace "$at" >"$work/manifests/workspace.yaml"
  wait_for 600 "$n modules asleep" at_least sleeped "$n"
  figure "sleep_${n}_ms" "$(( $(now_ms) - at * 1000 ))"
  figure "sleep_${n}_per_module_ms" "$(ratio "${figures[sleep_${n}_ms]}" "$n")"
  workspace >"$work/manifests/workspace.yaml"
  t0=$(now_ms)
  wait_for 600 "$n modules awake" at_least ready "$n"
  figure "wake_${n}_ms" "$(( $(now_ms) - t0 ))"
  say "    all $n asleep ${figures[sleep_${n}_ms]} ms after the scheduled second (${figures[sleep_${n}_per_module_ms]} ms a module); woken again in ${figures[wake_${n}_ms]} ms"
  engine_stops "$n"
}
# engine_stops N: the engine's own cost of a stop beside N runners: 100 more
# containers like them (the same image, a published port) stopped by
# `docker stop` at the same parallelism; the figure a sleep per module is
# bounded by at this N. On a network of their own: a Linux bridge holds at
# most 1023 containers, and the runners may fill Docker's default one.
engine_stops() {
  local n=$1 k=100 t0
  docker network create forklet-bench-stop >/dev/null
  seq 1 "$k" | xargs -P "$parallel" -I{} docker run -d -q --init -p 127.0.0.1::8080 \
    --network forklet-bench-stop --name "forklet-bench-stop-{}" "$image" >/dev/null
  t0=$(now_ms)
  seq 1 "$k" | xargs -P "$parallel" -I{} docker stop -t 10 "forklet-bench-stop-{}" >/dev/null
  figure "engine_stop_${n}_per_container_ms" "$(ratio "$(( $(now_ms) - t0 ))" "$k")"
  docker ps -aq --filter "name=forklet-bench-stop-" | xargs -r docker rm -f >/dev/null
  docker network rm forklet-bench-stop >/dev/null
  figure "sleep_${n}_vs_engine_stop" "$(ratio "${figures[sleep_${n}_per_module_ms]}" "${figures[engine_stop_${n}_per_container_ms]}")"
  say "    docker stop beside $n runners, $parallel at a time: ${figures[engine_stop_${n}_per_container_ms]} ms a container; a sleep per module is ${figures[sleep_${n}_vs_engine_stop]}x that"
}
if wanted 3; then
  say "==> 3. a schedule sleeps all $cold_n at once"
  sleep_all "$cold_n"
fi

say "==> 4. growing to $scale_n, asking for one module meanwhile"
t0=$(now_ms)
write_modules $((cold_n + 1)) "$scale_n"
: >"$work/get-times"
: >"$work/start-times"
: >"$work/answer-times"
until at_least ready "$scale_n"; do
  if [[ $(now_ms) -gt $((t0 + 3600 * 1000)) ]]; then
    echo "gave up waiting for $scale_n modules ready; forkletd log: $log" >&2
    keep_log=true
    exit 1
  fi
  g0=$(now_us)
  "$bin/forklet" --socket "$sock" get module m-1 >/dev/null
  echo $(( ($(now_us) - g0) / 1000 )) >>"$work/get-times"
  # The floor under the same load: the same binary started, asking nothing.
  g0=$(now_us)
  "$bin/forklet" --version >/dev/null
  echo $(( ($(now_us) - g0) / 1000 )) >>"$work/start-times"
  # The API's own answer, as curl times it from its connect to the last byte.
  curl -s -o /dev/null --unix-socket "$sock" -w '%{time_total}\n' http://forkletd/v1/modules/default/m-1 |
    awk '{printf "%.1f\n", $1 * 1000}' >>"$work/answer-times"
  sleep 0.2
done
figure grow_ms "$(( $(now_ms) - t0 ))"
figure get_module_under_load_median_ms "$(median <"$work/get-times")"
figure get_module_under_load_p95_ms "$(p95 <"$work/get-times")"
figure cli_start_under_load_median_ms "$(median <"$work/start-times")"
figure cli_start_under_load_p95_ms "$(p95 <"$work/start-times")"
figure api_answer_under_load_median_ms "$(median <"$work/answer-times")"
figure api_answer_under_load_p95_ms "$(p95 <"$work/answer-times")"
say "    $((scale_n - cold_n)) more ready in ${figures[grow_ms]} ms; forklet get module meanwhile: median ${figures[get_module_under_load_median_ms]} ms, p95 ${figures[get_module_under_load_p95_ms]} ms over $(wc -l <"$work/get-times") asks (target <= 20)"
say "    at the same moments: forklet --version (the process alone): median ${figures[cli_start_under_load_median_ms]} ms, p95 ${figures[cli_start_under_load_p95_ms]} ms; the API's answer (curl's time_total): median ${figures[api_answer_under_load_median_ms]} ms, p95 ${figures[api_answer_under_load_p95_ms]} ms"

if wanted 5; then
  say "==> 5. idle with $scale_n modules ($idle_window s)"
  sleep 5
  t1=$(cpu_ticks)
  sleep "$idle_window"
  t2=$(cpu_ticks)
  hz=$(getconf CLK_TCK)
  figure idle_cpu_percent "$(awk "BEGIN {printf \"%.3f\", ($t2 - $t1) * 100 / $hz / $idle_window}")"
  figure idle_rss_kb "$(awk '/VmRSS/ {print $2}' "/proc/$daemon/status")"
  figure idle_heap_kb "$(awk '/RssAnon/ {print $2}' "/proc/$daemon/status")"
  for i in $(seq 1 $rounds); do
    g0=$(now_us)
    "$bin/forklet" --socket "$sock" get modules -o json >/dev/null
    echo $(( ($(now_us) - g0) / 1000 ))
  done >"$work/list-times"
  figure get_modules_json_ms "$(median <"$work/list-times")"
  say "    CPU ${figures[idle_cpu_percent]} % (target <= 0.1); RSS ${figures[idle_rss_kb]} kB, ${figures[idle_heap_kb]} kB of it heap and stacks (target <= 40960); get modules -o json: ${figures[get_modules_json_ms]} ms (target <= 50)"
fi

say "==> 6. a schedule sleeps all $scale_n at once"
sleep_all "$scale_n"

say "==> 7. a restart adopts $scale_n running modules"
kill -TERM "$daemon"
wait "$daemon" || true
lines_before=$(wc -l <"$log")
t0=$(now_ms)
start_daemon
adopted_all() { [[ $(tail -n +"$((lines_before + 1))" "$log" | grep -c '"runner healthy"') -ge $scale_n ]]; }
wait_for 300 "every runner adopted" adopted_all
figure adopt_ms "$(( $(now_ms) - t0 ))"
figure adopt_installs "$(tail -n +"$((lines_before + 1))" "$log" | grep -c 'calling POST /install' || true)"
say "    every runner adopted and healthy in ${figures[adopt_ms]} ms; /install calls after the restart: ${figures[adopt_installs]} (targets: <= 3000 ms, 0)"

say "==> cleaning up"
rm "$work/manifests/"m-*.yaml
wait_for 1800 "every module uninstalled" none_left
figure scale_modules "$scale_n"
figure cold_modules "$cold_n"
report
