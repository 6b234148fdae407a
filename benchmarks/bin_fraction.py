"""What storing a fraction of the train bins costs: test Pearson with all bins vs 1/8, at
several data sizes.

Synthetic data (planted motifs, 12 cell-type tracks) of each size (4 chromosomes of
``--chrom-lengths`` bp), the demo's tiny motif-seeded backbone, the default linear head (default
recipe) and the ridge head, each trained once on embeddings of every train bin and once on a
seeded 1/8 of them (``--train-bin-fraction``).

    python benchmarks/bin_fraction.py [--chrom-lengths 200000,800000,3200000] [--fraction 0.125]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chrom-lengths", default="200000,800000,3200000")
    parser.add_argument("--fraction", type=float, default=0.125)
    args = parser.parse_args()
    for length in map(int, args.chrom_lengths.split(",")):
        measure(length, args.fraction)


def measure(chrom_length: int, fraction_kept: float) -> None:

    from enformer_transfer import Run, RunConfig, build_dataset, embed_run, train_head
    from enformer_transfer.backbone.load import init_backbone
    from enformer_transfer.synthetic import DEMO_GEOMETRY, MOTIFS, make_synthetic

    results = {}
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        data = make_synthetic(root / "data", seed=0, chrom_length=chrom_length)
        backbone = init_backbone(root / "bb", dim=48, depth=1, heads=2, attn_dim_key=16, n_bins=64,
                                 human_tracks=8, stem_motifs=list(MOTIFS.values()))
        for fraction in (1.0, fraction_kept):
            config = RunConfig(run_dir=root / f"run{fraction}", geometry=DEMO_GEOMETRY)
            ds = config.dataset
            ds.genome, ds.targets, ds.windows = data.genome, data.targets, data.windows
            build_dataset(config, progress=False)
            config.embed.backbone = str(backbone)
            config.embed.train_bin_fraction = fraction
            config.embed.loader_workers = 0
            embed_run(config, progress=False)
            config.train.loader_workers = 0
            for model in ("linear", "ridge"):
                config.train.head = config.train.model = model
                train_head(config, progress=False)
                meta = Run(config.run_dir).head(model).metadata
                results[fraction, model] = meta["metrics"]["pearson_mean"]["test"]
        n_train = len(Run(root / "run1.0").windows("train"))
    print(f"synthetic data: {chrom_length:,} bp x 4 chromosomes, {n_train} train windows x 64 bins", flush=True)
    for model in ("linear", "ridge"):
        full, sub = results[1.0, model], results[fraction_kept, model]
        print(f"{model:6s} head: test mean Pearson all bins {full:.3f} | {fraction_kept:g} of bins {sub:.3f} | "
              f"difference {full - sub:+.3f}", flush=True)


if __name__ == "__main__":
    main()
