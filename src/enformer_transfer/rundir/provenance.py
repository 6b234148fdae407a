"""Provenance next to every result: input fingerprints (content hashes), stage records, and the
rules that decide whether a stage folder is done, resumable or stale.

A fingerprint is a file's resolved path, size and SHA-256. Hashing a 3-GB genome takes seconds,
so hashes are cached per file by (device, inode, size, mtime, ctime): any edit changes the
ctime, so a cached hash is never trusted for a changed file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import InputError, IntegrityError, StaleStageError
from ..fs import read_json, write_json_atomic
from .layout import KEY_MARKER, PROGRESS, STAGE_RECORD, partial_of

log = logging.getLogger("enformer_transfer")


# --- fingerprints ------------------------------------------------------------------------

def _cache_dir() -> Path | None:
    root = os.environ.get("ENFORMER_TRANSFER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "enformer-transfer")
    return Path(root) / "sha256"


def _stat_key(stat: os.stat_result) -> list[int]:
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def sha256_of(path: Path | str) -> str:
    """SHA-256 of a file's content, cached by its stat (recomputed after any change)."""
    path = Path(path).resolve()
    stat = path.stat()
    cache = _cache_dir()
    entry = cache / (hashlib.sha1(str(path).encode()).hexdigest() + ".json") if cache else None
    if entry is not None and entry.is_file():
        try:
            cached = read_json(entry)
            if cached.get("stat") == _stat_key(stat):
                return cached["sha256"]
        except (OSError, ValueError, KeyError):
            pass
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    value = digest.hexdigest()
    if entry is not None and path.stat().st_ctime_ns == stat.st_ctime_ns:
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(entry, {"path": str(path), "stat": _stat_key(stat), "sha256": value})
        except OSError:
            pass  # a read-only cache only costs time
    return value


def check_once(path: Path | str, name: str, check) -> None:
    """Run ``check(path)`` unless this very file content passed it before (remembered by the
    file's stat, like its hash; any edit runs the check again)."""
    path = Path(path).resolve()
    stat = path.stat()
    entry = _cache_dir() / (hashlib.sha1(f"{path}|{name}".encode()).hexdigest() + ".json")
    try:
        if read_json(entry).get("stat") == _stat_key(stat):
            return
    except (OSError, ValueError):
        pass
    check(path)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(entry, {"path": str(path), "check": name, "stat": _stat_key(stat)})
    except OSError:
        pass


def file_fingerprint(path: Path | str) -> dict[str, Any]:
    """{'path', 'size', 'sha256'} of a file."""
    path = Path(path).resolve()
    return {"path": str(path), "size": path.stat().st_size, "sha256": sha256_of(path)}


def fingerprint_problem(recorded: dict[str, Any], what: str) -> str | None:
    """What is wrong with a file a stage recorded (gone, or other content), or None."""
    path = Path(recorded["path"])
    if not path.is_file():
        return f"{what} recorded by an earlier stage is gone"
    if path.stat().st_size != recorded["size"] or ("sha256" in recorded and sha256_of(path) != recorded["sha256"]):
        return f"{what} changed since an earlier stage recorded it (content differs)"
    return None


def verify_fingerprint(recorded: dict[str, Any], what: str, fix: str) -> Path:
    """Refuse a file that is gone or whose content differs from what a stage recorded."""
    problem = fingerprint_problem(recorded, what)
    if problem:
        raise InputError(f"{recorded['path']}: {problem}; restore it or {fix}")
    return Path(recorded["path"])


def digest_of(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# --- stage records -----------------------------------------------------------------------

@dataclass
class StageRecord:
    """A finished stage's ``stage.json``: what it was built from, with which settings, and facts
    about the build. Read by ``Run``; other modules use ``Run``'s typed accessors."""

    stage: str
    key_digest: str
    key: dict
    config: dict
    stats: dict = field(default_factory=dict)
    tool_version: str = ""
    started: str = ""
    finished: str = ""
    seconds: float = 0.0
    digest: str = ""  # what later stages record of this one: the key and every output file's content
    outputs: dict = field(default_factory=dict)  # relative path -> {size, sha256} of every file written
    upstream: dict = field(default_factory=dict)  # run-relative stage folder -> digest, of what it read

    @classmethod
    def read(cls, folder: Path) -> StageRecord:
        """The record of a stage folder; an unreadable one is an IntegrityError naming it."""
        path = Path(folder) / STAGE_RECORD
        try:
            data = read_json(path)
            known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
            return cls(**known)
        except (ValueError, TypeError, UnicodeDecodeError) as err:
            raise IntegrityError(f"{path}: stage record damaged ({type(err).__name__}); rebuild the stage "
                                 "with --force") from None

    def verify_outputs(self, folder: Path, fix: str) -> None:
        """Every file the stage wrote is there with the content it had when the stage finished
        (store chunks are checked by their own checksums as they are read)."""
        folder = Path(folder)
        if not self.digest:
            raise StaleStageError(f"{folder} was made by an enformer-transfer without output digests "
                                  f"(tool {self.tool_version or 'unknown'}); {fix}")
        for name, recorded in self.outputs.items():
            path = folder / name
            if not path.is_file():
                raise IntegrityError(f"{path}: missing (written by the {self.stage!r} stage, listed in its "
                                     f"{STAGE_RECORD}); {fix}")
            if path.stat().st_size != recorded["size"] or sha256_of(path) != recorded["sha256"]:
                raise IntegrityError(f"{path}: changed since the {self.stage!r} stage wrote it (content "
                                     f"differs from its {STAGE_RECORD}); {fix}")
        if record_digest(self.__dict__) != self.digest:
            raise IntegrityError(f"{folder / STAGE_RECORD}: edited by hand (its digest does not match its "
                                 f"contents); {fix}")


def record_digest(record: dict[str, Any]) -> str:
    """The digest of a stage record: its key, settings, facts, outputs and upstream (not its
    times), so no part of ``stage.json`` can be edited unnoticed."""
    return digest_of({k: record.get(k) for k in ("key_digest", "config", "stats", "outputs", "upstream")})


def output_digests(folder: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {size, sha256}} of every file a stage wrote into ``folder``. Inside a
    ``.zarr`` store only the metadata (``zarr.json``: shape, dtype, chunking, fill value) is
    hashed: the chunks are covered by the checksums the stage recorded as it wrote them
    (``checksums.json``, hashed here), and hashing 200 GB of embeddings would take an hour."""
    folder = Path(folder)
    out: dict[str, dict[str, Any]] = {}
    for root, dirs, files in os.walk(folder):
        rel_root = Path(root).relative_to(folder)
        in_store = any(part.endswith(".zarr") for part in rel_root.parts)
        dirs[:] = sorted(d for d in dirs if not (rel_root == Path(".") and d == PROGRESS))
        for name in sorted(files):
            rel = (rel_root / name).as_posix()
            if rel in (STAGE_RECORD, KEY_MARKER) or (in_store and name != "zarr.json"):
                continue
            path = Path(root) / name
            out[rel] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
    return out


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


class StageDir:
    """A stage's output folder: built in ``NAME.partial`` and renamed to ``NAME`` when complete.

    ``key`` is everything that determines the stage's result (settings and input fingerprints).
    A finished stage with the same key is done; with a different key it is stale. A partial
    build with the same key is resumed; one with another key is discarded.
    """

    def __init__(self, folder: Path, key: dict[str, Any]):
        self.final = Path(folder)
        self.partial = partial_of(self.final)
        self.name = self.final.name
        self.key = key

    @property
    def key_digest(self) -> str:
        return digest_of(self.key)

    def check(self, force: bool = False, on_stale: str = "refuse") -> str:
        """'done' (skip), 'resume' or 'fresh'; a stale result raises StaleStageError, or is
        removed and rebuilt when ``on_stale`` is 'rebuild'."""
        if force:
            self.discard()
            return "fresh"
        if (self.final / STAGE_RECORD).is_file():
            record = read_json(self.final / STAGE_RECORD)
            if record.get("key_digest") == self.key_digest:
                return "done"
            if on_stale != "rebuild":
                raise StaleStageError(
                    f"{self.final} was built from different inputs or settings "
                    f"({describe_difference(record.get('key', {}), self.key)}); rerun with --force to rebuild it"
                )
            self.discard()
            return "fresh"
        if self.final.exists():
            raise StaleStageError(
                f"{self.final} exists but has no {STAGE_RECORD} (not made by this tool, or its record was "
                "removed); the tool does not delete what it cannot prove it made: move it away or remove it yourself"
            )
        marker = self.partial / KEY_MARKER
        if marker.is_file() and read_json(marker).get("key_digest") == self.key_digest:
            return "resume"
        if self.partial.exists():  # an interrupted build of other inputs: nothing to reuse
            self._remove(self.partial)
        return "fresh"

    def state_without_changes(self) -> str:
        """'done', 'resume', 'stale' or 'fresh', without removing or refusing anything."""
        if (self.final / STAGE_RECORD).is_file():
            return "done" if read_json(self.final / STAGE_RECORD).get("key_digest") == self.key_digest else "stale"
        marker = self.partial / KEY_MARKER
        if marker.is_file() and read_json(marker).get("key_digest") == self.key_digest:
            return "resume"
        return "fresh"

    def discard(self) -> None:
        """Remove the stage's finished and partial folders: only folders this tool made (a stage
        record, or a partial build's key marker, inside), never a user's folder or a symlink."""
        self._remove(self.final)
        self._remove(self.partial)

    @staticmethod
    def _remove(path: Path) -> None:
        if not path.exists() and not path.is_symlink():
            return
        if path.is_symlink() or not path.is_dir() or not any((path / m).is_file() for m in (STAGE_RECORD, KEY_MARKER)):
            raise StaleStageError(f"{path} was not made by enformer-transfer (no {STAGE_RECORD} inside); it is "
                                  "left untouched: remove it yourself or choose another folder")
        shutil.rmtree(path)

    def start(self) -> Path:
        self.partial.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.partial / KEY_MARKER, {"key_digest": self.key_digest})
        return self.partial

    def finish(self, config: dict[str, Any], stats: dict[str, Any], started: float,
               upstream: dict[str, str] | None = None) -> Path:
        """Write ``stage.json`` (with the digest of every output and of each upstream stage it read)
        and rename the partial folder into place."""
        outputs = output_digests(self.partial)
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
            "outputs": outputs,
            "upstream": dict(sorted((upstream or {}).items())),
        }
        record["digest"] = record_digest(record)
        write_json_atomic(self.partial / STAGE_RECORD, record)
        (self.partial / KEY_MARKER).unlink(missing_ok=True)
        os.replace(self.partial, self.final)
        return self.final
