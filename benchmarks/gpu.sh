#!/usr/bin/env bash
# The prepared GPU check: one table of torch TV-L1 pairs/s (batch_pairs 32/64/128 at 340x256 and 320x240,
# endpoint difference from OpenCV), scoring videos/s at 25 frames x 10 crops (inference_batch 100/250 images
# per pass, bf16) and training clips/s of both streams (ResNet-50 at 224, bf16, channels-last, loader share,
# torch.compile off/on, JPEGs decoded in the workers or on the GPU), peak GPU memory. At most 8 minutes on one GPU. Usage, from the repository root:
#   benchmarks/gpu.sh                 # on the GPU torch sees
#   GPU_CHECK_SECONDS=1800 benchmarks/gpu.sh --tiny --device cpu   # tiny sizes on a CPU: proves the script, measures nothing
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
exec timeout "${GPU_CHECK_SECONDS:-480}" "$PYTHON" benchmarks/gpu.py --json benchmarks/out/gpu.json "$@"
