#!/usr/bin/env bash
# Pin the Jetson to a power mode and maximum clocks before benchmarking or deploying.
#   sudo deploy/jetson/jetson_clocks.sh [nvpmodel_mode]   (0 = MAXN on Orin)
set -euo pipefail

mode=${1:-0}
if ! command -v nvpmodel >/dev/null 2>&1; then
    echo "nvpmodel not found: not a Jetson (or JetPack tools missing)" >&2
    exit 1
fi
nvpmodel -m "$mode"
jetson_clocks
nvpmodel -q
jetson_clocks --show
