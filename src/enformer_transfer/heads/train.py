"""The train stage's work (``stages/train.py`` runs it):
a head on stored embeddings with a real Lightning trainer (or closed-form ridge).

Defaults are the study's recipe (Adam 1e-4, batch 64, 20 epochs, early stopping on val loss
with min_delta 0.001 and patience 2, best checkpoint kept) except the loss: Poisson on rates
by default, the study's ``PoissonNLLLoss(log_input=True)`` quirk as ``poisson-log-input``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..errors import EnformerTransferError, InputError, IntegrityError
from ..metrics import PearsonPerTrack
from ..rundir.config import RunConfig, TrainConfig
from ..rundir.layout import HeadFolder
from .checkpoint import load_training_checkpoint, save_head
from .data import WindowSource, run_source
from .models import make_head
from .ridge import fit_ridge, fit_ridges, linear_regime_start, lowest_offsets
from .schedule import FEW_STEPS, exact_steps, resolve_schedule

log = logging.getLogger("enformer_transfer")


# a head and its ridge baseline both below this |valid mean Pearson|: "the backbone carries no signal".
# 0.05 is well above what chance gives on a few thousand pooled bins of correlated tracks (the demo's
# random backbone: 0.002 and -0.001) and well below any head worth reading (the demo's pretrained one: ~0.4)
NO_SIGNAL = 0.05

LIGHTNING_PRECISION = {"fp32": "32-true", "fp16": "16-mixed", "bf16": "bf16-mixed"}


def fit_head(cfg: TrainConfig, train: WindowSource, valid: WindowSource | None, folder: HeadFolder | Path,
             seed: int = 0, progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """Train a head on window sources with the schedule of ``cfg`` (heads/schedule.py);
    checkpoints and logs go to ``folder``; resumes from its last checkpoint when present.
    Returns the kept module and the facts of its training."""
    folder = folder if isinstance(folder, HeadFolder) else HeadFolder(Path(folder))
    dim = int(train.embeddings.shape[-1])
    n_tracks = len(train.track_index)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.model != "ridge" and (valid is None or not len(valid)):
        raise InputError("training needs a valid split for early stopping; embed it (--splits train,valid,...)")
    if cfg.model == "ridge":
        ridge = fit_ridge(train, valid, cfg.ridge_lambdas, device)
        module = make_head("ridge", dim, n_tracks)
        with torch.no_grad():
            module.linear.weight.copy_(ridge["weight"])
            module.linear.bias.copy_(ridge["bias"])
        check_finite(module, None)
        return module.eval(), {"ridge": {"lambda": ridge["lambda"], "valid_pearson": ridge["valid_pearson"]}}

    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from ..progress import lightning_progress
    from .lightning import AtomicCheckpointIO, EpochLog, HeadModule, fit, resume_checkpoint

    world = cfg.devices * cfg.num_nodes
    schedule = resolve_schedule(cfg, len(train), world)
    if schedule.init == "ridge" and cfg.model != "linear":
        raise InputError("--init ridge applies to the linear head only")
    info: dict = {"schedule": schedule.as_dict()}
    init, starts = None, {}
    if schedule.init == "ridge":
        starts, info["starts"] = ridge_starts(cfg, train, valid, device, seed)
        info["ridge"] = {"lambda": info["starts"]["softplus"]["lambda"],
                         "valid_pearson": info["starts"]["softplus"]["lambda_valid_pearson"], "link": "softplus"}
        info["trained_from"] = max(starts, key=lambda name: _finite(info["starts"][name]["valid_pearson"]))
        init = starts[info["trained_from"]]
    L.seed_everything(seed, workers=True, verbose=False)
    module = HeadModule(cfg, schedule, dim, n_tracks, train, valid, seed, init)
    precision = cfg.precision
    if precision == "auto":
        precision = "fp16" if torch.cuda.is_available() else "fp32"
    monitor, mode = ("val_pearson", "max") if schedule.select == "pearson" else ("val_loss", "min")
    checkpoints = ModelCheckpoint(dirpath=folder.checkpoints, filename="best", monitor=monitor, mode=mode,
                                  save_top_k=1, save_last=True)
    stopper = EarlyStopping(monitor=monitor, min_delta=schedule.min_delta, patience=schedule.patience, mode=mode,
                            check_on_train_epoch_end=False)
    step_settings, step_callbacks = exact_steps(schedule)
    trainer = L.Trainer(
        **step_settings, check_val_every_n_epoch=schedule.val_every,
        accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
        strategy="ddp" if world > 1 else "auto", precision=LIGHTNING_PRECISION[precision],
        callbacks=[EpochLog(folder.metrics), *step_callbacks, checkpoints, stopper,
                   *lightning_progress(f"train {cfg.head}", progress, schedule.steps)],
        plugins=[AtomicCheckpointIO()],
        logger=TensorBoardLogger(folder.path, name=folder.logs.name, version=""),
        deterministic=True, enable_progress_bar=False, enable_model_summary=False,
        use_distributed_sampler=False, num_sanity_val_steps=0, log_every_n_steps=1,
    )
    start = None
    if schedule.select == "pearson" and not starts:  # a random start is a candidate too
        start = float(np.nanmean(source_pearson(module.model.eval(), valid)))
        starts = {"random": {k: v.detach().clone() for k, v in module.model.state_dict().items()}}
        info["starts"] = {"random": {"valid_pearson": start}}
    module.model.train()
    resume = resume_checkpoint(folder) if trainer.global_rank == 0 else folder.last_checkpoint
    if resume is not None:
        log.info("train: resuming from %s", resume)
    fit(trainer, module, resume)
    info.update({"world_size": trainer.world_size, "rank": trainer.global_rank, "precision": precision,
                 "steps": int(trainer.global_step), "epochs": int(trainer.current_epoch),
                 "stopped_early": bool(stopper.stopped_epoch)})
    check_finite(module.model, None)  # training that diverged is an error, whatever checkpoint was kept
    best = load_training_checkpoint(checkpoints.best_model_path)
    score = float(checkpoints.best_model_score) if checkpoints.best_model_score is not None else None
    kept = {"epoch": int(best["epoch"]), "step": int(best["global_step"]), monitor: score}
    module.load_state_dict(best["state_dict"])
    if schedule.select == "pearson":
        # every candidate scored by the function that scores the saved head: the trained checkpoint,
        # and each start (training from one start must not lose to the other, or to itself)
        score = _finite(float(np.nanmean(source_pearson(module.model.eval(), valid))))
        kept[monitor] = score
        candidates = {name: info["starts"][name]["valid_pearson"] for name in starts}
        if candidates:
            name = max(candidates, key=lambda k: _finite(candidates[k]))
            if _finite(candidates[name]) >= score:  # training did not beat a start: keep that start
                _load_start(module.model, starts[name])
                kept = {"epoch": None, "step": 0, monitor: candidates[name], "start": name}
    info["kept"] = kept
    if schedule.select == "loss":
        info["best_val_loss"] = score
    check_finite(module.model, score if schedule.select == "loss" else None)
    return module.model.cpu().eval(), info


def _load_start(model: torch.nn.Module, start: dict) -> None:
    """Put a start (weight / bias of the linear layer, or a whole state dict) into ``model``."""
    with torch.no_grad():
        if set(start) == {"weight", "bias"}:
            model.linear.weight.copy_(start["weight"])
            model.linear.bias.copy_(start["bias"])
        else:
            model.load_state_dict(start)


def _finite(value: float | None) -> float:
    """A score to rank by: NaN / None rank last."""
    return float(value) if value is not None and np.isfinite(value) else float("-inf")


def ridge_starts(cfg: TrainConfig, train: WindowSource, valid: WindowSource, device: str,
                 seed: int) -> tuple[dict[str, dict], dict]:
    """The ridge starts of a softplus head, from one pass over the embeddings, each scored on valid:

    - ``softplus``: the ridge fit in the softplus's inverse space, bias calibrated to the mean target;
    - ``ridge``: the ridge head's own fit (identity link, the same strength grid and choice as
      ``--model ridge``) with each track's bias raised towards the softplus's linear regime, no further
      than keeps that track's valid Pearson at or above the ridge head's (where it is the ridge head's
      exactly, up to float32 rounding): its valid mean Pearson is at least the ridge head's.

    Returns {name: weight / bias} and, per start, its facts for the head's metadata."""
    fits = fit_ridges(train, valid, cfg.ridge_lambdas, device, ("identity", "softplus"), seed)
    dim, n_tracks = int(train.embeddings.shape[-1]), len(train.track_index)
    plain = linear_regime_start(fits["identity"])
    offset = lowest_offsets(plain, valid, device)  # no higher than the ridge head's valid Pearson needs, per track
    starts = {"softplus": {"weight": fits["softplus"]["weight"], "bias": fits["softplus"]["bias"]},
              "ridge": {"weight": plain["weight"], "bias": fits["identity"]["bias"] + offset}}
    facts = {}
    for name, fit in (("softplus", fits["softplus"]), ("ridge", fits["identity"])):
        head = make_head(cfg.model, dim, n_tracks, cfg.mlp_hidden)
        _load_start(head, starts[name])
        facts[name] = {"link": fit["link"], "lambda": fit["lambda"], "lambda_valid_pearson": fit["valid_pearson"],
                       "valid_pearson": float(np.nanmean(source_pearson(head.eval(), valid)))}
    facts["ridge"]["offset"] = [round(float(v), 4) for v in offset]  # added to the ridge head's predictions
    log.info("train: ridge starts scored on valid: %s",
             ", ".join(f"{name} {f['valid_pearson']:.4f}" for name, f in facts.items()))
    return starts, facts


def check_finite(model: torch.nn.Module, val_loss: float | None) -> None:
    """A head with NaN / infinite weights or validation loss is never saved as trained."""
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad or (val_loss is not None and not np.isfinite(val_loss)):
        raise IntegrityError(
            f"training produced non-finite {'weights (' + ', '.join(bad[:3]) + ')' if bad else 'validation loss'}: "
            "the embeddings or targets may be damaged (run 'enformer-transfer check RUN_DIR') or the learning "
            "rate is too high (--lr); the head was not saved")


def source_pearson(head: torch.nn.Module, source: WindowSource, batch_windows: int = 8) -> np.ndarray:
    """Per-track Pearson of a head on a source, all bins of all windows pooled (streamed)."""
    metric = PearsonPerTrack(len(source.track_index))
    with torch.inference_mode():
        for start in range(0, len(source), batch_windows):
            items = [source.window(i) for i in range(start, min(len(source), start + batch_windows))]
            x = torch.from_numpy(np.stack([e for e, _, _ in items]).astype(np.float32))
            y = np.stack([t for _, t, _ in items])
            masks = [m for _, _, m in items]
            metric.update(head(x).numpy(), y, None if masks[0] is None else np.stack(masks))
    return metric.pearson()


def _ridge_valid_pearson(run, info: dict, track_ids: list[str]) -> float | None:
    """The ridge baseline's valid mean Pearson on these tracks: the head's own ridge start, or a
    ridge head of the run on the same tracks."""
    if "ridge" in info.get("starts", {}):
        return info["starts"]["ridge"]["valid_pearson"]  # the ridge head's own valid Pearson
    if "ridge" in info:
        scores = [v for v in info["ridge"]["valid_pearson"].values() if v is not None and np.isfinite(v)]
        if scores:
            return max(scores)
    other = type(run)(run.path)  # a look at the other heads, for a message: not among what this head is built from
    for name in other.heads():
        try:
            meta = other.head_record(name)
        except EnformerTransferError:
            continue  # a stale or damaged head is no baseline
        if meta.config["train"]["model"] == "ridge" and meta.key.get("tracks") == track_ids:
            return meta.stats.get("pearson_mean", {}).get("valid")
    return None


START_NAMES = {
    "ridge": "its plain-ridge start (the ridge head's solution, offset towards the softplus's linear regime: at "
             "least the ridge head's valid Pearson)",
    "softplus": "its softplus ridge start (the ridge fit in the softplus's inverse space)",
    "random": "its random start",
}


def near_zero(valid_pearson: float | None, ridge: float | None) -> bool:
    """Whether a head and its ridge baseline both score near zero on valid (|r| < NO_SIGNAL)."""
    return all(v is not None and np.isfinite(v) and abs(v) < NO_SIGNAL for v in (valid_pearson, ridge))


def no_signal_warning(valid_pearson: float, ridge: float) -> str:
    return (f"warning: valid mean Pearson {valid_pearson:.3f} and the ridge baseline's {ridge:.3f} are both near "
            f"zero (|r| < {NO_SIGNAL:g}): the backbone carries no signal for these tracks (a random or "
            "unrelated backbone, too few windows, or tracks without sequence signal)")


def no_signal(metadata: dict) -> str | None:
    """The warning of a saved head (its ``head.json``) whose valid mean Pearson and its ridge
    baseline's are both near zero, or None."""
    valid = metadata.get("metrics", {}).get("pearson_mean", {}).get("valid")
    training = metadata.get("training", {})
    ridge = training.get("starts", {}).get("ridge", {}).get("valid_pearson")
    if metadata.get("model") == "ridge":
        ridge = valid  # a ridge head is its own baseline
    return no_signal_warning(valid, ridge).removeprefix("warning: ") if near_zero(valid, ridge) else None


def training_summary(info: dict, valid_pearson: float | None, ridge: float | None) -> list[str]:
    """What happened, in lines: steps, the start trained from, the checkpoint kept, and warnings a
    user must see."""
    lines = []
    if "schedule" in info:
        schedule, kept = info["schedule"], info["kept"]
        where = f"{START_NAMES.get(kept['start'], 'its start')}, as training did not improve on it" \
            if kept.get("start") else f"epoch {kept['epoch']} (step {kept['step']})"
        lines.append(f"{info['steps']} optimizer steps ({schedule['recipe']} recipe: batch {schedule['batch_size']}, "
                     f"lr {schedule['lr']:g} {schedule['decay']}, kept on validation {schedule['select']}); "
                     f"kept {where}")
        offsets = info.get("starts", {}).get("ridge", {}).get("offset", [])
        if kept.get("start") == "ridge" and any(offsets):
            lines.append(f"note: on {sum(1 for v in offsets if v)} of {len(offsets)} tracks its predictions are the "
                         "ridge head's plus a constant (up to ~20, where the softplus is linear): compare it by "
                         "Pearson, not by level (R2)")
        if "trained_from" in info:
            scored = ", ".join(f"{name} {f['valid_pearson']:.3f}" for name, f in info["starts"].items())
            lines.append(f"trained from the {info['trained_from']} start (ridge starts' valid mean Pearson: {scored})")
        if info["steps"] < FEW_STEPS:
            lines.append(f"warning: only {info['steps']} optimizer steps: the head may be undertrained; more train "
                         "windows, or --recipe auto / --steps, give it more")
        if ridge is not None and valid_pearson is not None and valid_pearson < ridge - 0.005:
            lines.append(f"warning: valid mean Pearson {valid_pearson:.3f} is below the ridge baseline's {ridge:.3f}; "
                         "try --model ridge, --init ridge or more steps")
    if near_zero(valid_pearson, ridge):
        lines.append(no_signal_warning(valid_pearson, ridge))
    return lines


def train_and_save(folder: HeadFolder, config: RunConfig, run, track_index: np.ndarray, train: WindowSource,
                   valid: WindowSource | None, progress: bool) -> dict:
    """The train stage's build: fit head ``config.train.head`` on ``train`` (early stopping on
    ``valid``), score it on valid and test, save it with its metadata in ``folder``; the stats."""
    cfg = config.train
    splits = run.embedded_splits
    tracks = run.tracks
    track_ids = list(tracks["identifier"].iloc[track_index])
    module, info = fit_head(cfg, train, valid, folder, config.seed, progress)
    if info.pop("rank", 0) != 0:  # DDP: rank 0 scores, saves and finishes the stage
        return {}
    pearson = {split: source_pearson(module, run_source(run, split, track_index))
               for split in ("valid", "test") if split in splits}
    chosen = tracks.iloc[track_index].reset_index(drop=True)
    metadata = {
        "name": cfg.head,
        "model": cfg.model,
        "dim": int(train.embeddings.shape[-1]),
        "n_tracks": len(track_index),
        "hidden": cfg.mlp_hidden,
        "loss": cfg.loss,
        "tracks": chosen.drop(columns=["file"]).astype(object).where(chosen.notna(), None).to_dict("records"),
        "tracks_where": cfg.tracks_where,
        "geometry": run.geometry.model_dump(),
        "backbone": run.backbone_info,
        "embeddings_key_digest": run.embeddings_record.digest,
        "config": cfg.model_dump(mode="json"),
        "seed": config.seed,
        "training": info,
        "metrics": {
            "pearson_mean": {s: float(np.nanmean(v)) for s, v in pearson.items()},
            "pearson": {s: [None if np.isnan(x) else float(x) for x in v] for s, v in pearson.items()},
        },
    }
    save_head(folder, module, metadata)
    means = metadata["metrics"]["pearson_mean"]
    print(f"train: head {cfg.head!r} ({cfg.model}, {cfg.loss}, {len(track_index)} tracks) mean Pearson "
          + ", ".join(f"{s} {v:.3f}" for s, v in means.items()) + f" -> {run.layout.head(cfg.head).path}")
    ridge = means.get("valid") if cfg.model == "ridge" else _ridge_valid_pearson(run, info, track_ids)
    for line in training_summary(info, means.get("valid"), ridge):
        print(f"train: {line}")
    return {"training": info, **metadata["metrics"]}
