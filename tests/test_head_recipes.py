"""Head recipes: a schedule sized to the data (auto), the study's recipe exactly (study), and a
ridge start in the softplus's inverse space that a short Poisson fine-tune only improves on."""

import math

import numpy as np
import pytest
import torch

from enformer_transfer import Run
from enformer_transfer.cli import main
from enformer_transfer.config import TrainConfig
from enformer_transfer.heads.data import WindowSource
from enformer_transfer.heads.ridge import fit_ridge
from enformer_transfer.heads.schedule import MIN_STEPS, resolve_schedule
from enformer_transfer.metrics import PearsonPerTrack


@pytest.mark.parametrize("n_windows", [28, 46, 460, 3_400, 34_021])
def test_auto_recipe_takes_enough_steps_at_every_size(n_windows):
    schedule = resolve_schedule(TrainConfig(), n_windows)
    assert schedule.recipe == "auto" and schedule.init == "ridge" and schedule.select == "pearson"
    assert 1 <= schedule.batch_size <= 64 and schedule.steps >= MIN_STEPS
    assert schedule.steps_per_epoch == math.ceil(n_windows / schedule.batch_size)
    assert schedule.steps_per_epoch >= 16  # an epoch is never one or two steps
    assert schedule.max_epochs * schedule.steps_per_epoch >= schedule.steps  # the epochs hold the planned steps
    # warm-up to the peak, then a cosine decay to 1 % of it
    assert schedule.lr_factor(0) == pytest.approx(1 / schedule.warmup_steps)
    assert schedule.lr_factor(schedule.warmup_steps) == pytest.approx(1.0)
    assert schedule.lr_factor(schedule.steps) == pytest.approx(0.01)
    factors = [schedule.lr_factor(s) for s in range(schedule.warmup_steps, schedule.steps + 1, 50)]
    assert all(a >= b for a, b in zip(factors, factors[1:], strict=False))
    if n_windows == 34_021:  # the study's size: full batches of 64, 20 epochs
        assert (schedule.batch_size, schedule.steps_per_epoch, schedule.steps) == (64, 532, 20 * 532)


def test_study_recipe_is_the_reference_recipe_and_flags_still_win():
    schedule = resolve_schedule(TrainConfig(recipe="study"), 34_021)
    assert (schedule.batch_size, schedule.max_epochs, schedule.lr, schedule.decay) == (64, 20, 1e-4, "constant")
    assert (schedule.select, schedule.patience, schedule.min_delta, schedule.init) == ("loss", 2, 0.001, "random")
    assert schedule.lr_factor(0) == schedule.lr_factor(10_000) == 1.0
    assert resolve_schedule(TrainConfig(recipe="study", lr=1e-3, batch_size=8), 100).lr == 1e-3
    assert resolve_schedule(TrainConfig(lr=5e-4, steps=300), 100).steps == 300


def _softplus_data(seed=0, windows=24, bins=32, dim=16, tracks=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(windows, bins, dim)).astype(np.float32)
    w = rng.normal(scale=0.6, size=(dim, tracks)).astype(np.float32)
    b = rng.normal(size=tracks).astype(np.float32)
    y = np.log1p(np.exp(x @ w + b)).astype(np.float32)  # softplus(x w + b): a linear + softplus head is exact
    return x, y


def _pearson(x, y, fit, output):
    metric = PearsonPerTrack(y.shape[-1])
    pred = output(torch.from_numpy(x.reshape(-1, x.shape[-1])).double() @ fit["weight"].T.double() + fit["bias"])
    metric.update(pred.numpy(), y.reshape(-1, y.shape[-1]))
    return metric.pearson(), pred.numpy()


def test_ridge_start_in_the_softplus_inverse_space_fits_a_softplus_head_and_its_mean(tmp_path):
    x, y = _softplus_data()
    source = WindowSource(embeddings=x[:16], targets=y[:16], track_index=np.arange(y.shape[-1]))
    valid = WindowSource(embeddings=x[16:], targets=y[16:], track_index=np.arange(y.shape[-1]))
    start = fit_ridge(source, valid, [1e-4, 1e-2, 1.0], link="softplus")
    identity = fit_ridge(source, valid, [1e-4, 1e-2, 1.0], link="identity")
    softplus = torch.nn.functional.softplus
    start_r, start_pred = _pearson(x[16:], y[16:], start, softplus)
    # the softplus start is the exact answer here (r ~ 1); softplus of the identity fit is not
    assert start_r.min() > 0.99
    identity_r, _ = _pearson(x[16:], y[16:], identity, softplus)
    assert start_r.mean() > identity_r.mean() + 0.01
    # each track's bias puts the mean prediction at the mean train target
    _, train_pred = _pearson(x[:16], y[:16], start, softplus)
    np.testing.assert_allclose(train_pred.mean(0), y[:16].reshape(-1, y.shape[-1]).mean(0), rtol=2e-3)


def test_a_head_that_cannot_improve_keeps_its_start_and_says_so(demo_run, tmp_path, capsys):
    """A learning rate so large that training only harms the head: the kept head is its ridge
    start (never worse than it), and the few steps are warned about."""
    import shutil

    run_dir = shutil.copytree(demo_run, tmp_path / "run", ignore=shutil.ignore_patterns(
        "dar", "report", "weights", "evaluation", "finetuned"))
    assert main(["train", str(run_dir), "--head", "still", "--steps", "40", "--lr", "0.3",
                 "--loader-workers", "0"]) == 0
    printed = capsys.readouterr().out
    training = Run(run_dir).head("still").metadata["training"]
    assert training["kept"].get("start") and training["schedule"]["steps"] == 40
    assert "kept its ridge start" in printed and "warning: only 46 optimizer steps" in printed  # whole epochs of 23
    default = Run(run_dir).head("default").metadata["training"]
    assert default["kept"]["val_pearson"] >= default["start_valid_pearson"]  # the default run only improved
