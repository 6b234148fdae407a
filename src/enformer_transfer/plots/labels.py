"""What a reader sees a track, a column or a motif called: every figure and table of tracks takes
its labels from here, so that a track is named the same way everywhere."""

from __future__ import annotations

import re

import pandas as pd

_ASSAY_PREFIX = re.compile(r"^[A-Za-z0-9-]{2,12}:")  # 'DNASE:', 'ATAC:', 'CHIP:' (Basenji descriptions)


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value).strip()


def track_labels(tracks: pd.DataFrame) -> list[str]:
    """One label per row of a targets table: its description (the cell type or tissue, e.g.
    'DNASE:HepG2' -> 'HepG2') when the table has a description column, else its identifier.
    An assay prefix shared by every description is dropped (it says nothing between the tracks);
    labels that would name two tracks alike get their identifier in parentheses; a track without
    a description keeps its identifier."""
    ids = [_text(i) for i in tracks["identifier"]]
    if "description" not in tracks.columns:
        return ids
    descriptions = [_text(d) for d in tracks["description"]]
    prefixes = {m.group(0) if (m := _ASSAY_PREFIX.match(d)) else None for d in descriptions}
    if len(prefixes) == 1 and None not in prefixes:
        cut = len(prefixes.pop())
        descriptions = [d[cut:].strip() for d in descriptions]
    labels = [d or i for d, i in zip(descriptions, ids, strict=True)]
    seen: dict[str, int] = {}
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
    return [f"{label} ({i})" if seen[label] > 1 and label != i else label
            for label, i in zip(labels, ids, strict=True)]


def track_label_map(tracks: pd.DataFrame) -> dict[str, str]:
    """identifier -> label (see ``track_labels``)."""
    return dict(zip(tracks["identifier"].astype(str), track_labels(tracks), strict=True))


def shorten(text: str, width: int = 18) -> str:
    """``text`` cut to ``width`` characters with an ellipsis (the full text belongs in a table)."""
    text = str(text)
    return text if len(text) <= width else text[: width - 1] + "\u2026"


COLUMN_WORDS = {  # a result table's column -> the words a reader sees
    "identifier": "identifier", "track": "track", "split": "split", "grouping": "grouping", "group": "group",
    "pearson": "Pearson", "spearman": "Spearman", "r2": "R\u00b2",
    "pearson_log1p": "Pearson of log(1 + x)", "pearson_window_median": "Pearson per window, median",
    "predicted_std": "predicted SD", "observed_std": "observed SD", "note": "note",
    "ridge_pearson": "ridge baseline Pearson", "zero_shot_pearson": "backbone's best own track, Pearson",
    "zero_shot_track": "backbone's best own track", "compare_run_pearson": "compare run Pearson",
    "n_tracks": "tracks", "n_windows": "windows", "n_bins": "bins", "n_nuclei": "nuclei",
    "n_seqlets": "seqlets", "n_regions": "regions", "best_motif_id": "best match id", "best_qvalue": "best match q",
    "observed_mean": "observed mean", "predicted_mean": "predicted mean",
}

_SUFFIX_WORDS = {"_mean": "mean", "_median": "median", "_std": "SD", "_min": "min", "_max": "max"}


def column_label(name: str, words: dict[str, str] | None = None) -> str:
    """A column name in words: known names from ``COLUMN_WORDS`` (and ``words``), 'x_mean' as
    '<x>, mean', anything else with its underscores as spaces."""
    table = {**COLUMN_WORDS, **(words or {})}
    if name in table:
        return table[name]
    for suffix, word in _SUFFIX_WORDS.items():
        if name.endswith(suffix) and name[: -len(suffix)] in table:
            return f"{table[name[: -len(suffix)]]}, {word}"
    return str(name).replace("_", " ")
