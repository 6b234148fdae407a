"""Fine-tuning speed and memory: training windows/s and peak memory per trainable mode (lora,
last:2, all) of the tool's end-to-end model (trunk + 66-track head, Poisson loss, AdamW, BatchNorm
statistics frozen, activation checkpointing and bf16 autocast on GPU), random weights.

On a GPU, the full-size architecture (dim 1536, depth 11, heads 8, 196,608-bp inputs, 896 bins):
    python benchmarks/finetune_speed.py --steps 20 --batch-size 1
On CPU (a check of the script, tiny configuration):
    python benchmarks/finetune_speed.py --device cpu --dim 48 --depth 2 --heads 2 --attn-dim-key 16 \\
        --seq-length 16384 --n-bins 64 --steps 4
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _device import allow_missing_polars  # noqa: E402

allow_missing_polars()


def build(args, trainable: str):
    from enformer_pytorch import Enformer, EnformerConfig

    from enformer_transfer.backbone.model import SequenceModel
    from enformer_transfer.finetune.adapt import adapt
    from enformer_transfer.heads.models import make_head

    torch.manual_seed(0)
    config = EnformerConfig(dim=args.dim, depth=args.depth, heads=args.heads, attn_dim_key=args.attn_dim_key,
                            target_length=args.n_bins, dim_divisible_by=128 if args.dim % 128 == 0 else args.dim // 4,
                            output_heads={"human": 8})
    enformer = adapt(Enformer(config), trainable)
    head = make_head("linear", 2 * args.dim, args.tracks)
    model = SequenceModel(enformer.trunk, head, args.precision, checkpointing=args.checkpointing).to(args.device)
    return model.train()


def run(args, trainable: str) -> dict:
    from enformer_transfer.heads.losses import poisson

    device = torch.device(args.device)
    model = build(args, trainable)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (args.batch_size, args.seq_length)), 4).float().to(device)
    y = torch.poisson(torch.rand(args.batch_size, args.n_bins, args.tracks)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = poisson(model(x), y)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    sync()
    start = time.time()
    for _ in range(args.steps):
        step()
    sync()
    seconds = time.time() - start
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    trainable_params = sum(p.numel() for p in params)
    return {"trainable": trainable, "windows_per_s": args.steps * args.batch_size / seconds,
            "peak_gb": peak / 1e9, "trainable_params": trainable_params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--depth", type=int, default=11)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--attn-dim-key", type=int, default=64)
    parser.add_argument("--seq-length", type=int, default=196_608)
    parser.add_argument("--n-bins", type=int, default=896)
    parser.add_argument("--tracks", type=int, default=66)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--modes", default="lora,last:2,all")
    parser.add_argument("--precision", default=None, help="default: bf16 on GPU, fp32 on CPU")
    parser.add_argument("--no-checkpointing", dest="checkpointing", action="store_false")
    args = parser.parse_args()
    args.precision = args.precision or ("bf16" if args.device.startswith("cuda") else "fp32")
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    print(f"device {name}; torch {torch.__version__}; dim {args.dim} depth {args.depth} heads {args.heads}; "
          f"input {args.seq_length:,} bp, {args.n_bins} bins, {args.tracks} tracks; batch {args.batch_size}; "
          f"{args.precision}; checkpointing {args.checkpointing}", flush=True)
    for mode in args.modes.split(","):
        try:
            r = run(args, mode)
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
            print(f"{r['trainable']:8s} {r['windows_per_s']:8.2f} training windows/s   peak memory "
                  f"{r['peak_gb']:6.1f} GB   trainable parameters {r['trainable_params']:,}", flush=True)
        except torch.cuda.OutOfMemoryError:
            print(f"{mode:8s} out of memory at batch {args.batch_size}", flush=True)
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
