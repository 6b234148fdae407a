#!/usr/bin/env bash
# On the GPU machine (device tool, carry [".whl"]), from the repository root:
#   bash benchmarks/device/embed_gpu.sh
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 benchmarks/embed_gpu.py --windows "${WINDOWS:-768}" --ref-windows "${REF_WINDOWS:-48}" --compile \
  --batch-size "${BATCH:-8}" --tmp /tmp 2>&1 | tee "${OUT:-/tmp}/embed_gpu.log"
