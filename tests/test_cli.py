"""The CLI end to end: targets table, windows, demo."""

import pandas as pd
import pytest

from enformer_transfer import Run, read_targets_table
from enformer_transfer.cli import main


def test_targets_table_from_folder_and_metadata(synthetic, tmp_path, capsys):
    out = tmp_path / "targets.tsv"
    rc = main(["targets", "--bigwig-dir", str(synthetic.bigwigs[0].parent), "--metadata", str(synthetic.metadata),
               "--out", str(out)])
    assert rc == 0
    df = read_targets_table(out)
    assert len(df) == 12 and list(df["index"]) == list(range(12))
    assert (df["clip"] == 32).all() and (df["scale"] == 2).all() and (df["sum_stat"] == "mean").all()
    assert set(df["level"]) == {"Class", "Subclass", "cluster"}
    assert main(["targets", "--validate", str(out)]) == 0
    assert "12 tracks, valid" in capsys.readouterr().out


def test_targets_table_metadata_must_cover_every_bigwig(synthetic, tmp_path, capsys):
    meta = pd.read_csv(synthetic.metadata).iloc[1:]
    meta.to_csv(tmp_path / "meta.csv", index=False)
    rc = main(["targets", "--bigwigs", *map(str, synthetic.bigwigs), "--metadata", str(tmp_path / "meta.csv"),
               "--out", str(tmp_path / "t.tsv")])
    assert rc == 2
    assert "no row for '00_Glutamatergic'" in capsys.readouterr().err
    assert not (tmp_path / "t.tsv").exists()


def test_missing_bigwig_folder_is_one_line(tmp_path, capsys):
    assert main(["targets", "--bigwig-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "t.tsv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing: --bigwig-dir folder not found" in err
    assert not (tmp_path / "t.tsv").exists()


def test_windows_command(synthetic, tmp_path, capsys):
    out = tmp_path / "w.bed"
    assert main(["windows", "--genome", str(synthetic.genome), "--out", str(out), "--seq-length", "16384",
                 "--n-bins", "64", "--valid-chroms", "chr2", "--test-chroms", "chr3"]) == 0
    bed = pd.read_csv(out, sep="\t", header=None)
    assert set(bed[3]) == {"train", "valid", "test"}


def test_demo(demo):
    """The demo shows transfer: the same head on the pretrained backbone beats it on a random
    backbone of the same size clearly, on held-out chromosomes; a fine-tuned model beside them."""
    run_dir, printed = demo
    assert f"demo: run directory {run_dir}" in printed and f"demo: report {run_dir / 'report' / 'report.html'}" in printed
    assert "synthetic genome" in printed and "docs/guide.md" in printed
    run = Run(run_dir)
    assert run.targets("train").shape == (46, 64, 12)
    assert run.heads() == ["default", "finetuned", "ridge"] and run.evaluations() == ["default", "finetuned", "ridge"]
    test = run.evaluation("default").summary["splits"]["test"]
    assert test["pearson_mean"] > test["compare_run_pearson_mean"] + 0.3  # transfer from pretraining
    margin = float(printed.split("beats the random backbone's by ")[1].split()[0])
    assert margin == pytest.approx(test["pearson_mean"] - test["compare_run_pearson_mean"], abs=1e-3)
    assert run.head("finetuned").finetuned
