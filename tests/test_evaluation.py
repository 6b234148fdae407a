"""Evaluation: metrics equal enformer-pytorch's, per-level tables, baselines, predictions,
BigWig output, weights and the HTML report in headless Chromium."""

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pybigtools
import pytest
import torch
from _provenance import reseal, reseal_run

from enformer_transfer import Run
from enformer_transfer.cli import main
from enformer_transfer.evaluation.evaluate import grouping_columns
from enformer_transfer.metrics import AcrossTracksPerBin, PearsonPerTrack, SplitMetrics


def _enformer_pytorch_pearson(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    from enformer_pytorch.metrics import MeanPearsonCorrCoefPerChannel

    metric = MeanPearsonCorrCoefPerChannel(pred.shape[-1])
    metric.set_dtype(torch.float64)
    metric.update(torch.from_numpy(pred.astype(np.float64)), torch.from_numpy(target.astype(np.float64)))
    return metric.compute().numpy()


def test_pearson_equals_enformer_pytorch_on_random_arrays():
    rng = np.random.default_rng(0)
    pred = rng.gamma(1.0, 2.0, size=(12, 64, 5))
    target = pred * rng.uniform(0.5, 1.5, size=pred.shape) + rng.normal(0, 1, size=pred.shape)
    ours = PearsonPerTrack(5)
    for i in range(0, 12, 5):  # streamed in pieces
        ours.update(pred[i : i + 5], target[i : i + 5])
    np.testing.assert_allclose(ours.pearson(), _enformer_pytorch_pearson(pred, target), atol=1e-6)


def test_pearson_equals_enformer_pytorch_on_stored_predictions(demo_run):
    run = Run(demo_run)
    pred = np.asarray(run.predictions("default", "test")).astype(np.float64)
    target = np.asarray(run.targets("test")).astype(np.float64)
    per_track = pd.read_csv(demo_run / "evaluation" / "default" / "per_track.csv")
    ours = per_track[per_track["split"] == "test"]["pearson"].to_numpy()
    np.testing.assert_allclose(ours, _enformer_pytorch_pearson(pred, target), atol=1e-6)


def test_zero_variance_track_is_reported_not_averaged():
    rng = np.random.default_rng(1)
    pred = rng.random((4, 16, 3))
    obs = rng.random((4, 16, 3))
    obs[..., 1] = 2.0  # a track without variance
    metrics = SplitMetrics(3, 16, 4)
    metrics.update(pred, obs)
    r = metrics.per_track()["pearson"]
    assert np.isnan(r[1]) and np.isfinite(r[[0, 2]]).all()


def test_per_window_position_and_across_tracks_match_direct_numpy():
    rng = np.random.default_rng(2)
    pred = rng.random((6, 8, 4))
    obs = pred + rng.normal(0, 0.3, size=pred.shape)
    metrics = SplitMetrics(4, 8, 6)
    metrics.update(pred[:3], obs[:3])
    metrics.update(pred[3:], obs[3:])
    per_window = [[np.corrcoef(pred[w, :, t], obs[w, :, t])[0, 1] for t in range(4)] for w in range(6)]
    np.testing.assert_allclose(metrics.per_track()["pearson_window_median"], np.median(per_window, axis=0))
    by_position = [[np.corrcoef(pred[:, b, t], obs[:, b, t])[0, 1] for t in range(4)] for b in range(8)]
    np.testing.assert_allclose(metrics.per_position(), by_position)
    pm, om = pred.reshape(-1, 4).mean(0), obs.reshape(-1, 4).mean(0)
    across = AcrossTracksPerBin(om, pm)
    across.update(pred, obs)
    direct = [np.corrcoef(p - pm, o - om)[0, 1] for p, o in zip(pred.reshape(-1, 4), obs.reshape(-1, 4), strict=True)]
    assert across.summary()["mean"] == pytest.approx(np.mean(direct))
    obs_corr, pred_corr = metrics.correlation_matrices()
    np.testing.assert_allclose(obs_corr, np.corrcoef(obs.reshape(-1, 4).T), atol=1e-10)


def test_tables_and_baselines(demo_run):
    folder = demo_run / "evaluation" / "default"
    per_track = pd.read_csv(folder / "per_track.csv")
    assert {"split", "index", "identifier", "pearson", "level", "class", "subclass", "cluster"} <= set(per_track.columns)
    assert {"pearson_log1p", "spearman", "r2", "pearson_window_median", "ridge_pearson", "zero_shot_pearson",
            "zero_shot_track"} <= set(per_track.columns)
    assert sorted(per_track["split"].unique()) == ["test", "valid"] and len(per_track) == 24
    per_level = pd.read_csv(folder / "per_level.csv")
    tracks = Run(demo_run).tracks
    assert grouping_columns(tracks) == ["level", "class", "subclass", "cluster"]
    direct = per_track[per_track["level"].notna()].groupby(["split", "level"])["pearson"].mean()
    for row in per_level[per_level["grouping"] == "level"].itertuples():
        assert row.pearson_mean == pytest.approx(direct[(row.split, row.group)])
    direct = per_track.dropna(subset=["subclass"]).groupby(["split", "subclass"])["ridge_pearson"].mean()
    for row in per_level[per_level["grouping"] == "subclass"].itertuples():
        assert row.ridge_pearson_mean == pytest.approx(direct[(row.split, row.group)])
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["splits"]["test"]["pearson_mean"] == pytest.approx(
        per_track[per_track["split"] == "test"]["pearson"].mean())
    assert set(summary["baselines"]) == {"ridge", "zero_shot", "compare_run"}  # the demo compares with run-random
    positions = pd.read_csv(folder / "bin_position.csv")
    assert len(positions) == 2 * 64
    for name in ("pearson_boxplot", "correlations_test", "tracks_example", "scatter_best", "pearson_vs_nuclei",
                 "pearson_by_position", "training_curves"):
        assert (folder / "figures" / f"{name}.png").stat().st_size > 1000
        assert (folder / "figures" / f"{name}.svg").is_file()


def test_stored_predictions_equal_the_head_on_the_embeddings(demo_run):
    run = Run(demo_run)
    stored = np.asarray(run.predictions("default", "valid"))
    assert stored.shape == (23, 64, 12) and stored.dtype == np.float32  # no float16 rounding of predictions
    direct = run.head("default").predict(run.embeddings("valid"))
    np.testing.assert_allclose(stored, direct, rtol=1e-6, atol=1e-7)


def test_predicted_bigwig_reads_back_to_stored_predictions(demo_run, tmp_path):
    run = Run(demo_run)
    test = run.windows("test")
    first, last = test.iloc[2], test.iloc[5]  # four consecutive test windows
    bed = tmp_path / "regions.bed"
    bed.write_text(f"{first.chrom}\t{first.start}\t{last.end}\n")
    assert main(["predict", str(demo_run), "--head", "default", "--regions", str(bed), "--out",
                 str(tmp_path / "bw"), "--stride", str(64 * 128)]) == 0
    stored = np.asarray(run.predictions("default", "test")[2:6]).astype(np.float32)
    for t, ident in enumerate(run.tracks["identifier"]):
        reader = pybigtools.open(str(tmp_path / "bw" / f"{ident}.bw"))
        values = reader.values(first.chrom, int(first.start), int(last.end), fillna=np.nan)
        bins = values.reshape(-1, 128)
        assert (bins == bins[:, :1]).all()  # one value per 128-bp bin
        # the embeddings were stored as float16; here they are recomputed in float32
        np.testing.assert_allclose(bins[:, 0], stored[..., t].ravel(), rtol=0.02, atol=0.02)
    # default stride: overlapping windows, each bin from the window where it is most central
    assert main(["predict", str(demo_run), "--head", "default", "--regions", str(bed), "--out",
                 str(tmp_path / "bw2")]) == 0
    reader = pybigtools.open(str(tmp_path / "bw2" / f"{run.tracks['identifier'][0]}.bw"))
    assert np.isfinite(reader.values(first.chrom, int(first.start), int(last.end), fillna=np.nan)).all()


def test_predict_fasta_table(demo_run, tmp_path):
    from enformer_transfer.genome import Genome

    data = demo_run.parent / "data"
    seq = Genome(data / "genome.fa").fetch("chr2", 50_000, 50_000 + 16384)
    fasta = tmp_path / "seqs.fa"
    fasta.write_text(f">a\n{seq}\n>b\n{seq[::-1]}\n")
    assert main(["predict", str(demo_run), "--head", "default", "--fasta", str(fasta), "--out", str(tmp_path / "p")]) == 0
    table = pd.read_csv(tmp_path / "p" / "predictions.tsv", sep="\t")
    assert len(table) == 2 * 64 and list(table.columns[:4]) == ["sequence", "bin", "start", "end"]
    assert table["start"].iloc[0] == 4096 and (table.iloc[:, 4:] >= 0).all().all()
    bad = tmp_path / "bad.fa"
    bad.write_text(">short\nACGT\n")
    assert main(["predict", str(demo_run), "--head", "default", "--fasta", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_weights_find_the_backbone_track_a_head_copies(demo_run, tmp_path):
    from enformer_pytorch import Enformer

    from enformer_transfer.heads.checkpoint import load_head, save_head

    run_dir = tmp_path / "run"
    shutil.copytree(demo_run, run_dir)
    backbone = Enformer.from_pretrained(str(demo_run.parent / "backbone"))
    human = backbone.heads["human"][0].weight.detach()
    head = load_head(run_dir / "heads" / "default")
    with torch.no_grad():
        head.module.linear.weight.copy_(human[[3, 7] * 6])  # tracks copy backbone rows 3 and 7
    save_head(run_dir / "heads" / "default", head.module, head.metadata)
    reseal(run_dir / "heads" / "default")  # as if trained so: a hand edit is otherwise refused (test_provenance)
    assert main(["weights", str(run_dir), "--head", "default"]) == 0
    top = pd.read_csv(run_dir / "weights" / "default" / "top_matches.csv")
    first = top[top["rank"] == 1].reset_index(drop=True)
    assert list(first["backbone_index"][:4]) == [3, 7, 3, 7]
    assert np.allclose(first["cosine"], 1.0)
    assert (run_dir / "weights" / "default" / "figures" / "similarity_by_assay.png").is_file()


def test_weights_by_assay_with_enformer_track_names(tiny_hg38, demo_run, tmp_path):
    from enformer_transfer.backbone.load import init_backbone

    names = tiny_hg38.parent / "enformer" / "targets_human.txt"
    run_dir = tmp_path / "run"
    shutil.copytree(demo_run, run_dir)
    stage = json.loads((run_dir / "embeddings" / "stage.json").read_text())
    full_head = init_backbone(tmp_path / "bb5313", dim=48, depth=1, heads=2, attn_dim_key=16, n_bins=64,
                              human_tracks=5313, calibrate_batches=0)
    stage["config"]["embed"]["backbone"] = str(full_head)
    (run_dir / "embeddings" / "stage.json").write_text(json.dumps(stage))
    reseal_run(run_dir)  # as if embedded with that backbone
    assert main(["weights", str(run_dir), "--head", "default", "--enformer-targets", str(names)]) == 0
    by_assay = pd.read_csv(run_dir / "weights" / "default" / "similarity_by_assay.csv", index_col=0)
    assert set(by_assay.columns) == {"DNASE", "CHIP", "CAGE", "ATAC"}
    top = pd.read_csv(run_dir / "weights" / "default" / "top_matches.csv")
    assert len(top) == 12 * 5 and top["description"].str.contains(":").all()


def test_report_renders_in_headless_chromium(demo_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (.ci/run installs Debian's chromium)")
    report = demo_run / "report" / "report.html"
    text = report.read_text()
    assert "Per track" in text and "data:image/png;base64" in text and 'href="#default-track-00_Glutamatergic"' in text
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120)
    dom = result.stdout
    assert 'data-ready="1"' in dom, result.stderr[-2000:]  # the page's script ran to its end
    assert '<pre id="js-errors"></pre>' in dom  # and no error was caught on the way
    assert dom.count('class="sortable"') >= 4


@pytest.mark.slow
def test_compare_run_and_whole_chromosome_prediction(demo_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(demo_run, other)
    window = Run(demo_run).windows("test").iloc[4]
    region = f"{window.chrom}:{window.start + 100}-{window.start + 200}"
    assert main(["evaluate", str(other), "--head", "default", "--compare-run", str(demo_run), "--force", "--quiet",
                 "--plot-regions", region]) == 0
    plotted = sorted(p.name for p in (other / "evaluation" / "default" / "figures" / "regions").glob("*.png"))
    assert plotted == [f"region_test_{window.chrom}_{window.start}.png"]
    table = pd.read_csv(other / "evaluation" / "default" / "per_track.csv")
    np.testing.assert_allclose(table["compare_run_pearson"], table["pearson"])
    assert main(["predict", str(demo_run), "--head", "ridge", "--chroms", "chr3", "--out", str(tmp_path / "bw")]) == 0
    reader = pybigtools.open(str(tmp_path / "bw" / "00_Glutamatergic.bw"))
    assert reader.chroms() == {"chr3": 200_000}
    values = reader.values("chr3", 0, 200_000, fillna=np.nan)
    assert np.isfinite(values).mean() > 0.95  # the whole chromosome but its last partial bin

