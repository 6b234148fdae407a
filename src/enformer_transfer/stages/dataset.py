"""Stage dataset: BigWigs + genome + windows -> binned targets in RUN_DIR/dataset (``data.build``)."""

from __future__ import annotations

from pathlib import Path

from ..data.build import INPUT_FILES, DatasetPlan, build_dataset_folder, plan_dataset
from ..rundir.config import RunConfig, as_config
from ..rundir.layout import DatasetFolder, RunLayout
from ..rundir.provenance import file_fingerprint
from ..rundir.stage import run_stage


def build_dataset(config: RunConfig | Path | str, force: bool = False, progress: bool = True) -> Path:
    """Build (or resume, or skip) the dataset stage of ``config.run_dir``; return its folder."""
    config = as_config(config)
    plan = plan_dataset(config)
    folder = RunLayout(config.run_dir).dataset.path
    done = run_stage(folder, dataset_key(plan), lambda work, state: build_dataset_folder(plan, DatasetFolder(work), state, progress),
                     config, ("geometry", "dataset"), force=force, what="dataset")
    print(f"dataset: {len(plan.windows)} windows x {config.geometry.n_bins} bins x {len(plan.tracks)} tracks "
          f"({', '.join(f'{s} {len(plan.windows.split(s))}' for s in plan.windows.splits)}) -> {done}")
    return done


def dataset_key(plan: DatasetPlan) -> dict:
    """Everything the targets depend on: settings and the content of every input file."""
    cfg = plan.config
    ds = cfg.dataset
    settings = ds.model_dump(mode="json", exclude={"workers", "chunk_windows", "free_space_limit",
                                                   "allow_chrom_size_mismatch"} | set(INPUT_FILES))
    inputs = {name: file_fingerprint(getattr(ds, name)) for name in INPUT_FILES if getattr(ds, name) is not None}
    inputs["bigwigs"] = [file_fingerprint(f) for f in plan.tracks["file"]]
    return {
        "geometry": cfg.geometry.model_dump(mode="json"),
        "dataset": settings,
        "chunk_windows": ds.chunk_windows,
        "inputs": inputs,
    }
