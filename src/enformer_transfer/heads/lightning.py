"""The Lightning pieces of head training: the module, an epoch log that is appended to (never
truncated, also across a resume), atomic checkpoints, and the choice of checkpoint to resume from."""

from __future__ import annotations

import csv
import logging
import signal
from pathlib import Path

import lightning as L
import torch
import torchmetrics
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..errors import Interrupted
from ..fs import disk_errors, write_bytes_atomic, write_text_atomic
from ..rundir.config import TrainConfig
from ..rundir.layout import CHECKPOINTS, HeadFolder
from .data import WindowSource, make_loader
from .losses import LOSSES
from .models import make_head
from .schedule import Schedule

log = logging.getLogger("enformer_transfer")

EPOCH_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "val_pearson", "lr"]


class ValidPearson(torchmetrics.Metric):
    """Mean over tracks of the per-track Pearson, all bins of all windows pooled (the evaluation's
    metric), accumulated as float64 sums; masked bins left out; summed across DDP ranks."""

    full_state_update = False

    def __init__(self, n_tracks: int):
        super().__init__()
        for name in ("n", "sx", "sy", "sxx", "syy", "sxy"):
            self.add_state(name, default=torch.zeros(n_tracks, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        x = pred.detach().to(torch.float64).reshape(-1, pred.shape[-1])
        y = target.to(torch.float64).reshape(-1, target.shape[-1])
        w = torch.ones_like(x) if mask is None else (~mask.reshape(x.shape)).to(torch.float64)
        self.n += w.sum(0)
        self.sx += (w * x).sum(0)
        self.sy += (w * y).sum(0)
        self.sxx += (w * x * x).sum(0)
        self.syy += (w * y * y).sum(0)
        self.sxy += (w * x * y).sum(0)

    def per_track(self) -> torch.Tensor:
        """Per-track Pearson (NaN where a track has no variance)."""
        n = self.n.clamp(min=1)
        cov = self.sxy / n - self.sx * self.sy / n**2
        var = (self.sxx / n - (self.sx / n) ** 2) * (self.syy / n - (self.sy / n) ** 2)
        r = cov / var.clamp(min=0).sqrt()
        return torch.where(torch.isfinite(r) & (var > 0), r, torch.full_like(r, float("nan")))

    def compute(self) -> torch.Tensor:
        r = self.per_track()
        r = r[torch.isfinite(r)]
        return r.mean() if len(r) else torch.tensor(float("nan"), dtype=torch.float64)


class HeadModule(L.LightningModule):
    """A head (``.model``) trained on embeddings with one of the losses and a schedule; reads its
    batches from window sources."""

    def __init__(self, cfg: TrainConfig, schedule: Schedule, dim: int, n_tracks: int, train: WindowSource,
                 valid: WindowSource, seed: int, init: dict | None = None):
        super().__init__()
        self.cfg, self.schedule, self.seed = cfg, schedule, seed
        self.train_source, self.valid_source = train, valid
        self.model = make_head(cfg.model, dim, n_tracks, cfg.mlp_hidden)
        if init is not None:
            with torch.no_grad():
                self.model.linear.weight.copy_(init["weight"])
                self.model.linear.bias.copy_(init["bias"])
        self.loss_fn = LOSSES[cfg.loss]
        self.val_pearson = ValidPearson(n_tracks)
        self.epoch_loss = [0.0, 0]  # this epoch's summed training loss and batches, for the epoch log

    def _loss(self, batch) -> torch.Tensor:
        pred = self.model(batch["x"])
        return self.loss_fn(pred.float(), batch["y"], batch.get("mask"))

    def on_train_epoch_start(self) -> None:
        self.epoch_loss = [0.0, 0]

    def training_step(self, batch, _):
        loss = self._loss(batch)
        self.epoch_loss[0] += float(loss.detach())
        self.epoch_loss[1] += 1
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch["x"]), sync_dist=True)
        return loss

    def validation_step(self, batch, _):
        pred = self.model(batch["x"]).float()
        loss = self.loss_fn(pred, batch["y"], batch.get("mask"))
        self.log("val_loss", loss, on_epoch=True, batch_size=len(batch["x"]), sync_dist=True)
        self.val_pearson.update(pred, batch["y"], batch.get("mask"))
        self.log("val_pearson", self.val_pearson, on_epoch=True, batch_size=len(batch["x"]))

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.schedule.lr)
        if self.schedule.decay == "constant":
            return optimizer
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.schedule.lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def train_dataloader(self):
        return make_loader(self.train_source, self.schedule.batch_size, self.cfg.loader_workers, self.seed, True,
                           self.trainer.global_rank, self.trainer.world_size,
                           epoch_source=lambda: self.trainer.fit_loop.epoch_progress.current.processed)

    def val_dataloader(self):
        return make_loader(self.valid_source, self.schedule.batch_size, self.cfg.loader_workers, self.seed, False,
                           self.trainer.global_rank, self.trainer.world_size)


class EpochLog(L.Callback):
    """One row per finished epoch in ``logs/metrics.csv``, appended before the epoch's checkpoint
    is written. A resumed run keeps the rows up to the step it resumes from (and drops rows of
    steps that are about to be redone)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_train_start(self, trainer, module) -> None:
        if trainer.global_rank != 0:
            return
        rows = read_epoch_log(self.path)
        kept = [r for r in rows if int(float(r["step"])) <= trainer.global_step]
        if len(kept) != len(rows) or not self.path.is_file():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.path, _csv_text(kept), fsync=False)

    def on_validation_end(self, trainer, module) -> None:
        if trainer.global_rank != 0 or trainer.sanity_checking:
            return
        total, batches = module.epoch_loss
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step,
               "train_loss": total / batches if batches else float("nan"),
               "val_loss": float(trainer.callback_metrics.get("val_loss", float("nan"))),
               "val_pearson": float(trainer.callback_metrics.get("val_pearson", float("nan"))),
               "lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")}
        with disk_errors(self.path), open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=EPOCH_COLUMNS).writerow(row)


def read_epoch_log(path: Path) -> list[dict]:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("epoch", "").isdigit()]


def _csv_text(rows: list[dict]) -> str:
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EPOCH_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary name on the same filesystem, then renamed: a full disk
    or a kill leaves the previous checkpoint, never a truncated one."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        import io

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()  # serialised first: torch.save reports a full disk as a vague RuntimeError
        torch.save(checkpoint, buffer)
        write_bytes_atomic(path, buffer.getbuffer())


def fit(trainer: L.Trainer, module: L.LightningModule, resume: Path | None) -> None:
    """``trainer.fit``, from ``resume`` when it exists. On SIGTERM, Lightning alone (no handler of
    the command line's before it, as in a Python session) finishes the batch and raises its
    ``SIGTERMException``, a ``SystemExit`` without a code: the process would exit 0 as if the
    stage had finished. It becomes ``Interrupted`` (exit 143)."""
    try:
        trainer.fit(module, ckpt_path=str(resume) if resume is not None and resume.exists() else None,
                    weights_only=True)  # a checkpoint that would run code is refused, never run
    except SIGTERMException as stop:
        raise Interrupted(signal.SIGTERM) from stop


def resume_checkpoint(folder: HeadFolder) -> Path | None:
    """The checkpoint to resume from: last.ckpt when it loads, else best.ckpt (an earlier epoch),
    else none; a damaged checkpoint is named in a warning and set aside. Checkpoints load with
    ``weights_only=True``: one that would run code is refused (IntegrityError), never run."""
    from ..errors import IntegrityError
    from .checkpoint import load_training_checkpoint

    for name in CHECKPOINTS:
        path = folder.checkpoints / name
        if not path.is_file():
            continue
        try:
            state = load_training_checkpoint(path)
            if "state_dict" in state and "epoch" in state:
                return path
            raise ValueError("not a training checkpoint")
        except IntegrityError:
            raise
        except Exception as err:  # torch raises many types for damaged zip/pickle data
            damaged = path.with_name(path.name + ".damaged")
            path.replace(damaged)
            log.warning("train: %s is damaged (%s: %s); moved to %s, trying an earlier checkpoint",
                        path, type(err).__name__, str(err)[:80], damaged.name)
    return None
