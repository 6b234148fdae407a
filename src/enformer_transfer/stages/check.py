"""``check RUN``: verify every stage of a run directory and report what is stale or damaged.

Walks the provenance chain (every stage's recorded upstream digests against the current
upstream), every file each stage wrote against the digests in its ``stage.json``, every chunk of
every store against its recorded checksums, the files earlier stages recorded by fingerprint
(genome, BigWigs, tables, backbone weights) and every head's weights, and says per problem
which command rebuilds it. Nothing is changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import EnformerTransferError, IntegrityError, StaleStageError
from ..progress import Progress
from ..results import Run
from ..rundir import store
from ..rundir.layout import PARTIAL, RunLayout, StageFolder, finished, partial_of
from ..rundir.provenance import StageRecord, fingerprint_problem
from ..rundir.run import read_checksums


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
    counts = {"stages": 0, "chunks": 0, "files": 0, "heads": 0, "stale": 0}
    for folder in stage_folders(run.layout):
        rel = folder.path.relative_to(run.path).as_posix()
        fix = run.rebuild_hint(rel)
        if not finished(folder.path):
            if partial_of(folder.path).exists() or folder.path.exists():
                problems.append(Problem(str(folder.path), "unfinished (no stage.json)", "rerun its command to resume it"))
            continue
        try:
            record = run.verified_record(folder.path)
        except StaleStageError as err:
            counts["stale"] += 1
            problems.append(Problem(rel, "stale: " + _reason(err), fix))
            continue
        except EnformerTransferError as err:
            problems.append(Problem(rel, "damaged: " + _reason(err), fix))
            continue
        counts["stages"] += 1
        counts["files"] += len(record.outputs)
        problems += _check_inputs(record, fix, counts)
        problems += _check_stores(folder, fix, counts, progress)
    for name in _names(run.layout.heads):
        if not finished(run.layout.head(name).path) or any(p.where == f"heads/{name}" for p in problems):
            continue
        try:
            run.head(name)
            counts["heads"] += 1
        except EnformerTransferError as err:
            problems.append(Problem(f"heads/{name}", _reason(err), run.rebuild_hint(f"heads/{name}")))
        except Exception as err:  # a damaged weights file raises whatever its reader meets
            problems.append(Problem(f"heads/{name}", f"unreadable ({type(err).__name__}: {err})",
                                    run.rebuild_hint(f"heads/{name}")))
    return problems, counts


def _reason(err: Exception) -> str:
    """An error's message without the rebuild advice (the problem line gives it once)."""
    text = str(err)
    for cut in ("; rebuild it:", "; rebuild the stage"):
        text = text.partition(cut)[0]
    return text


def stage_folders(layout: RunLayout) -> list[StageFolder]:
    """Every stage folder of a run directory, upstream first."""
    named = [(layout.heads, layout.head), (layout.evaluations, layout.evaluation),
             (layout.predictions_dir, layout.predictions), (layout.weights_dir, layout.weights),
             (layout.dars, layout.dar), (layout.variants_dir, layout.variants),
             (layout.called_dar_sets, layout.called_dars), (layout.contribution_sets, layout.contributions),
             (layout.motif_sets, layout.motifs)]
    folders: list[StageFolder] = [layout.dataset, layout.embeddings]
    for parent, folder_of in named:
        folders += [folder_of(name) for name in _names(parent)]
    return folders + [layout.report]


def _names(parent: Path) -> list[str]:
    if not parent.is_dir():
        return []
    names = {p.name.removesuffix(PARTIAL) for p in parent.iterdir() if p.is_dir()}
    return sorted(n for n in names if not n.startswith("."))


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
        problem = fingerprint_problem(fingerprint, "an input file")
        if problem:  # the reason once, then the fix (verify_fingerprint's message would repeat it)
            problems.append(Problem(fingerprint["path"], problem, f"restore it or {fix}"))
    return problems


def _check_stores(folder: StageFolder, fix: str, counts: dict, progress: bool) -> list[Problem]:
    """Every chunk of every array with recorded checksums, read and compared."""
    problems = []
    try:
        checksums = read_checksums(folder)
    except IntegrityError as err:
        return [Problem(str(folder.checksums), _reason(err), fix)]
    for meta in sorted(folder.path.glob("*.zarr/*/zarr.json")):
        name = f"{meta.parent.parent.name}/{meta.parent.name}"
        if name not in checksums:
            problems.append(Problem(f"{folder.path}/{name}", "no chunk checksums recorded (a missing chunk would "
                                    "read as zeros)", fix))
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
               f"files, {counts['heads']} heads checked; {counts['stale']} stale")
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        raise IntegrityError(f"{len(problems)} problem(s) in {run_dir}:\n{lines}\n{summary}")
    return [summary + ": all intact"]

