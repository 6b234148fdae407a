"""Synthetic inputs for the embedding benchmarks: a random genome, one flat BigWig, windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_embed_inputs(out: Path, n_windows: int, seq_length: int, n_bins: int, bin_size: int = 128,
                      seed: int = 0) -> tuple[Path, Path, Path]:
    """Genome + targets table + windows BED giving ``n_windows`` windows of the geometry."""
    import pybigtools

    from enformer_transfer.targets.table import build_targets_table, write_targets_table

    out.mkdir(parents=True, exist_ok=True)
    target = n_bins * bin_size
    stride = max(target // 4, 1024)
    chrom_length = seq_length + stride * (n_windows + 1)
    rng = np.random.default_rng(seed)
    seq = rng.choice(np.frombuffer(b"ACGT", dtype=np.uint8), size=chrom_length).tobytes().decode()
    with open(out / "genome.fa", "w") as handle:
        handle.write(">chrB\n")
        for i in range(0, len(seq), 80):
            handle.write(seq[i : i + 80] + "\n")
    writer = pybigtools.open(str(out / "flat.bw"), "w")
    writer.write({"chrB": chrom_length}, iter([("chrB", 0, chrom_length, 1.0)]))
    write_targets_table(build_targets_table([out / "flat.bw"]), out / "targets.tsv")
    context = (seq_length - target) // 2
    with open(out / "windows.bed", "w") as handle:
        for i in range(n_windows):
            start = context + i * stride
            handle.write(f"chrB\t{start}\t{start + target}\t{'train' if i % 10 < 8 else 'test'}\n")
    return out / "genome.fa", out / "targets.tsv", out / "windows.bed"


def build_run(tmp: Path, n_windows: int, seq_length: int, n_bins: int):
    from enformer_transfer import Geometry, RunConfig, build_dataset

    genome, targets, windows = make_embed_inputs(tmp / "data", n_windows, seq_length, n_bins)
    config = RunConfig(run_dir=tmp / "run", geometry=Geometry(seq_length=seq_length, n_bins=n_bins))
    config.dataset.genome, config.dataset.targets, config.dataset.windows = genome, targets, windows
    build_dataset(config, progress=False)
    return config
