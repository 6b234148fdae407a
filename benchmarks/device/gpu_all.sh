#!/usr/bin/env bash
# Every GPU benchmark in one device call (a task has 15 minutes of device time in all).
# On the GPU machine (device tool, carry [".whl"], timeout_s 590), from the repository root:
#   OUT=$OUT bash benchmarks/device/gpu_all.sh
# Each part runs even when an earlier one fails; logs go to $OUT (gpu.txt + one log per part:
# 8 files, at most 8 come back). The whole script stops starting parts, and caps each part's
# time limit, at BUDGET seconds (default 540: ~9 minutes on one H100); PARTS picks and orders
# the parts (default: all, in the order below), e.g. PARTS="backbone-borzoi backbone-alphagenome".
# Sizes are small (batch 1, few windows and steps) so that every part fits; scale them with the
# variables below on a faster card.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp}
BUDGET=${BUDGET:-540}
PARTS=${PARTS:-embed finetune backbone-borzoi backbone-alphagenome backbone-enformer variants contributions}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
part() {  # name, seconds allowed, command...
  local name=$1 limit=$2; shift 2
  case " $PARTS " in *" $name "*) ;; *) return ;; esac
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 30 ]; then
    echo "=== $name: skipped, ${left} s of the ${BUDGET} s budget left" | tee "$OUT/$name.log"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "=== $name (at most ${limit}s)"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$OUT/$name.log"
}
BB="python3 benchmarks/backbones.py --tmp /tmp --batch-size 1 --ft-batch-size 1"
for name in $PARTS; do
  case $name in
    # embed: ours (bf16, compiled, pipelined store) vs the reference way, full-size random Enformer
    embed) part embed 150 python3 benchmarks/embed_gpu.py --windows "${EMBED_WINDOWS:-256}" \
             --ref-windows "${REF_WINDOWS:-16}" --compile --batch-size "${BATCH:-8}" --tmp /tmp ;;
    # fine-tune: windows/s and peak memory per trainable mode (lora, last:2, all), full size
    finetune) part finetune 100 python3 benchmarks/finetune_speed.py --steps "${FT_STEPS:-8}" --batch-size 1 ;;
    # per backbone (benchmarks/backbones.py, full presets, random weights from the family's init):
    # embed windows/s + peak memory + store size per window, then lora / last:2 / all fine-tuning
    backbone-borzoi) part backbone-borzoi 110 bash -c "$BB --kind borzoi --windows ${BB_WINDOWS:-8} \
             --steps ${BB_STEPS:-3}; $BB --kind flashzoi --windows ${BB_WINDOWS:-8} --steps ${BB_STEPS:-3}" ;;
    backbone-alphagenome) part backbone-alphagenome 150 $BB --kind alphagenome --windows "${AG_WINDOWS:-4}" \
             --steps "${AG_STEPS:-2}" ;;
    backbone-enformer) part backbone-enformer 60 $BB --kind enformer --windows "${BB_WINDOWS:-8}" \
             --steps "${BB_STEPS:-3}" ;;
    # variants: variants/s end to end, full size
    variants) part variants 90 python3 benchmarks/variants_speed.py --variants "${VARIANTS:-128}" --batch-size 16 \
             --compile --tmp /tmp ;;
    # contributions: batched across tracks vs one track at a time, full size
    contributions) [ -f benchmarks/contributions_speed.py ] && part contributions 70 python3 \
             benchmarks/contributions_speed.py --full --precision bf16 --regions 8 --tracks 66 ;;
    *) echo "=== unknown part $name (known: embed finetune backbone-borzoi backbone-alphagenome backbone-enformer variants contributions)" ;;
  esac
done
echo "=== all parts done after $SECONDS s"
