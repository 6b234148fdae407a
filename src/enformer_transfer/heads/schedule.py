"""How a head is trained, resolved from the data's size: batch, optimizer steps, learning rate
with warm-up and decay, what picks the kept checkpoint, when to stop.

Two recipes:

- ``auto`` (the default): enough optimizer steps at every data size. An epoch has at least 16
  steps (batch = train windows / 16, at most 64 windows); training runs for
  max(2,000 steps, 20 epochs); Adam at a peak learning rate of 1e-3 with a 5 % linear warm-up and
  a cosine decay to 1 % of the peak; the linear head starts from the better on valid of two
  closed-form ridge starts (heads/train.py ``ridge_starts``); validation mean Pearson (the metric
  users read) picks the kept checkpoint, or a start training did not beat, and stops training after
  a fifth of the validations without improvement. ``steps`` given: exactly that many optimizer
  steps, the decay ending at the last.
- ``study``: the reference study's recipe exactly (reference.md section 5): Adam 1e-4 constant,
  64 windows a batch, 20 epochs, random initialisation, early stopping and the kept checkpoint on
  the validation loss (min_delta 0.001, patience 2).

Any setting given explicitly (``--lr``, ``--batch-size``, ...) overrides the recipe's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..rundir.config import TrainConfig

MIN_STEPS = 2000
STEPS_PER_EPOCH = 16
WARMUP = 0.05
FINAL_LR = 0.01  # fraction of the peak at the end of the cosine decay
FEW_STEPS = 300  # below this many optimizer steps a head is warned about


@dataclass(frozen=True)
class Schedule:
    recipe: str
    batch_size: int
    max_epochs: int
    steps: int  # optimizer steps run, exactly (the last epoch may end early)
    steps_per_epoch: int
    lr: float
    warmup_steps: int
    decay: str  # "cosine" or "constant"
    select: str  # "pearson" (max) or "loss" (min): the kept checkpoint and early stopping
    patience: int  # validations without improvement before stopping
    min_delta: float
    init: str  # "ridge" or "random"
    val_every: int  # epochs between validations

    def as_dict(self) -> dict:
        return asdict(self)

    def lr_factor(self, step: int) -> float:
        """Learning rate at optimizer step ``step`` as a fraction of the peak."""
        if self.decay == "constant":
            return 1.0
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps))
        return FINAL_LR + (1 - FINAL_LR) * 0.5 * (1 + math.cos(math.pi * progress))


def resolve_schedule(cfg: TrainConfig, n_windows: int, world: int = 1) -> Schedule:
    """The schedule of ``cfg`` for ``n_windows`` train windows over ``world`` processes."""
    def given(name, default):
        value = getattr(cfg, name)
        return default if value is None else value

    linear = cfg.model == "linear"
    if cfg.recipe == "study":
        batch = given("batch_size", 64)
        per_epoch = max(1, math.ceil(n_windows / (batch * world)))
        steps, epochs = steps_and_epochs(cfg.steps, given("max_epochs", 20), per_epoch)
        init = "random" if cfg.init == "auto" else cfg.init
        select = "loss" if cfg.select == "auto" else cfg.select
        return Schedule("study", batch, epochs, steps, per_epoch, given("lr", 1e-4), 0, "constant",
                        select, given("patience", 2), given("min_delta", 0.001), init, 1)
    batch = given("batch_size", max(1, min(64, n_windows // (STEPS_PER_EPOCH * world))))
    per_epoch = max(1, math.ceil(n_windows / (batch * world)))
    if cfg.max_epochs is None and cfg.steps is None:
        steps, epochs = steps_and_epochs(max(MIN_STEPS, 20 * per_epoch), None, per_epoch)
    else:
        steps, epochs = steps_and_epochs(cfg.steps, cfg.max_epochs, per_epoch)
    val_every = max(1, epochs // 50)  # about 50 validations over the run
    patience = given("patience", max(5, (epochs // val_every) // 5))
    init = ("ridge" if linear else "random") if cfg.init == "auto" else cfg.init
    select = "pearson" if cfg.select == "auto" else cfg.select
    return Schedule("auto", batch, epochs, steps, per_epoch, given("lr", 1e-3), max(1, int(WARMUP * steps)),
                    "cosine", select, patience, given("min_delta", 0.0), init, val_every)


def steps_and_epochs(steps: int | None, epochs: int | None, per_epoch: int) -> tuple[int, int]:
    """Optimizer steps and epochs of a run: ``steps`` given wins (exactly that many steps, the last
    epoch cut short, enough epochs to hold them); else whole epochs."""
    if steps is not None:
        return int(steps), max(1, math.ceil(steps / per_epoch))
    return int(epochs) * per_epoch, int(epochs)


def exact_steps(schedule: Schedule) -> tuple[dict, list]:
    """Trainer settings and callbacks that run exactly ``schedule.steps`` optimizer steps and
    validate after the last one (Lightning stops at ``max_steps`` mid-epoch without validating, and
    skips the last epoch's validation when it is not a multiple of ``val_every``): what a checkpoint
    is chosen from always includes the final weights, the ones the whole schedule trained.

    The stop is a callback's, not Lightning's ``max_steps``: with ``max_steps`` set, Lightning
    resumes "iteration-based" and treats a checkpoint written at the end of an epoch as one inside
    it, so a resumed run loses that epoch from the epoch count and stops an epoch early."""
    from lightning.pytorch.callbacks import Callback

    class _ValidateLastStep(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_step >= schedule.steps:
                trainer.check_val_every_n_epoch = 1  # read by the loop right after this hook
                trainer.should_stop = True  # the epoch ends here; validation runs when a stop is requested

    settings = {"max_epochs": schedule.max_epochs, "limit_train_batches": min(schedule.steps_per_epoch, schedule.steps)}
    return settings, [_ValidateLastStep()]
