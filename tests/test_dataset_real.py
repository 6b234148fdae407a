"""On the real BigWigs of basenji-tiny-hg38: the builder equals the reference loop bit for bit."""

import numpy as np
import pandas as pd
import pytest

from enformer_transfer import Geometry, Run, RunConfig, build_dataset
from enformer_transfer.data._reference import reference_build
from enformer_transfer.data.build import blacklist_slices
from enformer_transfer.data.targets_table import build_targets_table, write_targets_table
from enformer_transfer.genome.intervals import IntervalSet

# ten DNase tracks (24-33) and a few CAGE / RNA tracks, with every sum_stat between them
TRACKS = {24: "mean", 25: "mean", 26: "sum", 27: "max", 28: "peak", 29: "mean_sqrt",
          30: "mean", 31: "mean", 32: "sum_sqrt", 33: "mean", 0: "sum_sqrt", 40: "sum"}


def _setup(tmp_path, tiny, n_windows=12, rows="target"):
    bigwigs = sorted((tiny / "bigwig_contig").glob("*.bw"))
    chosen = [bigwigs[i] for i in TRACKS]
    table = build_targets_table(chosen)
    table["sum_stat"] = list(TRACKS.values())
    table.loc[table["sum_stat"].isin(["sum", "sum_sqrt"]), "clip_soft"] = 64.0
    table.loc[table["sum_stat"].isin(["sum", "sum_sqrt"]), "clip"] = 384.0
    table.loc[table["sum_stat"] == "sum", "scale"] = 0.5
    write_targets_table(table, tmp_path / "targets.tsv")
    bed = pd.read_csv(tiny / "windows.bed", sep="\t", header=None, names=["chrom", "start", "end", "name", "split"])
    bed = pd.concat([bed[bed.split == s].head(n_windows // 3) for s in ("train", "valid", "test")])
    contigs = bed["name"]
    if rows == "target":  # the 65,536-bp covered target intervals of each contig
        win = pd.DataFrame({"c": contigs, "s": 32768, "e": 98304, "split": bed["split"]})
    else:  # the whole 131,072-bp contig, as Enformer's sequences.bed rows
        win = pd.DataFrame({"c": contigs, "s": 0, "e": 131072, "split": bed["split"]})
    win.to_csv(tmp_path / "windows.bed", sep="\t", header=False, index=False)
    # blacklist in contig coordinates: one region starts left of the target rows (the quirk)
    bl = []
    for i, c in enumerate(contigs):
        bl.append((c, 32700, 32900))
        bl.append((c, 40000 + 1000 * i, 40500 + 1000 * i))
        bl.append((c, 98000, 98400))
    pd.DataFrame(bl).to_csv(tmp_path / "blacklist.bed", sep="\t", header=False, index=False)
    return table


def _reference(run, config, table):
    ds, g = config.dataset, config.geometry
    blacklist = IntervalSet.from_bed(ds.blacklist)
    windows = pd.concat([run.windows(s) for s in run.splits])
    ref = reference_build(
        windows, table.assign(file=run.tracks["file"]), g.n_bins, g.bin_size,
        blacklist_slices_of=lambda r: blacklist_slices(blacklist, r.chrom, r.row_start, r.row_end,
                                                       ds.blacklist_pad, ds.blacklist_quirk),
        order=ds.transform_order, extreme_clip_percentile=ds.extreme_clip_percentile,
    )
    ours = np.concatenate([np.asarray(run.targets(s)) for s in run.splits])
    return ours, ref


@pytest.mark.parametrize("order,quirk", [("old", False), ("new", False), ("old", True), ("new", True)])
def test_builder_equals_reference_loop(tmp_path, tiny_hg38, order, quirk):
    table = _setup(tmp_path, tiny_hg38)
    config = RunConfig(run_dir=tmp_path / "run", geometry=Geometry(seq_length=131072, n_bins=512))
    ds = config.dataset
    ds.genome, ds.targets, ds.windows = tiny_hg38 / "windows.fa", tmp_path / "targets.tsv", tmp_path / "windows.bed"
    ds.blacklist, ds.transform_order, ds.blacklist_quirk = tmp_path / "blacklist.bed", order, quirk
    ds.extreme_clip_percentile = 99.9  # low enough to clip something in a small test set
    ds.chunk_windows, ds.workers = 4, 2
    run = Run(build_dataset(config, progress=False).parent)
    ours, ref = _reference(run, config, table)
    assert ours.shape == (12, 512, len(TRACKS)) and ours.dtype == np.float16
    np.testing.assert_array_equal(ours.view(np.uint16), ref.view(np.uint16))
    assert ours.max() > 0 and np.isfinite(ours).all()
    stats = run.track_stats
    assert stats["values_clipped"].sum() > 0  # step 7 did something, and identically


def test_enformer_rows_with_padding_equal_reference(tmp_path, tiny_hg38, caplog):
    """131,072-bp rows (Enformer's sequences.bed), 896 bins, 196,608-bp input past the contig ends."""
    table = _setup(tmp_path, tiny_hg38, n_windows=6, rows="contig")
    config = RunConfig(run_dir=tmp_path / "run")
    ds = config.dataset
    ds.genome, ds.targets, ds.windows = tiny_hg38 / "windows.fa", tmp_path / "targets.tsv", tmp_path / "windows.bed"
    ds.blacklist, ds.workers = tmp_path / "blacklist.bed", 1
    run = Run(build_dataset(config, progress=False).parent)
    assert "extends beyond the chromosome" in caplog.text  # padded, with a warning
    w = run.windows("train")
    assert (w["end"] - w["start"] == 114688).all() and (w["start"] - w["row_start"] == 8192).all()
    ours, ref = _reference(run, config, table)
    np.testing.assert_array_equal(ours.view(np.uint16), ref.view(np.uint16))
    # bins outside the covered 32,768-98,304 part are uncovered -> baseline 0 -> target 0
    assert (ours[:, : (32768 - 8192) // 128 - 1] == 0).all()
    assert ours[:, (32768 - 8192) // 128 :].max() > 0
    # said once, with the fraction and the option, and recorded (65,536 of 114,688 bp covered)
    fraction = 1 - 65536 / 114688
    warnings = [r.getMessage() for r in caplog.records if "without coverage" in r.getMessage()]
    assert len(warnings) == 1 and f"{100 * fraction:.1f}%" in warnings[0] and "--uncovered mask" in warnings[0]
    assert run.dataset_record.stats["uncovered_bin_fraction"] == pytest.approx(fraction, abs=0.002)
    assert run.track_stats["uncovered_bin_fraction"].to_numpy() == pytest.approx(fraction, abs=0.002)
