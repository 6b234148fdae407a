"""CPU embedding benchmark: the pipeline's overhead beyond the model's own forward time.

Times (a) the trunk's forward passes alone on prepared one-hot batches, and (b) the whole
``embed`` stage on the same windows (one-hot from the genome in loader workers, forward,
float16 range check, zarr writes, progress logs), same batch size and threads, in one run.

    python benchmarks/embed_cpu.py [--windows 48] [--dim 384 --depth 1 --heads 4]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=48)
    parser.add_argument("--seq-length", type=int, default=16384)
    parser.add_argument("--n-bins", type=int, default=64)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--loader-workers", type=int, default=1)
    args = parser.parse_args()

    import numpy as np
    import torch
    from _embed_data import build_run

    from enformer_transfer import Run, embed_run
    from enformer_transfer.backbone.load import init_backbone, load_backbone
    from enformer_transfer.genome.onehot import one_hot_padded
    from enformer_transfer.genome.sequence import Genome

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        config = build_run(tmp, args.windows, args.seq_length, args.n_bins)
        backbone_dir = init_backbone(tmp / "bb", dim=args.dim, depth=args.depth, heads=args.heads,
                                     n_bins=args.n_bins, human_tracks=8)
        run = Run(config.run_dir)
        windows = [run.windows(s) for s in run.splits]

        # (a) the model alone: forward passes over prepared batches
        backbone = load_backbone(backbone_dir, config.geometry)
        genome = Genome(config.dataset.genome)
        xs = []
        for table in windows:
            for w in table.itertuples():
                seq, left, right = genome.fetch_padded(w.chrom, w.input_start, w.input_end)
                xs.append(torch.from_numpy(one_hot_padded(seq, left, right)))
        batches = [torch.stack(xs[i : i + args.batch_size]) for i in range(0, len(xs), args.batch_size)]
        with torch.inference_mode():
            backbone.model.trunk(batches[0])  # warm-up
            start = time.time()
            for x in batches:
                backbone.model.trunk(x)
            model_seconds = time.time() - start

        # (b) the whole stage
        config.embed.backbone = str(backbone_dir)
        config.embed.batch_size = args.batch_size
        config.embed.loader_workers = args.loader_workers
        config.embed.splits = run.splits
        start = time.time()
        embed_run(config, progress=False)
        stage_seconds = time.time() - start
        first = np.asarray(Run(config.run_dir).embeddings(run.splits[0])[0])
        assert np.isfinite(first).all()

    n = len(xs)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"backbone: random Enformer dim {args.dim}, depth {args.depth}, heads {args.heads}; "
          f"{n} windows of {args.seq_length} bp -> {args.n_bins} bins; batch {args.batch_size}, fp32")
    print(f"model forward only : {model_seconds:7.2f} s  {n / model_seconds:7.2f} windows/s")
    print(f"embed stage        : {stage_seconds:7.2f} s  {n / stage_seconds:7.2f} windows/s "
          f"(includes model load, one-hot, range check, zarr writes, provenance)")
    print(f"pipeline overhead beyond the forward time: {100 * (stage_seconds / model_seconds - 1):.1f}%")


if __name__ == "__main__":
    main()
