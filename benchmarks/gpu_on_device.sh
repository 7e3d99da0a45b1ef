#!/usr/bin/env bash
# The GPU check as one command, at most 6 minutes, on a machine with the NVIDIA driver and PyTorch but no
# system GStreamer: sets up .gpu-bundle/ (made here by benchmarks/gpu_bundle.sh and carried along; it
# unpacks and builds the bindings once), then prints one table (benchmarks/gpu_table.py): the model alone
# per precision, layout and batch, and `vidpipe detect` on 1, 8 and 32 streams of the bundled clip with
# NVIDIA and software decoding (decoder used, FPS, latency p50/p95); then frames into PyTorch with and
# without leaving the GPU (benchmarks/gpu_handoff.py). Output goes to stdout and, when $OUT is set, to
# $OUT/gpu.txt.
#
#     bash benchmarks/gpu_on_device.sh                 # on the GPU machine
#     bash benchmarks/gpu_on_device.sh --device cpu    # here: the same script on a few frames (tested)
set -uo pipefail
cd "$(dirname "$0")/.."
device=cuda
if [ "${1:-}" = --device ]; then device=$2 && shift 2; fi
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python3}
log=${OUT:-/tmp}/gpu.txt
extra=()
if [ "$device" = cpu ]; then
  budget=40  # this machine's GStreamer and Python
else
  budget=280  # the table's; the handoff check takes at most 3 x 20 s more
  if [ ! -f .gpu-bundle/env.sh ]; then
    echo "no .gpu-bundle/: make it with bash benchmarks/gpu_bundle.sh (needs network) and carry it" >&2
    exit 2
  fi
  PYTHON=$python source .gpu-bundle/env.sh
  extra=(--weights "$VIDPIPE_BUNDLE_WEIGHTS")
fi
{
  if [ "$device" != cpu ]; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; fi
  timeout $((budget + 20)) "$python" benchmarks/gpu_table.py --device "$device" --budget "$budget" \
    ${extra[@]+"${extra[@]}"} "$@"
  table=$?
  timeout 70 "$python" benchmarks/gpu_handoff.py --device "$device" --timeout 20 \
    $([ "$device" = cpu ] && echo --frames 50) || echo "handoff check: exit $?"
  exit $table
} 2>&1 | tee "$log"
exit "${PIPESTATUS[0]}"
