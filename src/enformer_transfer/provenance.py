"""Stage records: config, input fingerprints and tool version next to every result."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import InputError, StaleStageError

STAGE_RECORD = "stage.json"
HASH_LIMIT = 16 * 1024 * 1024  # files up to this size are hashed; larger ones use size + mtime


def safe_filename(name: str) -> str:
    """A track identifier as a file name: letters, digits, '-', '_' and '.' kept, others '_'."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Path, size and either a content hash (small files) or the modification time."""
    path = Path(path).resolve()
    stat = path.stat()
    record: dict[str, Any] = {"path": str(path), "size": stat.st_size}
    if stat.st_size <= HASH_LIMIT:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        record["sha256"] = digest.hexdigest()
    else:
        record["mtime_ns"] = stat.st_mtime_ns
    return record


def fingerprints(paths: Iterable[Path]) -> list[dict[str, Any]]:
    return [file_fingerprint(p) for p in paths]


def digest_of(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON under a temporary name, then rename: readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    with open(path) as handle:
        return json.load(handle)


class StageDir:
    """A stage's output folder: built in ``NAME.partial`` and renamed to ``NAME`` when complete.

    ``key`` is everything that determines the stage's result (config section and input
    fingerprints). A finished stage with the same key is skipped; with a different key it is
    refused unless ``force``. A partial build with the same key is resumed.
    """

    def __init__(self, run_dir: Path, name: str, key: dict[str, Any]):
        self.run_dir = Path(run_dir)
        self.name = name
        self.key = key
        self.final = self.run_dir / name
        self.partial = self.run_dir / f"{name}.partial"

    @property
    def key_digest(self) -> str:
        return digest_of(self.key)

    def is_done(self) -> bool:
        return (self.final / STAGE_RECORD).is_file()

    def check(self, force: bool) -> str:
        """Return 'done' (skip), 'resume' or 'fresh'; raise StaleStageError on a stale result."""
        if force:
            for path in (self.final, self.partial):
                if path.exists():
                    shutil.rmtree(path)
            return "fresh"
        if self.is_done():
            record = read_json(self.final / STAGE_RECORD)
            if record.get("key_digest") == self.key_digest:
                return "done"
            raise StaleStageError(
                f"{self.final} was built from different inputs or settings "
                f"({describe_difference(record.get('key', {}), self.key)}); "
                "rerun with --force to rebuild it"
            )
        if self.final.exists():
            raise StaleStageError(
                f"{self.final} exists but has no {STAGE_RECORD} (not made by this tool, or "
                "damaged); remove it or rerun with --force"
            )
        marker = self.partial / "key.json"
        if marker.is_file():
            if read_json(marker).get("key_digest") == self.key_digest:
                return "resume"
            shutil.rmtree(self.partial)  # an interrupted build of other inputs: nothing to reuse
        elif self.partial.exists():
            shutil.rmtree(self.partial)
        return "fresh"

    def start(self) -> Path:
        self.partial.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.partial / "key.json", {"key_digest": self.key_digest})
        return self.partial

    def finish(self, config: dict[str, Any], stats: dict[str, Any], started: float) -> Path:
        record = {
            "stage": self.name,
            "tool_version": __version__,
            "key_digest": self.key_digest,
            "key": self.key,
            "config": config,
            "stats": stats,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": round(time.time() - started, 3),
        }
        write_json_atomic(self.partial / STAGE_RECORD, record)
        (self.partial / "key.json").unlink(missing_ok=True)
        os.replace(self.partial, self.final)
        return self.final


def describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Name the first keys that differ between two stage keys, for the stale-stage message."""
    diffs: list[str] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if len(diffs) >= 3:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{where}.{k}" if where else k)
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{where}[{i}]")
        elif a != b:
            diffs.append(f"{where} changed")

    walk(old, new, "")
    return ", ".join(diffs) or "record differs"


def check_free_space(path: Path, needed: int, what: str, limit: int | None = None) -> None:
    """Fail early, with the numbers, when the disk under ``path`` cannot hold ``needed`` bytes."""
    path = Path(path)
    probe = path
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if limit is not None:
        free = min(free, limit)
    if needed > free:
        raise InputError(
            f"{path}: not enough disk space for {what}: needs up to {needed / 1e9:.3f} GB, "
            f"{free / 1e9:.3f} GB free; free space or choose another run directory"
        )


def write_config_snapshot(config) -> None:
    """RUN_DIR/config.toml: the merged config of the latest stage run (after its inputs validated)."""
    from .config import config_to_toml

    config.run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(config.run_dir / "config.toml", config_to_toml(config))
