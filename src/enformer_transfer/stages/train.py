"""Stage train: a head on the stored embeddings -> RUN_DIR/heads/NAME (``heads.train``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..heads.data import run_source
from ..heads.train import train_and_save
from ..results import Run
from ..rundir.config import RunConfig, as_config
from ..rundir.layout import HeadFolder
from ..rundir.stage import run_stage
from ..targets.table import select_tracks


def train_head(config: RunConfig | Path | str, force: bool = False, progress: bool = True) -> Path:
    """Train (or resume, or skip) head ``config.train.head`` of the run; return its folder."""
    config = as_config(config)
    cfg = config.train
    run = Run.of(config, "train")
    splits = run.embedded_splits
    if "train" not in splits:
        raise InputError(f"train: {run.path} has no train embeddings (embedded: {', '.join(splits)})")
    tracks = run.tracks
    track_index = select_tracks(tracks, cfg.tracks_where)
    train = run_source(run, "train", track_index)
    valid = run_source(run, "valid", track_index) if "valid" in splits else None
    track_ids = list(tracks["identifier"].iloc[track_index])

    def build(work: Path, state: str) -> dict:
        return train_and_save(HeadFolder(work), config, run, track_index, train, valid, progress)

    return run_stage(run.layout.head(cfg.head).path, train_key(config, run, track_ids), build, config, ("train",),
                     force=force, what=f"train {cfg.head!r}", run=run)


def train_key(config: RunConfig, run, track_ids: list[str]) -> dict:
    cfg = config.train.model_dump(mode="json", exclude={"loader_workers", "head"})
    return {"embeddings": run.embeddings_record.digest, "train": cfg, "tracks": track_ids, "seed": config.seed}
