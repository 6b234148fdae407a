"""DAR analysis: regions x cell types, bin rules, per-region Pearson and top-cell-type agreement."""

import json

import numpy as np
import pandas as pd
import pytest

from enformer_transfer import Run
from enformer_transfer.cli import main
from enformer_transfer.evaluation.dar import region_bins


def test_region_bins_contained_and_study_quirk():
    assert list(region_bins(130, 1000, 128, "contained")) == [2, 3, 4, 5, 6]  # fully inside [130, 1000)
    assert list(region_bins(130, 1000, 128, "study")) == [3, 4, 5, 6, 7]  # the study: shifted one bin
    assert list(region_bins(256, 512, 128, "contained")) == [2, 3]


def _dar_table(run, path):
    """Regions of 3 bins where one subclass track is the most open, labelled with it."""
    tracks = run.tracks
    sub = tracks.index[tracks["level"] == "Subclass"].to_numpy()
    rows = []
    test = run.windows("test")
    targets = np.asarray(run.targets("test"))
    for w in range(0, len(test), 3):
        y = targets[w][:, sub].astype(float)
        b = int(np.argmax(y.max(1)))
        b = min(max(b, 1), 62)
        start = int(test["start"][w]) + (b - 1) * 128
        rows.append({"region": f"{test['chrom'][w]}:{start}-{start + 3 * 128}",
                     "subclass": tracks["subclass"][sub[int(np.argmax(y[b]))]]})
    rows.append({"region": "chr1:20000-20384", "subclass": "Pvalb"})  # a train window: not evaluated
    rows.append({"region": f"{test['chrom'][0]}:{int(test['start'][0])}-{int(test['start'][0]) + 200}",
                 "subclass": "Sst"})  # shorter than 256 bp
    rows.append({"region": f"{test['chrom'][1]}:{int(test['start'][1])}-{int(test['start'][1]) + 512}",
                 "subclass": "Microglia"})  # no such track
    pd.DataFrame(rows).to_csv(path, index=False)
    return rows


def test_dar_analysis_on_demo(demo_run, tmp_path, capsys):
    import shutil

    demo_run = shutil.copytree(demo_run, tmp_path / "run", ignore=shutil.ignore_patterns("dar"))
    run = Run(demo_run)
    rows = _dar_table(run, tmp_path / "dar.csv")
    args = ["dar", str(demo_run), "--head", "default", "--regions", str(tmp_path / "dar.csv"),
            "--label-column", "subclass"]
    assert main(args) == 2  # clusters share subclass labels with subclasses
    assert "--tracks-where" in capsys.readouterr().err
    assert main(args + ["--tracks-where", "level == 'Subclass'"]) == 0
    out = demo_run / "dar" / "default"
    table = pd.read_csv(out / "regions.csv")
    assert len(table) == len(rows) - 3 and set(table["split"]) == {"test"}
    assert (table["bins"] == 3).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels_without_track"] == ["Microglia"] and len(summary["cell_types"]) == 6
    confusion = pd.read_csv(out / "confusion.csv", index_col=0)
    assert confusion.to_numpy().sum() == len(table)
    assert summary["top_agreement_observed_predicted"] == pytest.approx(np.trace(confusion.to_numpy()) / len(table))
    # one region by hand: contained bins, means over bins, Pearson across the six cell types
    first = table.iloc[0]
    sub = run.tracks.index[run.tracks["level"] == "Subclass"].to_numpy()
    rel = first["start"] - run.windows("test")["start"][first["window"]]
    bins = np.arange(rel // 128, rel // 128 + 3)
    obs = np.asarray(run.targets("test")[first["window"]])[bins][:, sub].astype(float).mean(0)
    pred = np.asarray(run.predictions("default", "test")[first["window"]])[bins][:, sub].astype(float).mean(0)
    assert first["pearson_across_cell_types"] == pytest.approx(np.corrcoef(obs, pred)[0, 1])
    assert first["observed_top"] == run.tracks["subclass"][sub[np.argmax(obs)]] == first["label"]
    for name in ("dar_pearson_histogram", "dar_confusion", "dar_heatmaps"):
        assert (out / "figures" / f"{name}.png").is_file()
    assert main(args + ["--tracks-where", "level == 'Subclass'", "--bin-rule", "study"]) == 2  # other settings
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--tracks-where", "level == 'Subclass'", "--bin-rule", "study", "--force"]) == 0
    shifted = pd.read_csv(out / "regions.csv")
    assert (shifted["bins"] == 3).all() and len(shifted) <= len(table)


def test_demo_runs_a_dar_analysis_of_its_planted_motifs(demo_run):
    summary = json.loads((demo_run / "dar" / "default" / "summary.json").read_text())
    assert summary["regions"] > 50 and len(summary["cell_types"]) == 6
    assert summary["top_agreement_observed_predicted"] > 2 * summary["chance_agreement"]
    assert "DAR analysis" in (demo_run / "report" / "report.html").read_text()
