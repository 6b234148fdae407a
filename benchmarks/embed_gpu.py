"""GPU embedding benchmark: the reference way vs ours, same windows, one run.

Reference way (the study): float32, one window at a time, ``model(x,
return_only_embeddings=True)``, one ``torch.save`` float32 ``.pt`` file per window.
Ours: the ``embed`` stage: DataLoader workers, bf16 autocast, batches, optional
``torch.compile``, float16 zarr writes in a background thread. Random weights, full-size
architecture by default (3.25 TFLOP per window). Prints windows/s for both, the ratio and
the Pearson between our bf16 and the reference float32 embeddings.

On a GPU machine:   python benchmarks/embed_gpu.py --windows 1024 --ref-windows 64 --compile
CPU smoke test:     python benchmarks/embed_gpu.py --device cpu --precision fp32 --dim 48 --depth 1 \\
                        --heads 2 --attn-dim-key 16 --windows 12 --ref-windows 3 --batch-size 4
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _device import allow_missing_polars  # noqa: E402

allow_missing_polars()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1024)
    parser.add_argument("--ref-windows", type=int, default=64)
    parser.add_argument("--seq-length", type=int, default=196_608)
    parser.add_argument("--n-bins", type=int, default=896)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--depth", type=int, default=11)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--attn-dim-key", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--loader-workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tmp", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()

    import numpy as np
    import torch
    from _embed_data import build_run

    from enformer_transfer import Run, embed_run
    from enformer_transfer.backbone.load import init_backbone, load_backbone
    from enformer_transfer.devices import Dist, resolve_device
    from enformer_transfer.genome.onehot import one_hot_padded
    from enformer_transfer.genome.sequence import Genome

    device = resolve_device(args.device, Dist())
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with tempfile.TemporaryDirectory(dir=args.tmp) as name:
        tmp = Path(name)
        t0 = time.time()
        config = build_run(tmp, args.windows, args.seq_length, args.n_bins)
        backbone_dir = init_backbone(tmp / "bb", dim=args.dim, depth=args.depth, heads=args.heads,
                                     attn_dim_key=args.attn_dim_key, n_bins=args.n_bins)
        print(f"setup (data + random backbone): {time.time() - t0:.1f} s", flush=True)
        run = Run(config.run_dir)
        windows = run.windows("train").head(args.ref_windows)

        # the reference way
        backbone = load_backbone(backbone_dir, config.geometry, device=str(device))
        genome = Genome(config.dataset.genome)
        (tmp / "pt").mkdir()
        with torch.no_grad():
            w = windows.iloc[0]
            seq, left, right = genome.fetch_padded(w.chrom, w.input_start, w.input_end)
            backbone.model(torch.from_numpy(one_hot_padded(seq, left, right))[None].to(device),
                           return_only_embeddings=True)  # warm-up
            sync()
            start = time.time()
            for i, w in enumerate(windows.itertuples()):
                seq, left, right = genome.fetch_padded(w.chrom, w.input_start, w.input_end)
                x = torch.from_numpy(one_hot_padded(seq, left, right))[None].to(device)
                emb = backbone.model(x, return_only_embeddings=True)
                torch.save(emb[0].float().cpu(), tmp / "pt" / f"{i}.pt")
            sync()
            ref_seconds = time.time() - start
        del backbone
        if device.type == "cuda":
            torch.cuda.empty_cache()

        # ours: warm-up run (compiles) on a copy with few windows, then the timed run
        config.embed.backbone = str(backbone_dir)
        config.embed.batch_size = args.batch_size
        config.embed.precision = args.precision
        config.embed.compile = args.compile
        config.embed.loader_workers = args.loader_workers
        config.embed.device = str(device)
        config.embed.splits = run.splits
        if args.compile:
            import shutil

            warm = tmp / "warm"
            shutil.copytree(config.run_dir, warm)
            warm_config = config.model_copy(deep=True)
            warm_config.run_dir = warm
            start = time.time()
            embed_run(warm_config, progress=False)
            print(f"warm-up run with torch.compile: {time.time() - start:.1f} s", flush=True)
        start = time.time()
        embed_run(config, progress=True)
        sync()
        ours_seconds = time.time() - start
        n = sum(len(run.windows(s)) for s in run.splits)
        ours_emb = np.asarray(Run(config.run_dir).embeddings("train")[: len(windows)]).astype(np.float64)
        ref_emb = np.stack([torch.load(tmp / "pt" / f"{i}.pt").numpy() for i in range(len(windows))])
        pearson = np.corrcoef(ours_emb.ravel(), ref_emb.astype(np.float64).ravel())[0, 1]
        gb = sum(f.stat().st_size for f in (tmp / "run" / "embeddings").rglob("*") if f.is_file()) / 1e9
        pt_gb = sum(f.stat().st_size for f in (tmp / "pt").iterdir()) / 1e9

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    ref_rate, ours_rate = len(windows) / ref_seconds, n / ours_seconds
    print(f"device: {name}; torch {torch.__version__}; backbone dim {args.dim} depth {args.depth} heads {args.heads}")
    print(f"reference (fp32, batch 1, .pt per window): {len(windows)} windows {ref_seconds:.1f} s "
          f"{ref_rate:.2f} windows/s, {pt_gb / len(windows) * 1e3:.1f} MB per window")
    print(f"ours ({args.precision}, batch {args.batch_size}, compile {args.compile}, zarr float16): {n} windows "
          f"{ours_seconds:.1f} s {ours_rate:.2f} windows/s end to end, {gb / n * 1e3:.2f} MB per window")
    print(f"speed ratio (ours / reference): {ours_rate / ref_rate:.1f}x")
    print(f"Pearson ours vs reference embeddings: {pearson:.6f}")


if __name__ == "__main__":
    main()
