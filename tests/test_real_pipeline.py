"""The whole pipeline at Enformer's real geometry on real hg38 DNA and real DNase BigWigs.

196,608-bp inputs, 131,072-bp rows (Enformer's sequences.bed convention), 896 bins: 1,536 trunk
positions cropped to 896, as the full model. The backbone is tiny and random, so only the
plumbing and the numbers' sanity are checked, not accuracy.
"""

import numpy as np
import pandas as pd
import pytest

from enformer_transfer import (
    Run,
    RunConfig,
    build_dataset,
    embed_run,
    evaluate_head,
    train_head,
    write_report,
)
from enformer_transfer.backbone.load import init_backbone
from enformer_transfer.data.targets_table import build_targets_table, write_targets_table


@pytest.mark.slow
def test_real_hg38_end_to_end(tiny_hg38, tmp_path):
    dnase = sorted((tiny_hg38 / "bigwig_contig").glob("*.bw"))[24:34]  # ten DNase-seq tracks
    table = build_targets_table(dnase)  # the study's transform: clip 32, scale 2, mean
    table["tissue"] = ["cell line", "cell line", "cell line", "primary", "cell line", "tissue", "tissue", "tissue",
                       "cell line", "tissue"]
    write_targets_table(table, tmp_path / "targets.tsv")
    bed = pd.read_csv(tiny_hg38 / "windows.bed", sep="\t", header=None, names=["chrom", "start", "end", "name", "split"])
    bed = pd.concat([bed[bed.split == "train"].head(12), bed[bed.split != "train"]])
    pd.DataFrame({"c": bed["name"], "s": 0, "e": 131072, "split": bed["split"]}).to_csv(
        tmp_path / "windows.bed", sep="\t", header=False, index=False)

    config = RunConfig(run_dir=tmp_path / "run")
    ds = config.dataset
    ds.genome, ds.targets, ds.windows = tiny_hg38 / "windows.fa", tmp_path / "targets.tsv", tmp_path / "windows.bed"
    ds.uncovered = "mask"  # only the central 65,536 bp of each contig have coverage
    build_dataset(config, progress=False)
    config.embed.backbone = str(init_backbone(tmp_path / "bb", dim=48, depth=1, heads=2, attn_dim_key=16,
                                              human_tracks=16))
    config.embed.loader_workers = 1
    config.embed.batch_size = 2
    embed_run(config, progress=False)
    config.train.max_epochs, config.train.lr, config.train.batch_size, config.train.loader_workers = 3, 1e-3, 4, 0
    train_head(config, progress=False)
    evaluate_head(config, progress=False)
    report = write_report(config, progress=False)

    run = Run(config.run_dir)
    assert run.targets("test").shape == (10, 896, 10)
    assert run.embeddings("test").shape == (10, 896, 96)
    masks = np.asarray(run.masks("test"))
    assert masks[:, :100].all() and not masks[:, 300:500].any()  # bins outside the covered part are masked
    per_track = pd.read_csv(config.run_dir / "evaluation" / "default" / "per_track.csv")
    assert len(per_track) == 20 and per_track["pearson"].notna().all()
    assert set(pd.read_csv(config.run_dir / "evaluation" / "default" / "per_level.csv")["grouping"]) == {"tissue"}
    assert report.stat().st_size > 100_000
