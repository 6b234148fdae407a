#!/usr/bin/env bash
# Every GPU benchmark in one device call (a task has 15 minutes of device time in all).
# On the GPU machine (device tool, carry [".whl"], timeout_s 590), from the repository root:
#   OUT=$OUT bash benchmarks/device/gpu_all.sh
# Each part runs even when an earlier one fails; logs go to $OUT (at most 8 files come back).
# Sizes are set so that the whole script ends in about 8 minutes on one H200; scale them with the
# variables below on a slower card.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
part() {  # name, seconds allowed, command...
  local name=$1 limit=$2; shift 2
  echo "=== $name (at most ${limit}s)"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$OUT/$name.log"
}
# 1. embed: ours (bf16, compiled, pipelined store) vs the reference way, full-size random Enformer
part embed 200 python3 benchmarks/embed_gpu.py --windows "${EMBED_WINDOWS:-384}" --ref-windows "${REF_WINDOWS:-32}" \
  --compile --batch-size "${BATCH:-8}" --tmp /tmp
# 2. fine-tune: windows/s and peak memory per trainable mode (lora, last:2, all), full size
part finetune 150 python3 benchmarks/finetune_speed.py --steps "${FT_STEPS:-12}" --batch-size 1
# 3. variants: variants/s end to end, full size
part variants 120 python3 benchmarks/variants_speed.py --variants "${VARIANTS:-256}" --batch-size 16 --compile --tmp /tmp
# 4. contributions: batched across tracks vs one track at a time, full size
if [ -f benchmarks/contributions_speed.py ]; then
  part contributions 90 python3 benchmarks/contributions_speed.py --full --precision bf16 --regions 8 --tracks 66
fi
