"""Stage ``backbone pretrain``: a small Enformer trained from random weights on a run's tracks,
written as a backbone folder (``finetune.train``)."""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import InputError
from ..finetune.train import pretrain_and_save
from ..results import Run
from ..rundir.config import RunConfig, as_config
from ..rundir.stage import run_stage
from ..targets.table import select_tracks


def pretrain_backbone(config: RunConfig | Path | str, force: bool = False, progress: bool = True) -> Path:
    """``backbone pretrain``: a small Enformer trained from random weights on a run's tracks,
    written as a backbone folder (default RUN_DIR/pretrained-backbone) whose human head predicts them."""
    config = as_config(config)
    p = config.pretrain
    run = Run.of(config, "backbone pretrain", " (--run RUN_DIR)")
    track_index = select_tracks(run.tracks, p.tracks_where)
    g = run.geometry
    pool = int(round(math.log2(g.bin_size)))
    if 2**pool != g.bin_size:
        raise InputError(f"backbone pretrain: bin_size {g.bin_size} is not a power of two")
    if (p.dim // p.heads) % 6 or p.dim % p.heads or p.dim % 4:
        raise InputError(f"backbone pretrain: dim / heads must be a whole multiple of 6 (dim {p.dim}, heads {p.heads})")
    folder = p.out or run.layout.pretrained_backbone.path
    key = {"dataset": run.dataset_record.digest, "tracks": list(run.tracks["identifier"].iloc[track_index]),
           "pretrain": p.model_dump(mode="json", exclude={"out", "loader_workers", "accelerator", "devices"}),
           "seed": config.seed}

    def build(work: Path, state: str) -> dict:
        return pretrain_and_save(work, config, run, track_index, folder, progress)

    return run_stage(folder, key, build, config, ("pretrain",), force=force, what="backbone pretrain", run=run)
