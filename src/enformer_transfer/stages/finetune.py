"""Stage finetune: trunk + head trained end to end from sequence, starting from a trained linear
head -> RUN_DIR/heads/NAME (``finetune.train``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..finetune.adapt import parse_trainable
from ..finetune.train import finetune_and_save
from ..results import Run
from ..rundir.config import RunConfig, as_config
from ..rundir.stage import run_stage


def finetune(config: RunConfig | Path | str, force: bool = False, progress: bool = True) -> Path:
    """Fine-tune ``finetune.from_head`` with its trunk into RUN_DIR/heads/``finetune.head``."""
    config = as_config(config)
    f = config.finetune
    run = Run.of(config, "finetune")
    mode, _ = parse_trainable(f.trainable)
    frozen = run.head(f.from_head)
    if frozen.finetuned or frozen.metadata["model"] != "linear":
        raise InputError(f"finetune: start from a trained linear head (the linear probe); {f.from_head!r} is "
                         f"{'a fine-tuned model' if frozen.finetuned else 'a ' + frozen.metadata['model'] + ' head'}")
    for split in ("train", "valid"):
        if split not in run.splits:
            raise InputError(f"finetune: the dataset has no {split} split")
    track_index = frozen.check_compatible(run)
    settings = f.model_dump(mode="json", exclude={"head", "loader_workers", "accelerator", "devices", "num_nodes",
                                                  "strategy", "checkpointing"})
    key = {"from_head": run.head_record(f.from_head).digest, "dataset": run.dataset_record.digest,
           "backbone": run.embeddings_record.key["backbone"], "finetune": settings, "seed": config.seed}

    def build(work: Path, state: str) -> dict:
        return finetune_and_save(work, config, run, frozen, track_index, mode, progress)

    return run_stage(run.layout.head(f.head).path, key, build, config, ("finetune",), force=force,
                     what=f"finetune {f.head!r}", run=run)
