"""The targets table (Basenji format): one row per track, with its transform and metadata."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..errors import InputError, did_you_mean
from ..fs import atomic_path
from . import STUDY_CLIP, STUDY_SCALE, STUDY_SUM_STAT, SUM_STATS

log = logging.getLogger("enformer_transfer")


REQUIRED_COLUMNS = ["identifier", "file", "clip", "scale", "sum_stat", "description"]
STANDARD_COLUMNS = ["index", "identifier", "file", "clip", "clip_soft", "scale", "sum_stat", "description"]
STRANDS = ("+", "-", ".")
BIGWIG_MAGIC = (0x888FFC26).to_bytes(4, "little")


def track_name(file_name: str) -> str:
    """A track identifier from a BigWig file name or URL path: the name without .bw/.bigWig."""
    name = Path(file_name).name
    for suffix in (".bw", ".bigWig", ".bigwig"):
        name = name.removesuffix(suffix)
    return name


def is_bigwig(path: Path) -> bool:
    with open(path, "rb") as handle:
        magic = handle.read(4)
    return magic in (BIGWIG_MAGIC, BIGWIG_MAGIC[::-1])


def metadata_columns(tracks: pd.DataFrame) -> list[str]:
    """Columns beyond the Basenji standard ones (cell-type levels and the like)."""
    return [c for c in tracks.columns if c not in STANDARD_COLUMNS and c not in ("strand_pair", "strand")]


def grouping_columns(tracks: pd.DataFrame) -> list[str]:
    """Metadata columns that group tracks (cell-type levels): text columns with at least two
    distinct values and fewer distinct values than tracks (empty = not at that level)."""
    out = []
    for col in metadata_columns(tracks):
        values = tracks[col].astype(str).replace({"nan": "", "None": ""})
        values = values[values != ""]
        if values.empty or pd.api.types.is_numeric_dtype(tracks[col]):
            continue
        counts = values.value_counts()
        if 2 <= len(counts) < len(tracks):
            out.append(col)
    return out


def select_tracks(tracks: pd.DataFrame, where: str | None) -> np.ndarray:
    """Positions of the tracks matching a pandas query (all tracks when ``where`` is None)."""
    if not where:
        return np.arange(len(tracks))
    try:
        chosen = tracks.reset_index(drop=True).query(where)
    except Exception as err:
        unknown = re.search(r"name '(\w+)' is not defined", str(err))
        hint = did_you_mean(unknown.group(1), tracks.columns) if unknown else ""
        raise InputError(
            f"--tracks-where {where!r} is not a valid query on the targets table{hint} "
            f"({type(err).__name__}: {err}); columns: {', '.join(tracks.columns)}"
        ) from None
    if chosen.empty:
        raise InputError(f"--tracks-where {where!r} matches no track{_values_hint(tracks, where)}")
    return chosen.index.to_numpy()


def _values_hint(tracks: pd.DataFrame, where: str, shown: int = 12) -> str:
    """'; level has: Class, Subclass, cluster (did you mean 'Subclass'?)' for each column the query
    names, with the closest value to each text it compares the column with."""
    import ast

    try:
        tree = ast.parse(where, mode="eval")
    except SyntaxError:
        return ""
    columns = {str(c) for c in tracks.columns}
    compared: dict[str, list[str]] = {}  # column -> the texts it is compared with
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in columns:
            compared.setdefault(node.id, [])
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            names = [n.id for n in sides if isinstance(n, ast.Name) and n.id in columns]
            texts = [t.value for n in sides for t in ast.walk(n)
                     if isinstance(t, ast.Constant) and isinstance(t.value, str)]
            for name in names:
                compared.setdefault(name, []).extend(texts)
    parts = []
    for column, texts in compared.items():
        values = [str(v) for v in dict.fromkeys(tracks[column].dropna()) if str(v) != ""]
        listed = ", ".join(values[:shown]) + (f", ... ({len(values)} values)" if len(values) > shown else "")
        close = next((hint for text in texts if text not in values and (hint := did_you_mean(text, values))), "")
        parts.append(f"{column} has: {listed}{close}")
    return "; " + "; ".join(parts) if parts else ""


def cell_type_tracks(tracks: pd.DataFrame, label_column: str, where: str | None, minimum: int, why: str) -> pd.DataFrame:
    """The tracks of one level, one per cell type: those matching ``where`` with a value in
    ``label_column`` (refused when two share a value, or fewer than ``minimum`` remain: ``why``)."""
    if label_column not in tracks.columns:
        raise InputError(f"the targets table has no column {label_column!r}"
                         f"{did_you_mean(label_column, tracks.columns)} (has {', '.join(tracks.columns)})")
    chosen = tracks.iloc[select_tracks(tracks, where)]
    chosen = chosen[chosen[label_column].astype(str).replace({"nan": ""}) != ""]
    labels = chosen[label_column].astype(str)
    if labels.duplicated().any():
        raise InputError(f"two tracks share the {label_column} label {labels[labels.duplicated()].iloc[0]!r}; choose "
                         "one track per cell type with --tracks-where (e.g. \"level == 'Subclass'\")")
    if len(chosen) < minimum:
        raise InputError(f"{len(chosen)} cell-type track(s) with a {label_column} label: {why} needs {minimum} or more")
    return chosen


def hierarchy_order(tracks: pd.DataFrame) -> list[int]:
    """Track positions ordered by level, then class, subclass, cluster when those columns exist."""
    keys = [c for c in ("level", "class", "subclass", "cluster") if c in tracks.columns]
    if not keys:
        return list(range(len(tracks)))
    return list(tracks.reset_index(drop=True).sort_values(keys, kind="stable").index)


def read_targets_table(path: Path | str, check_files: bool = True) -> pd.DataFrame:
    """Read and validate a targets table; BigWig paths are resolved relative to the table."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: targets table not found")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except Exception as err:
        raise InputError(f"{path}: cannot read as a tab-separated table ({err})") from None
    if len(df.columns) and df.columns[0] in ("", "Unnamed: 0"):
        df = df.rename(columns={df.columns[0]: "index"})
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            f"{path}: missing required column(s) {', '.join(missing)}; a targets table needs "
            f"{', '.join(STANDARD_COLUMNS)} (clip_soft optional), tab-separated with a header"
        )
    if df.empty:
        raise InputError(f"{path}: the targets table has no tracks")
    return validate_targets_table(df, path, check_files)


def validate_targets_table(df: pd.DataFrame, path: Path, check_files: bool = True) -> pd.DataFrame:
    df = df.copy()
    if "index" not in df.columns:
        df.insert(0, "index", range(len(df)))
    if "clip_soft" not in df.columns:
        df["clip_soft"] = ""
    base = path.parent
    seen: dict[str, int] = {}
    files, clips, softs, scales = [], [], [], []
    for i, row in enumerate(df.itertuples(index=False)):
        line = i + 2  # header is line 1
        where = f"{path} row {line}"
        ident = str(row.identifier).strip()
        if not ident:
            raise InputError(f"{where}: empty identifier; give every track a unique identifier")
        if ident in seen:
            raise InputError(
                f"{where}: duplicate track identifier {ident!r} (also on row {seen[ident]}); identifiers must be unique"
            )
        seen[ident] = line
        stat = str(row.sum_stat).strip()
        if stat == "median":
            raise InputError(
                f"{where}: sum_stat 'median' is not supported (it is broken in Basenji); "
                f"use {', '.join(SUM_STATS)}"
            )
        if stat not in SUM_STATS:
            raise InputError(f"{where}: sum_stat {stat!r} is not supported (use {', '.join(SUM_STATS)})")
        for column, values in (("clip", clips), ("clip_soft", softs)):
            value = _number(getattr(row, column), where, column, allow_empty=True)
            if value is not None and not value > 0:
                raise InputError(f"{where}: {column} must be a positive number (or empty for none), got "
                                 f"{getattr(row, column)!r}")
            values.append(value)
        scale = _number(row.scale, where, "scale")
        if scale is None or scale <= 0:
            raise InputError(f"{where}: scale must be a positive number, got {row.scale!r}")
        scales.append(scale)
        file = Path(str(row.file).strip())
        if not file.is_absolute():
            file = (base / file).resolve()
        if check_files:
            if not file.is_file():
                raise InputError(f"{where}: BigWig file {file} not found; fix the 'file' column")
            if not is_bigwig(file):
                raise InputError(f"{where}: {file} is not a BigWig file (bad magic number)")
        files.append(str(file))
    if "strand" in df.columns:
        df["strand"] = [_strand(value, f"{path} row {i + 2}") for i, value in enumerate(df["strand"])]
    df["identifier"] = df["identifier"].str.strip()
    df["sum_stat"] = df["sum_stat"].str.strip()
    df["file"] = files
    df["clip"] = clips
    df["clip_soft"] = softs
    df["scale"] = scales
    df["index"] = pd.to_numeric(df["index"], errors="coerce").fillna(pd.Series(range(len(df)))).astype(int)
    return df.reset_index(drop=True)


def _strand(value, where: str) -> str:
    text = "" if value is None else str(value).strip()
    if text in ("", "nan", "None"):
        return "."
    if text not in STRANDS:
        raise InputError(f"{where}: strand {text!r} is not +, - or . (. or empty = unstranded)")
    return text


def _number(value, where: str, column: str, allow_empty: bool = False) -> float | None:
    text = str(value).strip()
    if text in ("", "None") and allow_empty:
        return None
    try:
        number = float(text)
    except ValueError:
        raise InputError(f"{where}: {column} {text!r} is not a number") from None
    if not np.isfinite(number):
        raise InputError(f"{where}: {column} {text!r} is not a finite number"
                         + ("; leave it empty for none" if allow_empty else ""))
    return number


def build_targets_table(
    bigwigs: list[Path],
    metadata: pd.DataFrame | None = None,
    clip: float | None = STUDY_CLIP,
    scale: float = STUDY_SCALE,
    sum_stat: str = STUDY_SUM_STAT,
    clip_soft: float | None = None,
) -> pd.DataFrame:
    """A targets table for BigWigs, with the study's defaults (clip 32, scale 2, mean).

    ``metadata`` rows are matched to BigWigs by an ``identifier`` column (the file's stem
    by default) or a ``file`` column (file name); its other columns become track metadata
    (for example class / subclass / cluster) and may override clip, scale, sum_stat.
    """
    if not bigwigs:
        raise InputError("no BigWig files given")
    rows = []
    for i, bw in enumerate(bigwigs):
        bw = Path(bw)
        rows.append(
            {
                "index": i,
                "identifier": track_name(bw.name),
                "file": str(bw.resolve()),
                "clip": None if clip is None else float(clip),
                "clip_soft": None if clip_soft is None else float(clip_soft),
                "scale": float(scale),
                "sum_stat": sum_stat,
                "description": bw.stem,
            }
        )
    df = pd.DataFrame(rows)
    if metadata is not None:
        meta = metadata.copy()
        if "identifier" in meta.columns:
            key = "identifier"
        elif "file" in meta.columns:
            key = "file"
            meta["file"] = meta["file"].map(lambda f: Path(str(f)).name)
            df["_file_name"] = df["file"].map(lambda f: Path(f).name)
        else:
            raise InputError("metadata table needs an 'identifier' or 'file' column to match BigWigs")
        if meta[key].duplicated().any():
            dup = meta.loc[meta[key].duplicated(), key].iloc[0]
            raise InputError(f"metadata table: duplicate {key} {dup!r}")
        left_key = "_file_name" if key == "file" else "identifier"
        known = set(meta[key])
        unmatched = [v for v in df[left_key] if v not in known]
        if unmatched:
            raise InputError(
                f"metadata table has no row for {unmatched[0]!r}"
                f"{f' (and {len(unmatched) - 1} more)' if len(unmatched) > 1 else ''}; "
                f"add rows keyed by {key}"
            )
        extra = sorted(known - set(df[left_key]))
        if extra:
            log.warning("metadata rows without a BigWig are ignored: %s", ", ".join(map(str, extra[:5])))
        meta = meta.rename(columns={key: left_key})
        overrides = [c for c in ("clip", "clip_soft", "scale", "sum_stat", "description") if c in meta.columns]
        df = df.drop(columns=overrides).merge(meta, on=left_key, how="left")
        df = df.drop(columns=[c for c in ("_file_name",) if c in df.columns])
        df = df[[c for c in STANDARD_COLUMNS if c in df.columns] + [c for c in df.columns if c not in STANDARD_COLUMNS]]
    return df


def make_targets_table(out: Path | str, bigwigs: list[Path] | None = None, bigwig_dirs: list[Path] | None = None,
                       metadata: Path | str | None = None, settings=None) -> pd.DataFrame:
    """The ``targets`` command: a validated targets table for BigWig files and folders, with
    metadata keyed by identifier (file stem) or file name, written to ``out``. ``settings``: the
    ``[targets]`` section (``config.TargetsConfig``: clip, clip_soft, scale, sum_stat); default the study's."""
    files = [Path(p) for p in bigwigs or []]
    for folder in bigwig_dirs or []:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"{folder}: --bigwig-dir folder not found")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".bw", ".bigwig"))
        if not found:
            raise InputError(f"{folder}: no .bw / .bigWig files")
        files += found
    table = build_targets_table(files, read_metadata_table(metadata) if metadata else None, clip=settings.clip if settings else STUDY_CLIP,
                                scale=settings.scale if settings else STUDY_SCALE,
                                sum_stat=settings.sum_stat if settings else STUDY_SUM_STAT,
                                clip_soft=settings.clip_soft if settings else None)
    save_targets_table(table, out)
    return table


def read_metadata_table(path: Path | str) -> pd.DataFrame:
    """Track metadata as text: tab-separated for .tsv/.txt, comma-separated otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: metadata table not found")
    sep = "\t" if path.suffix in (".tsv", ".txt") else ","
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)


def save_targets_table(df: pd.DataFrame, path: Path | str) -> Path:
    """Write a table we built, under a temporary name, check it passes our own validation, rename."""
    path = Path(path)
    with atomic_path(path) as tmp:
        write_targets_table(df, tmp)
        read_targets_table(tmp)
    return path


def write_targets_table(df: pd.DataFrame, path: Path | str) -> None:
    out = df.copy()
    for col in ("clip", "clip_soft"):
        if col in out.columns:
            out[col] = out[col].map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:g}")
    out.to_csv(path, sep="\t", index=False)


def strand_partners(tracks: pd.DataFrame) -> np.ndarray | None:
    """For each track (position in ``tracks``), the position of its other strand, or None when
    the table has no (non-trivial) ``strand_pair`` column."""
    if "strand_pair" not in tracks.columns:
        return None
    index = pd.to_numeric(tracks["index"], errors="coerce").to_numpy()
    pairs = pd.to_numeric(tracks["strand_pair"], errors="coerce").to_numpy()
    position = {int(v): i for i, v in enumerate(index) if np.isfinite(v)}
    partners = np.array([position.get(int(p), i) if np.isfinite(p) else i for i, p in enumerate(pairs)])
    return None if (partners == np.arange(len(tracks))).all() else partners


class GeneTrack(NamedTuple):
    """A track as genes read it: a stranded pair (a + gene reads ``plus``, a - gene ``minus``;
    positions in the tracks table) or one unstranded track (``plus == minus``)."""

    identifier: str
    plus: int
    minus: int


def _suffix_strand(identifier: str) -> str:
    return identifier[-1] if identifier[-1:] in ("+", "-") else "."


def strand_pairs(tracks: pd.DataFrame) -> np.ndarray:
    """For each track (position in ``tracks``), the position of its other strand (itself when it
    has none): Basenji's ``strand_pair`` column when the table has a non-trivial one, otherwise
    tracks whose identifiers differ only by a final + / - (``CAGE_K562+`` / ``CAGE_K562-``)."""
    partners = strand_partners(tracks)
    if partners is not None:
        return partners
    ids = [str(i) for i in tracks["identifier"]]
    position = {ident: i for i, ident in enumerate(ids)}
    partners = np.arange(len(ids))
    for i, ident in enumerate(ids):
        other = {"+": "-", "-": "+"}.get(_suffix_strand(ident))
        if other and ident[:-1] + other in position:
            partners[i] = position[ident[:-1] + other]
    return partners


def gene_tracks(tracks: pd.DataFrame) -> list[GeneTrack]:
    """The tracks genes are read from, in table order: one per strand pair (named by the common
    identifier without its +/- suffix, else 'PLUS/MINUS'), one per unstranded track. Which track of
    a pair is + comes from the ``strand`` column, else the identifier's suffix; a track whose
    strand is set but has no partner is read for genes of both strands."""
    partners = strand_pairs(tracks)
    ids = [str(i) for i in tracks["identifier"]]
    column = list(tracks["strand"]) if "strand" in tracks.columns else ["."] * len(ids)
    out, done = [], set()
    for i, ident in enumerate(ids):
        j = int(partners[i])
        if i in done:
            continue
        if j == i:
            out.append(GeneTrack(ident, i, i))
            continue
        strands = [column[k] if column[k] in ("+", "-") else _suffix_strand(ids[k]) for k in (i, j)]
        if sorted(strands) != ["+", "-"]:
            raise InputError(f"targets table: tracks {ident!r} and {ids[j]!r} are a strand pair but their strands are "
                             f"{strands[0]!r} and {strands[1]!r}; give one '+' and one '-' in a strand column")
        plus, minus = (i, j) if strands[0] == "+" else (j, i)
        stem = ids[plus][:-1] if _suffix_strand(ids[plus]) == "+" and ids[minus] == ids[plus][:-1] + "-" else None
        out.append(GeneTrack(stem or f"{ids[plus]}/{ids[minus]}", plus, minus))
        done |= {i, j}
    return out
