"""The contract every stage follows (docs/stages.md).

A stage's entry function validates all its inputs first (an ``InputError`` before any work),
computes its key (its settings and the fingerprints or stage digests of everything it reads),
and hands ``run_stage`` a ``build(work, state)`` function. ``run_stage`` then:

- skips the stage when its folder is finished with the same key ("up to date"),
- refuses a finished folder built from another key (``--force`` rebuilds), or, for views
  such as the report, rebuilds it,
- resumes an interrupted ``NAME.partial`` build of the same key, or starts a fresh one,
- runs ``build`` in the partial folder; ``build`` returns the stage's stats,
- writes ``stage.json`` (key, config, stats, tool version, times) and renames the partial
  folder into place, so nothing looks complete before it is,
- holds an exclusive lock on the stage folder while it runs (a second process running the
  same stage on the same run is refused, naming the holder),
- records the stage's config sections in ``RUN_DIR/config.toml``, only after it succeeded
  (the file keeps, per section, the settings of the latest successful command).

In a distributed job, only the primary process checks and finishes the stage; the others build
their share in the same partial folder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from ..devices import Dist, barrier, broadcast, is_primary_process
from ..fs import disk_errors, exclusive_lock, write_text_atomic
from .layout import lock_of
from .provenance import StageDir

if TYPE_CHECKING:
    from .config import RunConfig
    from .run import RunDirectory

log = logging.getLogger("enformer_transfer")

Build = Callable[[Path, str], dict]


def run_stage(folder: Path, key: dict, build: Build, config: RunConfig, sections: tuple[str, ...], *,
              force: bool = False, what: str | None = None, on_stale: str = "refuse",
              dist: Dist | None = None, run: RunDirectory | None = None) -> Path:
    """Skip, resume, refuse or build the stage folder ``folder``; return it when finished.
    ``sections``: the config sections the stage's settings come from. ``run``: the ``Run`` the
    stage reads its upstream stages through; they are locked against rebuilding while it runs
    and recorded (with their digests) in its ``stage.json``, so later readers can tell when
    an upstream changed under it."""
    started = time.time()
    stage = StageDir(folder, key)
    what = what or stage.name
    dist = dist or Dist()
    primary = dist.primary if dist.active else is_primary_process()
    if not primary and not dist.active:  # a process started by a launcher inside the primary's build
        build(stage.partial, "resume")
        return stage.final
    stage.final.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(lock_of(stage.final), f"{what} ({stage.final})") if primary else nullcontext(), \
            _reading(run, stage.final, primary):
        state = stage.check(force, on_stale) if primary else None
        state = broadcast(state, dist)
        if state == "done":
            log.info("%s: up to date in %s (use --force to redo)", what, stage.final)
            return stage.final
        if primary:
            if state == "resume":
                log.info("%s: resuming the interrupted run in %s", what, stage.partial)
            stage.start()
        barrier(dist)
        with disk_errors(stage.partial):
            stats = build(stage.partial, state)
            barrier(dist)
            if primary:
                stage.finish(config.model_dump(mode="json"), stats, started,
                             run.consumed(stage.final) if run is not None else None)
                write_config_snapshot(config, sections)
        barrier(dist)
    return stage.final


@contextmanager
def _reading(run: RunDirectory | None, own: Path, primary: bool) -> Iterator[None]:
    """Hold shared locks on what ``run`` has read (and reads next) while the stage runs."""
    if run is None or not primary:
        yield
        return
    try:
        run.hold_reading_locks(own)
        yield
    finally:
        run.release_reading_locks()


def write_config_snapshot(config: RunConfig, sections: tuple[str, ...]) -> None:
    """RUN_DIR/config.toml: ``sections`` (and the seed) of ``config`` merged into the file, so
    that it holds, per section, the settings of the latest successful command."""
    from .config import config_to_toml, load_config
    from .layout import RunLayout

    layout = RunLayout(config.run_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    if layout.config.is_file():
        merged = load_config(layout.config)
        for name in sections:
            setattr(merged, name, getattr(config, name).model_copy(deep=True))
        merged.seed, merged.run_dir = config.seed, config.run_dir
        config = merged
    write_text_atomic(layout.config, config_to_toml(config))
