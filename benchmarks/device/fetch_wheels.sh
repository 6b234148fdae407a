#!/usr/bin/env bash
# Download, here, the wheels the GPU machine lacks (its image has torch 2.11, Lightning,
# transformers 5.x, einops, pandas, numpy, matplotlib, tensorboard, safetensors, but not these).
# Run from the repository root; .whl/ is git-ignored and travels with `carry: [".whl"]`.
# polars (54 MB, imported by enformer_pytorch.data but unused here) is left out: embed_gpu.py
# stands in an empty module for it when it is missing, to stay under the 64 MiB carry limit.
set -euo pipefail
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_34_x86_64 -d .whl \
  enformer-pytorch==0.8.12 torch-einops-utils discrete-key-value-bottleneck-pytorch vector-quantize-pytorch \
  einx frozendict loguru pyfaidx pybigtools py2bit zarr numcodecs donfig google-crc32c \
  pydantic pydantic-core typing-inspection annotated-types tomli-w peft accelerate \
  borzoi-pytorch==0.5.1 alphagenome-pt==1.0.0
du -sh .whl
