"""Head recipes: a schedule sized to the data (auto), the study's recipe exactly (study), exactly
--steps optimizer steps, and ridge starts (in the softplus's inverse space, and the ridge head's own
solution in the softplus's linear regime) that training only improves on: the default head is never
below its ridge baseline on valid."""

import math

import numpy as np
import pytest
import torch

from enformer_transfer import Run
from enformer_transfer.cli import main
from enformer_transfer.config import TrainConfig
from enformer_transfer.heads.data import WindowSource
from enformer_transfer.heads.lightning import read_epoch_log
from enformer_transfer.heads.models import make_head
from enformer_transfer.heads.ridge import fit_ridge, linear_regime_start
from enformer_transfer.heads.schedule import MIN_STEPS, resolve_schedule
from enformer_transfer.heads.train import fit_head, ridge_starts, source_pearson, training_summary
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
    assert training["kept"].get("start") in ("softplus", "ridge") and training["steps"] == 40
    assert f"kept its {'plain-ridge' if training['kept']['start'] == 'ridge' else 'softplus ridge'} start" in printed
    assert "warning: only 40 optimizer steps" in printed  # exactly --steps, not whole epochs
    assert f"trained from the {training['trained_from']} start" in printed
    default = Run(run_dir).head("default").metadata["training"]
    assert default["kept"]["val_pearson"] >= max(s["valid_pearson"] for s in default["starts"].values())


@pytest.mark.parametrize("settings, steps", [({"steps": 37}, 37), ({"steps": 37, "max_epochs": 1}, 37),
                                             ({"recipe": "study", "steps": 37}, 37), ({"max_epochs": 3}, 3 * 16)])
def test_steps_are_exact_and_the_schedule_is_sized_to_them(settings, steps):
    schedule = resolve_schedule(TrainConfig(**settings), 24 * 16)  # batch 24, 16 steps an epoch: 37 is not whole epochs
    assert schedule.steps == steps and schedule.max_epochs * schedule.steps_per_epoch >= steps
    if schedule.decay == "cosine":  # the decay ends at the last step run, not at the end of a whole epoch
        assert schedule.lr_factor(steps) == pytest.approx(0.01) and schedule.lr_factor(steps - 1) > 0.01


def _counts(seed=0, windows=24, bins=32, dim=24, tracks=4):
    """Poisson counts whose rate is linear in the features: the ridge fit of the counts themselves
    beats the fit in the softplus's inverse space (zeros floored and logged dominate it)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(windows, bins, dim)).astype(np.float32)
    rate = (1 + 0.2 * x @ rng.normal(scale=0.5, size=(dim, tracks))).clip(0)
    y = rng.poisson(rate).astype(np.float32)
    index = np.arange(tracks)
    return (WindowSource(x[:16], y[:16], index), WindowSource(x[16:20], y[16:20], index),
            WindowSource(x[20:], y[20:], index))


def test_default_head_is_never_below_the_ridge_head_on_valid_and_runs_exactly_its_steps(tmp_path):
    train, valid, _ = _counts()
    config = TrainConfig(loader_workers=0, steps=30)
    _, starts = ridge_starts(config, train, valid, "cpu", 0)
    assert starts["softplus"]["valid_pearson"] < starts["ridge"]["valid_pearson"] - 0.005  # the case of issue 20
    ridge, ridge_info = fit_head(TrainConfig(model="ridge"), train, valid, tmp_path / "ridge", progress=False)
    ridge_valid = float(np.nanmean(source_pearson(ridge, valid)))
    assert starts["ridge"]["lambda"] == ridge_info["ridge"]["lambda"]  # the ridge head's own choice of strength
    # the ridge head in the softplus's linear regime: the same valid Pearson, up to the float32 rounding of
    # its offset (~20 added to predictions of spread ~1: ~1e-6 relative, and r moves by its square)
    linear = linear_regime_start(fit_ridge(train, valid, config.ridge_lambdas))
    head = make_head("linear", 24, 4)
    with torch.no_grad():
        head.linear.weight.copy_(linear["weight"])
        head.linear.bias.copy_(linear["bias"])
    assert float(np.nanmean(source_pearson(head, valid))) == pytest.approx(ridge_valid, abs=1e-6)
    # the plain-ridge start lowers each track's offset only where that keeps its valid Pearson
    assert starts["ridge"]["valid_pearson"] >= ridge_valid - 1e-6
    assert min(starts["ridge"]["offset"]) < max(linear["offset"])  # a level nearer the targets somewhere
    head, info = fit_head(config, train, valid, tmp_path / "default", progress=False)
    default_valid = float(np.nanmean(source_pearson(head, valid)))
    assert info["trained_from"] == "ridge"
    assert default_valid >= ridge_valid - 1e-6  # the promise, to the same float32 rounding
    assert default_valid == pytest.approx(info["kept"]["val_pearson"], abs=1e-9)  # kept by the metric it reports
    # exactly the steps asked for (30 = 1 epoch of 16 + 14: not whole epochs), validated after the last
    assert info["steps"] == 30
    rows = read_epoch_log(tmp_path / "default" / "logs" / "metrics.csv")
    assert int(rows[-1]["step"]) == 30
    lines = training_summary(info, default_valid, starts["ridge"]["valid_pearson"])
    assert any("trained from the ridge start" in line for line in lines)
    assert not any("below the ridge" in line for line in lines)


def test_no_signal_is_warned_about():
    info = {"schedule": resolve_schedule(TrainConfig(), 46).as_dict(), "steps": 2000,
            "kept": {"epoch": 3, "step": 90}}
    assert any("the backbone carries no signal" in line for line in training_summary(info, 0.002, -0.001))
    assert not any("no signal" in line for line in training_summary(info, 0.06, 0.01))  # one of them above 0.05
    assert not any("no signal" in line for line in training_summary(info, 0.4, 0.39))
