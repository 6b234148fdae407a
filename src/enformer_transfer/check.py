"""``check RUN``: verify every store and record of a run directory and report what is damaged.

Reads every chunk of every store that has recorded checksums (targets, masks, embeddings,
backbone outputs, predictions), the files earlier stages recorded by fingerprint (genome,
BigWigs, tables, backbone weights), every head's weights, and says per problem which stage
to rebuild. Nothing is changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .data import store
from .errors import EnformerTransferError, IntegrityError
from .layout import StageFolder, finished
from .progress import Progress
from .provenance import StageRecord, verify_fingerprint
from .run import Run, read_checksums


@dataclass
class Problem:
    where: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}; {self.fix}"


def check_run(run_dir: Path | str, progress: bool = True) -> tuple[list[Problem], dict]:
    """Every problem found, and counts of what was checked."""
    run = Run(run_dir)
    problems: list[Problem] = []
    counts = {"stages": 0, "chunks": 0, "files": 0, "heads": 0}
    layout = run.layout
    stages = [layout.dataset, layout.embeddings] + [layout.head(h) for h in _names(layout.heads)] \
        + [layout.evaluation(h) for h in _names(layout.evaluations)]
    fixes = {layout.dataset.path: f"rebuild: enformer-transfer dataset --out {run.path} --force",
             layout.embeddings.path: f"rebuild: enformer-transfer embed {run.path} --force"}
    for folder in stages:
        if not folder.path.exists():
            continue
        fix = fixes.get(folder.path, f"redo the stage with --force ({folder.path.relative_to(run.path)})")
        if not finished(folder.path):
            problems.append(Problem(str(folder.path), "unfinished (no stage.json)", "rerun its command to resume it"))
            continue
        try:
            record = StageRecord.read(folder.path)
        except (OSError, ValueError, TypeError) as err:
            problems.append(Problem(str(folder.record), f"stage record unreadable ({err})", fix))
            continue
        counts["stages"] += 1
        problems += _check_inputs(record, fix, counts)
        problems += _check_stores(folder, fix, counts, progress)
    for name in _names(layout.heads):
        try:
            run.head(name)
            counts["heads"] += 1
        except EnformerTransferError as err:
            problems.append(Problem(str(layout.head(name).path), str(err),
                                    f"retrain: enformer-transfer train {run.path} --head {name} --force"))
        except Exception as err:  # a damaged head.pt raises whatever torch.load meets
            problems.append(Problem(str(layout.head(name).model), f"unreadable ({type(err).__name__}: {err})",
                                    f"retrain: enformer-transfer train {run.path} --head {name} --force"))
    return problems, counts


def _names(parent: Path) -> list[str]:
    if not parent.is_dir():
        return []
    return sorted(p.name for p in parent.iterdir() if p.is_dir() and not p.name.endswith(".partial"))


def _check_inputs(record: StageRecord, fix: str, counts: dict) -> list[Problem]:
    """Files a stage recorded by fingerprint: still there, same content."""
    problems = []
    recorded = []
    inputs = record.key.get("inputs", {})
    for value in inputs.values() if isinstance(inputs, dict) else []:
        recorded += value if isinstance(value, list) else [value]
    recorded += record.key.get("backbone", {}).get("files", []) if isinstance(record.key.get("backbone"), dict) else []
    for fingerprint in recorded:
        if not isinstance(fingerprint, dict) or "path" not in fingerprint:
            continue
        counts["files"] += 1
        try:
            verify_fingerprint(fingerprint, "an input file", fix)
        except EnformerTransferError as err:
            problems.append(Problem(fingerprint["path"], str(err).partition(": ")[2], fix))
    return problems


def _check_stores(folder: StageFolder, fix: str, counts: dict, progress: bool) -> list[Problem]:
    """Every chunk of every array with recorded checksums, read and compared."""
    problems = []
    checksums = read_checksums(folder)
    bar = Progress(sum(len(v) for v in checksums.values()), f"check {folder.path.name}", "chunks",
                   enabled=progress and bool(checksums))
    for name, sums in checksums.items():
        store_name, _, key = name.partition("/")
        path = folder.path / store_name
        try:
            array = store.StoredArray(path, key, tuple(sums), f"{path}/{key}", fix).open()
        except Exception as err:
            problems.append(Problem(f"{path}/{key}", f"cannot be opened ({err})", fix))
            continue
        damaged = []
        for c in range(len(sums)):
            try:
                array.chunk(c)
            except IntegrityError:
                damaged.append(c)
            counts["chunks"] += 1
            bar.update(1)
        if damaged:
            rows = array.rows
            windows = [f"{c * rows}" if rows == 1 else f"{c * rows}-{min(len(array), (c + 1) * rows) - 1}"
                       for c in damaged]
            problems.append(Problem(f"{path}/{key}", f"{len(damaged)} damaged or missing chunk(s): windows "
                                    f"{', '.join(windows[:10])}{' ...' if len(windows) > 10 else ''}", fix))
    return problems


def check_command(run_dir: Path | str, progress: bool = True) -> list[str]:
    """The ``check`` command: lines to print; an IntegrityError when anything is damaged."""
    problems, counts = check_run(run_dir, progress)
    summary = (f"check: {counts['stages']} stages, {counts['chunks']} store chunks, {counts['files']} recorded "
               f"input files, {counts['heads']} heads checked")
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        raise IntegrityError(f"{len(problems)} problem(s) in {run_dir}:\n{lines}\n{summary}")
    return [summary + ": all intact"]

