#!/usr/bin/env bash
# Build both TensorRT engines ON the Jetson (engines are tied to the GPU and TensorRT version).
#   deploy/jetson/build_engines.sh <reid.onnx> <detector.onnx> [out_dir]
# Both ONNX files come from any machine (python -m export onnx / python -m export detector --format
# onnx); nothing here needs PyTorch.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 <reid.onnx> <detector.onnx> [out_dir]" >&2
    exit 2
fi
reid_onnx=$1
detector=$2
out_dir=${3:-/opt/clipreid}
mkdir -p "$out_dir"

echo "ReID engine (FP16, batch 1:16:32) from $reid_onnx"
python3 -m export trt --onnx "$reid_onnx" --out "$out_dir/reid.engine" --fp16 --batch 1:16:32 \
    --timing-cache "$out_dir/trt.cache"

echo "Detector engine (FP16, batch 1:4:8) from $detector"
python3 -m export detector-engine --onnx "$detector" --out "$out_dir/detector.engine" --fp16 --batch 1:4:8

echo "Engines in $out_dir:"
ls -l "$out_dir"
