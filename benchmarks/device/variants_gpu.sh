#!/usr/bin/env bash
# On the GPU machine (device tool, carry [".whl"]), from the repository root:
#   bash benchmarks/device/variants_gpu.sh
# Full-size random Enformer (196,608 bp, 896 bins), bf16, torch.compile, a TSV of random SNVs
# (no cyvcf2 needed; Parquet is skipped when pyarrow is absent).
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 benchmarks/variants_speed.py --variants "${VARIANTS:-512}" --batch-size "${BATCH:-16}" --compile \
  --tmp /tmp 2>&1 | tee "${OUT:-/tmp}/variants_gpu.log"
