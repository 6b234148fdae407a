"""The work of ``finetune`` and ``backbone pretrain`` (``stages/finetune.py``, ``stages/pretrain.py``
run it): trunk + head trained end to end from sequence.

``finetune`` starts from a trained frozen head (the standard two-stage recipe: linear probe,
then fine-tune) and the run's backbone; what adapts is chosen with ``--trainable`` (adapt.py);
windows come from the genome, targets from the dataset store, with reverse-complement and
shift augmentation. Validation mean Pearson picks the kept checkpoint, and the model that
started (the frozen head) is kept when fine-tuning does not beat it on valid. The result is a
self-describing model in RUN_DIR/heads/NAME: the fine-tuned trunk in its family's own format
(``trunk/``, e.g. loadable with ``Enformer.from_pretrained``), the LoRA adapters alone, the head
(``head.safetensors``, ``head.json``) and its provenance.

``backbone pretrain`` trains a randomly initialised small Enformer on a run's tracks with the
same machinery (everything trains, BatchNorm included) and writes it as a backbone folder.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import torch

from ..backbone.model import SequenceModel, freeze_batchnorm
from ..devices import resolve_device
from ..errors import InputError
from ..fs import write_text_atomic
from ..heads.checkpoint import load_training_checkpoint, save_head
from ..heads.schedule import Schedule, exact_steps, steps_and_epochs
from ..metrics import PearsonPerTrack
from ..results import Run
from ..rundir.config import RunConfig
from ..rundir.layout import PARTIAL, BackboneFolder, HeadFolder
from ..rundir.provenance import file_fingerprint
from ..targets.table import strand_partners
from .adapt import adapt, adapter_state, merge_adapters
from .data import SequenceWindows, sequence_loader

log = logging.getLogger("enformer_transfer")

LIGHTNING_PRECISION = {"fp32": "32-true", "fp16": "16-mixed", "bf16": "bf16-mixed"}


def finetune_schedule(cfg, n_windows: int, world: int, lora: bool) -> Schedule:
    """Steps, warm-up and cosine decay for fine-tuning: max(200 steps, 10 epochs) by default."""
    per_epoch = max(1, math.ceil(n_windows / (cfg.batch_size * world)))
    if cfg.max_epochs is None and cfg.steps is None:
        steps, epochs = steps_and_epochs(max(200, 10 * per_epoch), None, per_epoch)
    else:
        steps, epochs = steps_and_epochs(cfg.steps, cfg.max_epochs, per_epoch)
    val_every = max(1, epochs // 30)
    patience = cfg.patience if cfg.patience is not None else max(3, (epochs // val_every) // 5)
    lr = cfg.lr or (1e-3 if lora else 1e-4)
    return Schedule("finetune", cfg.batch_size, epochs, steps, per_epoch, lr, max(1, steps // 20), "cosine",
                    "pearson", patience, 0.0, "frozen head", val_every)


HARM = 0.01  # a fine-tuned model may not leave a track more than this below where it started


def _sequence_module(model: SequenceModel, n_tracks: int, loss_name: str, schedule: Schedule,
                     lrs: tuple[float, float], data: dict, workers: int, seed: int, freeze_bn: bool = True,
                     start: np.ndarray | None = None):
    import lightning as L

    from ..heads.lightning import ValidPearson
    from ..heads.losses import LOSSES

    class SequenceModule(L.LightningModule):
        """Trunk + head trained from sequence."""

        def __init__(self):
            super().__init__()
            self.model = model
            self.loss_fn = LOSSES[loss_name]
            self.val_pearson = ValidPearson(n_tracks)
            self.epoch_loss = [0.0, 0]

        def train(self, mode: bool = True):
            super().train(mode)
            if freeze_bn:
                freeze_batchnorm(self.model)
            return self

        def on_train_epoch_start(self) -> None:
            self.epoch_loss = [0.0, 0]

        def on_train_batch_start(self, batch, batch_idx) -> None:
            # dropout draws from the global generator: seeded by the step, a resumed run draws the
            # same masks as an uninterrupted one
            torch.manual_seed(seed * 1_000_003 + self.trainer.global_step)

        def training_step(self, batch, _):
            loss = self.loss_fn(self.model(batch["x"]), batch["y"], batch.get("mask"))
            self.epoch_loss[0] += float(loss.detach())
            self.epoch_loss[1] += 1
            self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch["x"]), sync_dist=True)
            return loss

        def validation_step(self, batch, _):
            pred = self.model(batch["x"])
            self.log("val_loss", self.loss_fn(pred, batch["y"], batch.get("mask")), on_epoch=True,
                     batch_size=len(batch["x"]), sync_dist=True)
            self.val_pearson.update(pred, batch["y"], batch.get("mask"))
            self.log("val_pearson", self.val_pearson, on_epoch=True, batch_size=len(batch["x"]))

        def on_validation_epoch_end(self) -> None:
            # the kept checkpoint: the best mean validation Pearson among those that leave no track
            # more than HARM below where it started (a heavy penalty otherwise)
            r = self.val_pearson.per_track().cpu().numpy()
            score = float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")
            if start is not None:
                worse = np.nan_to_num(r, nan=-1.0) < start - HARM
                score -= float(worse.any())
            self.log("val_score", score)

        def configure_optimizers(self):
            head = [p for p in self.model.head.parameters() if p.requires_grad]
            trunk = [p for p in self.model.trunk.parameters() if p.requires_grad]
            groups = [{"params": trunk, "lr": lrs[0]}] + ([{"params": head, "lr": lrs[1]}] if head else [])
            optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.lr_factor)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

        def _loader(self, split: str):
            epoch = (lambda: self.trainer.fit_loop.epoch_progress.current.processed) if split == "train" else None
            return sequence_loader(data[split], schedule.batch_size, workers, split == "train", seed,
                                   self.trainer.global_rank, self.trainer.world_size, epoch)

        def train_dataloader(self):
            return self._loader("train")

        def val_dataloader(self):
            return self._loader("valid")

    return SequenceModule()


def fit_sequence_model(model: SequenceModel, loss: str, schedule: Schedule, lrs: tuple[float, float], data: dict,
                       folder: HeadFolder, cfg, seed: int, progress: bool, freeze_bn: bool = True,
                       start: np.ndarray | None = None) -> dict:
    """Lightning over sequence windows: the schedule, checkpoints (atomic, resumable), the epoch
    log, early stopping and the kept checkpoint on validation Pearson. Leaves the kept weights in
    ``model``; returns training facts."""
    import warnings

    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from ..heads.lightning import AtomicCheckpointIO, EpochLog, fit, resume_checkpoint
    from ..progress import lightning_progress

    # BatchNorm layers stay in eval mode on purpose (frozen statistics)
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    L.seed_everything(seed, workers=True, verbose=False)
    n_tracks = len(data["train"].track_index)
    module = _sequence_module(model, n_tracks, loss, schedule, lrs, data, cfg.loader_workers, seed, freeze_bn,
                              None if start is None else np.nan_to_num(start, nan=-1.0))
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if torch.cuda.is_available() else "fp32")
    world = cfg.devices * getattr(cfg, "num_nodes", 1)
    strategy = getattr(cfg, "strategy", "auto")
    strategy = ("fsdp" if strategy == "fsdp" else "ddp") if world > 1 else "auto"
    checkpoints = ModelCheckpoint(dirpath=folder.checkpoints, filename="best", monitor="val_score", mode="max",
                                  save_top_k=1, save_last=True)
    stopper = EarlyStopping(monitor="val_score", patience=schedule.patience, mode="max", check_on_train_epoch_end=False)
    step_settings, step_callbacks = exact_steps(schedule)
    trainer = L.Trainer(
        **step_settings, check_val_every_n_epoch=schedule.val_every,
        accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=getattr(cfg, "num_nodes", 1), strategy=strategy,
        precision=LIGHTNING_PRECISION[precision], callbacks=[EpochLog(folder.metrics), *step_callbacks, checkpoints, stopper,
                                                     *lightning_progress(f"finetune {folder.path.name.removesuffix(PARTIAL)}", progress,
                                                                        schedule.steps)],
        plugins=[AtomicCheckpointIO()], logger=TensorBoardLogger(folder.path, name=folder.logs.name, version=""),
        deterministic=False, enable_progress_bar=False, enable_model_summary=False,
        use_distributed_sampler=False, num_sanity_val_steps=0, log_every_n_steps=1,
    )
    resume = resume_checkpoint(folder) if trainer.global_rank == 0 else folder.last_checkpoint
    if resume is not None:
        log.info("%s: resuming from %s", folder.path.name, resume)
    fit(trainer, module, resume)
    if not checkpoints.best_model_path:  # no validation ran: nothing to choose from
        kept = {"epoch": int(trainer.current_epoch), "step": int(trainer.global_step), "val_pearson": None}
        return {"schedule": schedule.as_dict(), "steps": int(trainer.global_step), "epochs": int(trainer.current_epoch),
                "stopped_early": False, "precision": precision, "world_size": trainer.world_size,
                "rank": trainer.global_rank, "kept": kept}
    best = load_training_checkpoint(checkpoints.best_model_path)
    module.load_state_dict(best["state_dict"])
    score = float(checkpoints.best_model_score) if checkpoints.best_model_score is not None else None
    return {"schedule": schedule.as_dict(), "steps": int(trainer.global_step), "epochs": int(trainer.current_epoch),
            "stopped_early": bool(stopper.stopped_epoch), "precision": precision, "world_size": trainer.world_size,
            "rank": trainer.global_rank, "kept": {"epoch": int(best["epoch"]), "step": int(best["global_step"]),
                                                   "val_score": score}}


def sequence_pearson(model: SequenceModel, dataset: SequenceWindows, batch_size: int = 2) -> np.ndarray:
    """Per-track Pearson of a sequence model over a split's windows (all bins pooled)."""
    device = next(model.parameters()).device
    metric = PearsonPerTrack(len(dataset.track_index))
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
            x = torch.stack([it["x"] for it in items]).to(device)
            y = np.stack([it["y"].numpy() for it in items])
            mask = np.stack([it["mask"].numpy() for it in items]) if "mask" in items[0] else None
            metric.update(model(x).float().cpu().numpy(), y, mask)
    return metric.pearson()


def _windows(run: Run, split: str, track_index, augment: bool, cfg, seed: int) -> SequenceWindows:
    genome = run.genome()
    return SequenceWindows(genome.path, genome.names.mode, run.windows(split), run.targets(split), run.masks(split),
                           track_index, run.embed_config.pad_value if _has_embeddings(run) else 0.25,
                           augment=augment, max_shift=getattr(cfg, "max_shift", 3),
                           partners=strand_partners(run.tracks.iloc[track_index].reset_index(drop=True)), seed=seed)


def _has_embeddings(run: Run) -> bool:
    try:
        run.embeddings_record  # noqa: B018
        return True
    except InputError:
        return False


def finetune_and_save(work: Path, config: RunConfig, run: Run, frozen, track_index: np.ndarray, mode: str,
                      progress: bool) -> dict:
    """The finetune stage's build: trunk + ``frozen`` head trained end to end from sequence, the
    better of it and the frozen head saved in ``work`` (a head folder); the stats."""
    f = config.finetune
    folder = HeadFolder(work)
    device = resolve_device("auto")
    torch.manual_seed(config.seed)  # the adapters' initial values
    backbone = run.backbone("cpu")
    family, n_bins = backbone.family, run.geometry.n_bins
    adapted = adapt(backbone.model, family, f.trainable, f.lora_rank, f.lora_alpha)
    checkpointing = f.checkpointing == "on" or (f.checkpointing == "auto" and device.type == "cuda")
    precision = f.precision if f.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    head = copy.deepcopy(frozen.module).train()
    model = SequenceModel(family.trunk(adapted, n_bins), head, precision, checkpointing, family=family)
    data = {"train": _windows(run, "train", track_index, f.augment, f, config.seed),
            "valid": _windows(run, "valid", track_index, False, f, config.seed)}
    world = f.devices * f.num_nodes
    schedule = finetune_schedule(f, len(data["train"]), world, mode == "lora")
    start = sequence_pearson(model, data["valid"])
    model.train()
    info = fit_sequence_model(model, frozen.metadata["loss"], schedule, (schedule.lr, f.head_lr or schedule.lr / 10),
                              data, folder, f, config.seed, progress, start=start)
    if info.pop("rank", 0) != 0:
        return {}
    info["start_valid_pearson"] = float(np.nanmean(start))
    no_gain = info["kept"]["val_score"] is None or info["start_valid_pearson"] >= info["kept"]["val_score"]
    keep_frozen = no_gain and (f.keep == "best" or info["kept"]["val_score"] is None)
    if no_gain and not keep_frozen:
        log.warning("finetune %r: no validation improvement over the frozen head %r; the fine-tuned weights are "
                    "kept anyway (--keep finetuned)", f.head, f.from_head)
    if keep_frozen:
        log.warning("finetune %r: no validation improvement over the frozen head %r; the frozen head's weights "
                    "are kept", f.head, f.from_head)
        adapted = run.backbone("cpu").model
        model = SequenceModel(family.trunk(adapted, n_bins), copy.deepcopy(frozen.module), precision, family=family)
        mode_kept = "frozen"
    else:
        mode_kept = mode
        if mode == "lora":
            adapters = adapter_state(adapted)
            from safetensors.torch import save_file

            from ..fs import atomic_path

            with atomic_path(folder.adapters) as tmp:
                save_file(adapters, str(tmp))
            adapted = merge_adapters(adapted)
    change = _track_changes(run, model, frozen, track_index, config.seed)
    _save_model(folder, adapted, family, model.head, frozen, f, info, change, mode_kept, run)
    worse = [row for row in change if row["change"] is not None and row["change"] < -0.01]
    print(f"finetune: {f.head!r} ({f.trainable}, from {f.from_head!r}, {len(track_index)} tracks): test mean "
          f"Pearson {_mean([r['frozen'] for r in change]):.3f} -> {_mean([r['finetuned'] for r in change]):.3f} "
          f"after {info['steps']} steps -> {run.layout.head(f.head).path}")
    print("\n".join(track_change_lines(change, run.layout.head(f.head).track_change)))
    if worse:
        log.warning("finetune %r: %d track(s) more than 0.01 below the frozen head on test: %s", f.head,
                    len(worse), ", ".join(f"{r['identifier']} {r['change']:+.3f}" for r in worse[:5]))
    return {"training": info, "tracks_worse_than_frozen": len(worse)}


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def track_change_lines(change: list[dict], listed_in: Path, shown: int = 12) -> list[str]:
    """The per-track test Pearson change as a small table: every track when there are at most
    ``shown``, else the lowest and highest changes (all are in ``listed_in``)."""
    rows = [r for r in change if r["change"] is not None]
    if not rows:
        return ["finetune: no per-track change (the run has no test split, or the frozen head no test Pearson)"]
    if len(rows) > shown:
        ordered = sorted(rows, key=lambda r: r["change"])
        rows = ordered[: shown // 2] + ordered[-(shown - shown // 2):]
    width = max(5, *(len(str(r["identifier"])) for r in rows))
    lines = [f"finetune:   {'track':<{width}}  frozen  fine-tuned  change"]
    lines += [f"finetune:   {str(r['identifier']):<{width}}  {r['frozen']:6.3f}  {r['finetuned']:10.3f}  "
              f"{r['change']:+6.3f}" for r in rows]
    if len(change) > len(rows):
        lines.append(f"finetune:   (the {shown // 2} lowest and {shown - shown // 2} highest changes of "
                     f"{len(change)} tracks; all in {listed_in})")
    return lines


def _track_changes(run: Run, model: SequenceModel, frozen, track_index, seed: int) -> list[dict]:
    """Per track: test Pearson of the frozen head (as trained) and of the fine-tuned model."""
    ids = [t["identifier"] for t in frozen.metadata["tracks"]]
    before = frozen.metadata["metrics"]["pearson"].get("test")
    if "test" not in run.splits or before is None:
        return [{"identifier": i, "frozen": None, "finetuned": None, "change": None} for i in ids]
    after = sequence_pearson(model, _windows(run, "test", track_index, False, run.config.finetune, seed))
    rows = []
    for ident, b, a in zip(ids, before, after, strict=True):
        a = None if np.isnan(a) else float(a)
        rows.append({"identifier": ident, "frozen": b, "finetuned": a,
                     "change": None if a is None or b is None else a - b})
    return rows


def _save_model(folder: HeadFolder, adapted, family, head, frozen, f, info: dict, change: list[dict], mode: str,
                run: Run) -> None:
    """trunk/ (the backbone family's own folder format), head.safetensors + head.json with provenance."""
    from ..fs import atomic_folder

    for p in adapted.parameters():
        p.requires_grad_(True)
    with atomic_folder(folder.trunk, force=True) as tmp:
        family.save(adapted, tmp)
    # recorded by name: the model folder is renamed into place (and may be moved with its run)
    trunk_files = [{**file_fingerprint(p), "path": p.name} for p in sorted(folder.trunk.iterdir()) if p.is_file()]
    metadata = {**frozen.metadata, "name": f.head,
                "finetune": {"from_head": f.from_head, "trainable": f.trainable, "kept": mode,
                             "lora_rank": f.lora_rank, "lora_alpha": f.lora_alpha, "trunk_files": trunk_files,
                             "settings": f.model_dump(mode="json"), "track_change_test": change},
                "training": info,
                "metrics": {"pearson_mean": {"test": _mean([r["finetuned"] for r in change])},
                            "pearson": {"test": [r["finetuned"] for r in change]}}}
    save_head(folder, head.cpu().eval(), metadata)
    write_text_atomic(folder.track_change, json.dumps(change, indent=2))


def pretrain_and_save(work: Path, config: RunConfig, run: Run, track_index: np.ndarray, folder: Path,
                      progress: bool) -> dict:
    """The ``backbone pretrain`` stage's build: a small Enformer from random weights trained on
    the run's tracks ``track_index``, written in ``work`` as a backbone folder; the stats."""
    from ..backbone.enformer import EnformerFamily

    p = config.pretrain
    g = run.geometry
    pool = int(round(math.log2(g.bin_size)))
    out = HeadFolder(work)
    torch.manual_seed(config.seed)
    family = EnformerFamily()
    enformer = family.build(dim=p.dim, depth=p.depth, heads=p.heads, attn_dim_key=p.attn_dim_key, num_downsamples=pool,
                            n_bins=g.n_bins, human_tracks=len(track_index), calibrate_batches=2)
    model = SequenceModel(family.trunk(enformer, g.n_bins), family.output_head(enformer), "fp32", family=family)
    data = {"train": _windows(run, "train", track_index, p.augment, p, config.seed),
            "valid": _windows(run, "valid", track_index, False, p, config.seed)}
    per_epoch = max(1, math.ceil(len(data["train"]) / p.batch_size))
    epochs = max(1, math.ceil(p.steps / per_epoch))
    schedule = Schedule("pretrain", p.batch_size, epochs, p.steps, per_epoch, p.lr, max(1, p.steps // 20),
                        "cosine", "pearson", epochs, 0.0, "random", max(1, epochs // 20))
    info = fit_sequence_model(model, "poisson", schedule, (p.lr, p.lr), data, out, _PretrainRuntime(p),
                              config.seed, progress, freeze_bn=False)
    info.pop("rank", None)
    model.eval()
    if out.checkpoints.exists():  # only needed to resume; the backbone folder holds the weights
        shutil.rmtree(out.checkpoints)
    family.save(enformer, work)
    tracks = run.tracks.iloc[track_index]
    write_text_atomic(BackboneFolder(work).pretrain_record, json.dumps({
        "tracks": list(tracks["identifier"]), "dataset": str(run.path), "valid_pearson": info["kept"]["val_score"],
        "steps": info["steps"], "settings": p.model_dump(mode="json"), "seed": config.seed}, indent=2, default=str))
    print(f"backbone pretrain: dim {p.dim}, {len(track_index)} tracks, {info['steps']} steps, valid mean Pearson "
          f"{info['kept']['val_score']:.3f} -> {folder}")
    return {"training": info, "tracks": len(track_index)}


class _PretrainRuntime:
    """The runtime settings fit_sequence_model reads, for pretraining (fp32, one node)."""

    def __init__(self, p):
        self.precision, self.accelerator, self.devices = "fp32", p.accelerator, p.devices
        self.num_nodes, self.strategy, self.loader_workers = 1, "auto", p.loader_workers

