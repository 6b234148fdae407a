"""Head training: losses, ridge, recovery of a known head, self-describing checkpoints, resume."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from _kill import free_port, kill_when, run_watched, without_quiet, written_twice
from _provenance import reseal_run

from enformer_transfer import InputError, Run
from enformer_transfer.config import TrainConfig
from enformer_transfer.data.targets_table import select_tracks
from enformer_transfer.heads.checkpoint import load_head
from enformer_transfer.heads.data import WindowSource
from enformer_transfer.heads.losses import LOSSES
from enformer_transfer.heads.ridge import fit_ridge
from enformer_transfer.heads.train import fit_head, source_pearson

# --- losses ----------------------------------------------------------------------------

def test_study_loss_is_poisson_nll_with_log_input():
    pred = torch.rand(2, 5, 3) * 3
    target = torch.poisson(torch.rand(2, 5, 3) * 4)
    expected = torch.nn.PoissonNLLLoss()(pred, target)  # the study's call, log_input=True
    assert torch.allclose(LOSSES["poisson-log-input"](pred, target), expected)
    rate = torch.nn.PoissonNLLLoss(log_input=False, eps=1e-7)(pred, target)
    assert torch.allclose(LOSSES["poisson"](pred, target), rate, atol=1e-6)


def test_poisson_multinomial_at_total_weight_one_is_the_poisson_loss():
    """Why the default total weight is Borzoi's 0.2: at 1 the two losses are the same function."""
    from enformer_transfer.heads.losses import poisson, poisson_multinomial

    pred = torch.rand(3, 16, 4, dtype=torch.float64) * 5 + 0.1
    target = torch.poisson(torch.rand(3, 16, 4, dtype=torch.float64) * 5)
    assert torch.allclose(poisson_multinomial(pred, target, total_weight=1.0), poisson(pred, target), atol=1e-5)
    assert not torch.allclose(poisson_multinomial(pred, target), poisson(pred, target), atol=1e-3)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_ignore_masked_bins_and_prefer_the_truth(name):
    torch.manual_seed(0)
    target = torch.poisson(torch.rand(2, 6, 3) * 5) + 0.5
    mask = torch.zeros_like(target, dtype=torch.bool)
    mask[:, 0] = True
    changed = target.clone()
    changed[:, 0] = 100.0
    pred = target + 0.3
    loss = LOSSES[name]
    assert torch.allclose(loss(pred, target, mask), loss(pred, changed, mask))
    assert loss(target, target, mask) < loss(target * 1.5, target, mask)
    assert torch.isfinite(loss(pred, target))


# --- ridge and recovery of a known head ------------------------------------------------

def _synthetic_source(tmp_path, name, n_windows, rng, weight, bias, bins=32):
    dim, n_tracks = weight.shape[1], weight.shape[0]
    x = rng.standard_normal((n_windows, bins, dim)).astype(np.float16)
    rates = np.logaddexp(0, x.astype(np.float64) @ weight.T + bias)  # softplus
    y = rng.poisson(rates).astype(np.float16)
    group = zarr.open_group(str(tmp_path / f"{name}.zarr"), mode="w")
    group.create_array("x", data=x, chunks=(1, bins, dim))
    group.create_array("y", data=y, chunks=(4, bins, n_tracks))
    return WindowSource(group["x"], group["y"], np.arange(n_tracks)), rates, y


@pytest.mark.slow
def test_training_recovers_a_known_linear_softplus_head(tmp_path):
    rng = np.random.default_rng(0)
    dim, n_tracks = 16, 4
    weight = rng.standard_normal((n_tracks, dim)) * 0.4
    bias = np.array([0.5, 1.0, -0.5, 2.0])
    train, _, _ = _synthetic_source(tmp_path, "train", 160, rng, weight, bias)
    valid, _, _ = _synthetic_source(tmp_path, "valid", 40, rng, weight, bias)
    test, rates, y = _synthetic_source(tmp_path, "test", 40, rng, weight, bias)
    cfg = TrainConfig(lr=1e-2, batch_size=8, max_epochs=30, patience=3, loader_workers=0)
    module, info = fit_head(cfg, train, valid, tmp_path / "out", seed=0, progress=False)
    with torch.no_grad():
        pred = module(torch.from_numpy(np.asarray(test.embeddings[:]).astype(np.float32))).numpy()
    for t in range(n_tracks):
        ours = np.corrcoef(pred[..., t].ravel(), y[..., t].ravel().astype(float))[0, 1]
        truth = np.corrcoef(rates[..., t].ravel(), y[..., t].ravel().astype(float))[0, 1]
        # the true rates are the best any head can do against Poisson counts; 2 % below them is what
        # 160 train windows of 16 features leave (the fitted weights' error, ~1/sqrt(5,120 rows) each)
        assert ours >= 0.98 * truth, (t, ours, truth)
        assert np.corrcoef(pred[..., t].ravel(), rates[..., t].ravel())[0, 1] > 0.98
    assert info["steps"] >= 2 * 20 and info["kept"]["val_pearson"] > 0.5  # 160 windows / batch 8, 30 epochs
    assert (tmp_path / "out" / "logs" / "metrics.csv").is_file()
    assert any((tmp_path / "out" / "logs").glob("events.out.tfevents*"))  # TensorBoard too
    pearson = source_pearson(module, test)
    assert pearson.shape == (n_tracks,) and (pearson > 0.5).all()


def test_ridge_recovers_a_linear_map(tmp_path):
    rng = np.random.default_rng(1)
    dim, n_tracks = 12, 3
    x = rng.standard_normal((50, 16, dim)).astype(np.float32)
    w = rng.standard_normal((dim, n_tracks))
    y = (x @ w + np.array([1.0, -2.0, 0.5]) + 0.01 * rng.standard_normal((50, 16, n_tracks))).astype(np.float32)
    train = WindowSource(x[:40], y[:40], np.arange(n_tracks))
    valid = WindowSource(x[40:], y[40:], np.arange(n_tracks))
    fit = fit_ridge(train, valid, [1e-6, 1e-1, 10.0])
    assert fit["lambda"] == 1e-6
    # noise 0.01 over 640 rows: standard errors of ~4e-4; 0.01 is ~25 of them, and far below any wrong fit
    np.testing.assert_allclose(fit["weight"].numpy(), w.T, atol=0.01)
    np.testing.assert_allclose(fit["bias"].numpy(), [1.0, -2.0, 0.5], atol=0.01)


def test_select_tracks():
    tracks = pd.DataFrame({"identifier": list("abcd"), "level": ["Class", "Subclass", "Class", "cluster"]})
    assert list(select_tracks(tracks, "level == 'Class'")) == [0, 2]
    assert list(select_tracks(tracks, None)) == [0, 1, 2, 3]
    with pytest.raises(InputError, match="matches no track"):
        select_tracks(tracks, "level == 'Nope'")
    with pytest.raises(InputError, match="not a valid query"):
        select_tracks(tracks, "level ==")


# --- on a demo run ---------------------------------------------------------------------

def test_demo_heads_are_self_describing(demo_run):
    run = Run(demo_run)
    assert run.heads() == ["default", "finetuned", "ridge"]
    head = run.head("default")
    meta = head.metadata
    assert meta["model"] == "linear" and meta["loss"] == "poisson" and meta["n_tracks"] == 12
    assert [t["identifier"] for t in meta["tracks"]] == list(run.tracks["identifier"])
    assert meta["tracks"][0]["level"] == "Class"
    assert meta["geometry"] == {"seq_length": 16384, "bin_size": 128, "n_bins": 64}
    assert meta["backbone"]["config"]["dim"] == 48 and meta["tool_version"]
    assert meta["config"]["recipe"] == "auto" and meta["training"]["schedule"]["lr"] == 1e-3 and meta["seed"] == 0
    assert meta["metrics"]["pearson_mean"]["test"] > 0.2  # motif signal is learned
    ridge = run.head("ridge").metadata
    assert ridge["training"]["ridge"]["lambda"] in TrainConfig().ridge_lambdas
    pred = head.predict(run.embeddings("test"))
    assert pred.shape == (23, 64, 12) and (pred >= 0).all()
    from safetensors.torch import load_file

    plain = load_file(str(demo_run / "heads" / "default" / "head.safetensors"))
    assert plain["weight"].shape == (12, 96) and plain["bias"].shape == (12,)
    direct = torch.nn.functional.softplus(
        torch.from_numpy(np.asarray(run.embeddings("test")[:1]).astype(np.float32)) @ plain["weight"].T + plain["bias"])
    np.testing.assert_allclose(pred[:1], direct.numpy(), rtol=1e-5, atol=1e-6)


def test_head_refused_on_a_run_with_other_tracks(demo_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(demo_run, other)
    tracks = pd.read_csv(other / "dataset" / "tracks.tsv", sep="\t")
    tracks["identifier"] = tracks["identifier"] + "_x"
    tracks.to_csv(other / "dataset" / "tracks.tsv", sep="\t", index=False)
    reseal_run(other)  # another run's dataset: a head checks it is compatible, whatever its provenance
    with pytest.raises(InputError, match="does not have"):
        load_head(other / "heads" / "default").check_compatible(Run(other))


def test_head_refused_on_a_run_with_other_geometry(demo_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(demo_run, other)
    record = json.loads((other / "dataset" / "stage.json").read_text())
    record["config"]["geometry"]["n_bins"] = 32
    (other / "dataset" / "stage.json").write_text(json.dumps(record))
    reseal_run(other)
    with pytest.raises(InputError, match="trained on geometry"):
        load_head(other / "heads" / "default").check_compatible(Run(other))


@pytest.mark.slow
def test_subset_heads_mlp_and_losses(demo_run, tmp_path):
    from enformer_transfer.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(demo_run, run_dir)
    assert main(["train", str(run_dir), "--head", "class", "--tracks-where", "level == 'Class'",
                 "--max-epochs", "3", "--quiet"]) == 0
    assert main(["train", str(run_dir), "--head", "mlp", "--model", "mlp", "--loss", "poisson-multinomial",
                 "--max-epochs", "3", "--quiet"]) == 0
    assert main(["train", str(run_dir), "--head", "study", "--loss", "poisson-log-input", "--init", "ridge",
                 "--max-epochs", "3", "--quiet"]) == 0
    run = Run(run_dir)
    assert run.head("class").metadata["n_tracks"] == 3
    assert [t["level"] for t in run.head("class").metadata["tracks"]] == ["Class"] * 3
    assert run.head("mlp").predict(run.embeddings("valid")).shape == (23, 64, 12)
    assert run.head("study").metadata["training"]["ridge"]["lambda"] > 0
    assert main(["train", str(run_dir), "--head", "bad", "--tracks-where", "level == 'X'", "--quiet"]) == 2


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_weights(demo_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(demo_run, run_dir, ignore=shutil.ignore_patterns("heads"))
    reference = tmp_path / "reference"
    shutil.copytree(run_dir, reference)
    args = ["--head", "resume", "--max-epochs", "8", "--patience", "100", "--quiet"]
    cmd = [sys.executable, "-m", "enformer_transfer.cli", "train", str(run_dir), *args]
    last = run_dir / "heads" / "resume.partial" / "checkpoints" / "last.ckpt"
    kill_when(cmd, written_twice(last), poll=0.01)
    result = subprocess.run(without_quiet(cmd), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming from" in result.stderr
    subprocess.run([sys.executable, "-m", "enformer_transfer.cli", "train", str(reference), *args],
                   check=True, capture_output=True)
    metrics = pd.read_csv(run_dir / "heads" / "resume" / "logs" / "metrics.csv")
    assert list(metrics["epoch"]) == list(range(8))  # the epochs before the kill are kept, none twice
    training = Run(run_dir).head("resume").metadata["training"]
    assert metrics["step"].iloc[-1] == training["steps"] == training["schedule"]["steps"]  # all 8 epochs' steps
    from safetensors.torch import load_file

    resumed = load_file(run_dir / "heads" / "resume" / "head.safetensors")
    fresh = load_file(reference / "heads" / "resume" / "head.safetensors")
    for key in fresh:
        assert torch.equal(resumed[key], fresh[key]), key


@pytest.mark.slow
def test_two_process_ddp_training_on_cpu(demo_run, tmp_path):
    """Lightning DDP (gloo) with two processes: each rank trains on half the windows, rank 0 saves."""
    run_dir = tmp_path / "run"
    shutil.copytree(demo_run, run_dir, ignore=shutil.ignore_patterns("heads", "evaluation"))
    cmd = [sys.executable, "-m", "enformer_transfer.cli", "train", str(run_dir), "--head", "ddp", "--devices", "2",
           "--accelerator", "cpu", "--max-epochs", "2", "--loader-workers", "0", "--batch-size", "4", "--quiet"]
    # no fixed timeout: two processes on a loaded machine are slow, not hung; a port free now
    result = run_watched(cmd, env={**os.environ, "MASTER_PORT": str(free_port())})
    assert result.returncode == 0, result.stderr[-3000:]
    meta = Run(run_dir).head("ddp").metadata
    assert meta["training"]["world_size"] == 2 and meta["training"]["epochs"] == 2
    metrics = pd.read_csv(run_dir / "heads" / "ddp" / "logs" / "metrics.csv")
    assert metrics["val_loss"].notna().sum() == 2


@pytest.mark.slow
def test_default_head_keeps_up_with_ridge_on_a_small_real_dataset(tiny_hg38, tmp_path):
    """Real hg38 DNA and the 74 real tracks of basenji-tiny-hg38, a few windows, a small random
    backbone: the default head is at least the ridge head minus 0.01 on test, with no flat track
    (the study's recipe on the same data: benchmarks/head_recipes.py)."""
    from enformer_transfer import (
        Geometry,
        RunConfig,
        build_dataset,
        embed_run,
        evaluate_head,
        init_backbone,
        train_head,
    )
    from enformer_transfer.data.targets_table import build_targets_table, write_targets_table

    table = build_targets_table(sorted((tiny_hg38 / "bigwig_contig").glob("*.bw")), clip=None, scale=1.0)
    write_targets_table(table, tmp_path / "targets.tsv")
    bed = pd.read_csv(tiny_hg38 / "windows.bed", sep="\t", header=None, names=["c", "s", "e", "name", "split"])
    bed = pd.concat([bed[bed.split == "train"].head(24), bed[bed.split != "train"]])
    pd.DataFrame({"c": bed["name"], "s": 32768, "e": 98304, "split": bed["split"]}).to_csv(
        tmp_path / "windows.bed", sep="\t", header=False, index=False)
    config = RunConfig(run_dir=tmp_path / "run", geometry=Geometry(seq_length=131072, n_bins=512))
    config.dataset.genome, config.dataset.targets = tiny_hg38 / "windows.fa", tmp_path / "targets.tsv"
    config.dataset.windows = tmp_path / "windows.bed"
    build_dataset(config, progress=False)
    config.embed.backbone = str(init_backbone(tmp_path / "bb", dim=96, depth=1, heads=4, attn_dim_key=16,
                                              n_bins=512, human_tracks=8))
    config.embed.loader_workers, config.train.loader_workers = 1, 0
    embed_run(config, progress=False)
    scores = {}
    for head, settings in (("default", {}), ("ridge", {"model": "ridge"})):
        config.train = TrainConfig(head=head, loader_workers=0, **settings)
        train_head(config, progress=False)
        config.evaluate.head = head
        evaluate_head(config, progress=False)
        summary = Run(config.run_dir).evaluation(head).summary["splits"]["test"]
        scores[head] = summary["pearson_mean"]
        if head == "default":
            assert summary["flat_prediction_tracks"] == [] and summary["zero_variance_tracks"] == []
    assert scores["default"] >= scores["ridge"] - 0.01, scores
