"""The Lightning pieces of head training: the module, an epoch log that is appended to (never
truncated, also across a resume), atomic checkpoints, and the choice of checkpoint to resume from."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO

from ..config import TrainConfig
from ..fs import disk_errors, write_bytes_atomic, write_text_atomic
from ..layout import HeadFolder
from .data import WindowSource, make_loader
from .losses import LOSSES
from .models import make_head

log = logging.getLogger("enformer_transfer")

EPOCH_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "lr"]


class HeadModule(L.LightningModule):
    """A head (``.model``) trained on embeddings with one of the losses; reads its batches from
    window sources."""

    def __init__(self, cfg: TrainConfig, dim: int, n_tracks: int, train: WindowSource, valid: WindowSource,
                 seed: int, init: dict | None = None):
        super().__init__()
        self.cfg, self.seed = cfg, seed
        self.train_source, self.valid_source = train, valid
        self.model = make_head(cfg.model, dim, n_tracks, cfg.mlp_hidden)
        if init is not None:
            with torch.no_grad():
                self.model.linear.weight.copy_(init["weight"])
                self.model.linear.bias.copy_(init["bias"])
        self.loss_fn = LOSSES[cfg.loss]
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
        self.log("val_loss", self._loss(batch), on_epoch=True, batch_size=len(batch["x"]), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)

    def train_dataloader(self):
        return make_loader(self.train_source, self.cfg.batch_size, self.cfg.loader_workers, self.seed, True,
                           self.trainer.global_rank, self.trainer.world_size,
                           epoch_source=lambda: self.trainer.fit_loop.epoch_progress.current.processed)

    def val_dataloader(self):
        return make_loader(self.valid_source, self.cfg.batch_size, self.cfg.loader_workers, self.seed, False,
                           self.trainer.global_rank, self.trainer.world_size)


class EpochLog(L.Callback):
    """One row per finished epoch in ``logs/metrics.csv``, appended before the epoch's checkpoint
    is written. A resumed run keeps the rows of the epochs before the resume point (and drops
    rows of an epoch that is about to be redone)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_train_start(self, trainer, module) -> None:
        if trainer.global_rank != 0:
            return
        rows = read_epoch_log(self.path)
        kept = [r for r in rows if int(r["epoch"]) < trainer.current_epoch]
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


def resume_checkpoint(folder: HeadFolder) -> Path | None:
    """The checkpoint to resume from: last.ckpt when it loads, else best.ckpt (an earlier epoch),
    else none; a damaged checkpoint is named in a warning and set aside."""
    for name in ("last.ckpt", "best.ckpt"):
        path = folder.checkpoints / name
        if not path.is_file():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            if "state_dict" in state and "epoch" in state:
                return path
            raise ValueError("not a training checkpoint")
        except Exception as err:  # torch raises many types for damaged zip/pickle data
            damaged = path.with_name(path.name + ".damaged")
            path.replace(damaged)
            log.warning("train: %s is damaged (%s: %s); moved to %s, trying an earlier checkpoint",
                        path, type(err).__name__, str(err)[:80], damaged.name)
    return None
