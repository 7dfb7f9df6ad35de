#!/usr/bin/env bash
# The site demo on one machine: the hub and two edge nodes (cam1 | cam2 + cam3) as separate
# processes, every frame in lockstep; then the site's MOT files are scored like a single run's.
#   configs/site.demo/run.sh [MAX_FRAMES]      (from the repository root; default: every frame)
# Then one process on the same frames (configs/cams.demo_eval.yaml) is scored the same way and the
# two runs' files compared row by row (scripts/compare_site_run.py). Scoring (edge.evaluate) needs
# trackeval from the [train] extra; with the [site] install alone it is skipped with a note.
# If the hub or a node fails, the demo stops at once: the end of its log on stderr, the other
# processes ended, exit status 1.
# Outputs: runs/site_demo/{mot,hub.log,node1.log,node2.log,hub.json,hub.sqlite,scores.json,single/}, or the
# folder SITE_DEMO_OUT names (relative to the current directory); the script replaces only these.
# SITE_DEMO_PORTS="HUB HUB_EVENTS NODE1_EVENTS NODE2_EVENTS" moves the demo off its ports (5600 5610 5621 5622,
# the yaml files'), e.g. to run it beside another.
set -euo pipefail
out=${SITE_DEMO_OUT:-}
if [ -n "$out" ] && [ "${out#/}" = "$out" ]; then out=$PWD/$out; fi
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
out=${out:-runs/site_demo}
hub_args=() node1_args=() node2_args=()
if [ -n "${SITE_DEMO_PORTS:-}" ]; then
  read -r hub_port hub_events node1_events node2_events extra <<<"$SITE_DEMO_PORTS" || true
  for port in "${hub_port:-}" "${hub_events:-}" "${node1_events:-}" "${node2_events:-}"; do
    if ! [[ "$port" =~ ^[0-9]+$ ]] || [ -n "${extra:-}" ]; then
      echo "site demo: SITE_DEMO_PORTS must be four port numbers (hub, hub events, node1 events, node2 events), not '$SITE_DEMO_PORTS'" >&2
      exit 2
    fi
  done
  hub_args=("bind=tcp://127.0.0.1:$hub_port" "publisher.endpoint=tcp://127.0.0.1:$hub_events")
  node1_args=("site.hub=tcp://127.0.0.1:$hub_port" "publisher.endpoint=tcp://127.0.0.1:$node1_events")
  node2_args=("site.hub=tcp://127.0.0.1:$hub_port" "publisher.endpoint=tcp://127.0.0.1:$node2_events")
fi
mkdir -p "$out"
rm -rf "${out:?}"/{mot,gt,single,hub.log,node1.log,node2.log,single.log,hub.json,scores.json,hub.sqlite,hub.sqlite-wal,hub.sqlite-shm}
store=$(cd "$out" && pwd)/hub.sqlite  # the hub resolves a relative store against its yaml's folder
limit=()
if [ -n "${1:-}" ]; then limit=("run.max_frames=$1"); fi
running=()  # pids of the demo's processes still running
# The demo's own messages go to fd 3 (the terminal's stderr); the loops that watch the processes run
# with stderr to /dev/null, where bash's notice of a job killed by a signal ("... Killed") goes.
exec 3>&2

stop_all() {  # quietly (what they said is in their logs): SIGTERM, up to 10 s to end cleanly, then SIGKILL
  local pid tries=50
  for pid in "${running[@]}"; do kill -TERM "$pid" || true; done
  while [ "$tries" -gt 0 ] && alive; do sleep 0.2; tries=$((tries - 1)); done
  for pid in "${running[@]}"; do kill -KILL "$pid" || true; wait "$pid" || true; done
  running=()
} 2>/dev/null

alive() {  # is any of the demo's processes still running?
  local pid
  for pid in "${running[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}
trap stop_all EXIT

failed() {  # $1: what failed, $2: its log
  echo "site demo: $1; the end of $2:" >&3
  tail -n 15 "$2" >&3
  stop_all
  exit 1
}

forget() {  # $1: a pid that has ended
  local pid rest=()
  for pid in "${running[@]}"; do [ "$pid" = "$1" ] || rest+=("$pid"); done
  running=("${rest[@]}")
}

check_hub() {  # the hub must still run while the nodes do
  local status=0
  if ! kill -0 "$hub" 2>/dev/null; then
    wait "$hub" 2>/dev/null || status=$?
    forget "$hub"
    failed "the hub exited (status $status)" "$out/hub.log"
  fi
}

$PY -m edge.hub --config configs/site.demo/hub.yaml --report "$out/hub.json" store="$store" "${hub_args[@]}" >"$out/hub.log" 2>&1 &
hub=$!
running+=("$hub")
{ until grep -q "hub: session" "$out/hub.log"; do check_hub; sleep 0.2; done; } 2>/dev/null  # the nodes start once the hub listens
$PY -m edge.run --cameras configs/site.demo/node1.yaml "${limit[@]}" outputs.mot_dir="$out/mot" "${node1_args[@]}" >"$out/node1.log" 2>&1 &
nodes=("$!")
$PY -m edge.run --cameras configs/site.demo/node2.yaml "${limit[@]}" outputs.mot_dir="$out/mot" "${node2_args[@]}" >"$out/node2.log" 2>&1 &
nodes+=("$!")
running+=("${nodes[@]}")
left=2
while [ "$left" -gt 0 ]; do  # until both nodes are done; the hub or a node failing stops the demo
  check_hub
  for i in 0 1; do
    pid=${nodes[$i]}
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      status=0
      wait "$pid" 2>/dev/null || status=$?
      forget "$pid"
      nodes[i]=""
      left=$((left - 1))
      if [ "$status" -ne 0 ]; then failed "node$((i + 1)) exited (status $status)" "$out/node$((i + 1)).log"; fi
    fi
  done
  sleep 0.2
done 2>/dev/null
kill -TERM "$hub" 2>/dev/null || true
status=0
wait "$hub" 2>/dev/null || status=$?
forget "$hub"
if [ "$status" -ne 0 ]; then failed "the hub exited (status $status)" "$out/hub.log"; fi
score=true
if ! $PY -c "import trackeval" 2>/dev/null; then
  score=false
  echo "site demo: scores skipped (edge.evaluate needs trackeval: pip install -e '.[train]'); the runs are still compared row by row"
fi
if $score; then
  $PY -m sim mot --scene demo --out "$out/gt" >/dev/null
  $PY -m edge.evaluate --gt "$out/gt" --pred "$out/mot" --out "$out/scores.json"
fi
$PY -m edge.run --cameras configs/cams.demo_eval.yaml "${limit[@]}" outputs.mot_dir="$out/single/mot" outputs.floor_map=null \
    detector.batch=false publisher.enabled=false >"$out/single.log" 2>&1 || failed "the single-process run failed" "$out/single.log"
if $score; then $PY -m edge.evaluate --gt "$out/gt" --pred "$out/single/mot" --out "$out/single/scores.json"; fi
$PY scripts/compare_site_run.py "$out/mot" "$out/single/mot"
