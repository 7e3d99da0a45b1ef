#!/usr/bin/env bash
# The GPU check in one run, on a machine with the NVIDIA driver and PyTorch but no system GStreamer:
# uses .gpu-bundle/ (made by benchmarks/gpu_bundle.sh and carried along), then runs benchmarks/gpu.py
# (agreement, model-only speed, and end to end through GStreamer with 1 and 2 batches in flight).
# Output goes to stdout and, when $OUT is set, to $OUT/gpu.txt.
#
#     bash benchmarks/gpu_on_device.sh [--streams 8]
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
source .gpu-bundle/env.sh
log=${OUT:-/tmp}/gpu.txt
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)'
  python3 -c 'from vidpipe.gst import Gst; print(Gst.version_string())' || echo "GStreamer: not importable"
  python3 -c 'from vidpipe.gst.decoders import nvidia_decoding; print(nvidia_decoding().note)'
  python3 benchmarks/gpu.py --weights .gpu-bundle/weights/ssd_mobilenet_v2_coco-fp16.pt "$@"
} 2>&1 | tee "$log"
