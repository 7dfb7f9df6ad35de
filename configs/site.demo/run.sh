#!/usr/bin/env bash
# The site demo on one machine: the hub and two edge nodes (cam1 | cam2 + cam3) as separate
# processes, every frame in lockstep; then the site's MOT files are scored like a single run's.
#   configs/site.demo/run.sh [MAX_FRAMES]      (from the repository root; default: every frame)
# Then one process on the same frames (configs/cams.demo_eval.yaml) is scored the same way and the
# two runs' files compared row by row (scripts/compare_site_run.py).
# Outputs: runs/site_demo/{mot,hub.log,node1.log,node2.log,hub.json,scores.json,single/}
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
out=runs/site_demo
rm -rf "$out" && mkdir -p "$out"
limit=()
if [ -n "${1:-}" ]; then limit=("run.max_frames=$1"); fi
$PY -m edge.hub --config configs/site.demo/hub.yaml --report "$out/hub.json" >"$out/hub.log" 2>&1 &
hub=$!
trap 'kill "$hub" 2>/dev/null || true' EXIT
$PY -m edge.run --cameras configs/site.demo/node1.yaml "${limit[@]}" >"$out/node1.log" 2>&1 &
n1=$!
$PY -m edge.run --cameras configs/site.demo/node2.yaml "${limit[@]}" >"$out/node2.log" 2>&1 &
n2=$!
wait "$n1" "$n2"
kill -TERM "$hub" && wait "$hub" || true
$PY -m edge.world mot --scene demo --out "$out/gt" >/dev/null
$PY -m edge.evaluate --gt "$out/gt" --pred "$out/mot" --out "$out/scores.json"
$PY -m edge.run --cameras configs/cams.demo_eval.yaml "${limit[@]}" outputs.mot_dir="$out/single/mot" outputs.floor_map=null \
    detector.batch=false publisher.enabled=false >"$out/single.log" 2>&1
$PY -m edge.evaluate --gt "$out/gt" --pred "$out/single/mot" --out "$out/single/scores.json"
$PY scripts/compare_site_run.py "$out/mot" "$out/single/mot"
