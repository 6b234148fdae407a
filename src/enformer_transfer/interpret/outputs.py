"""What the variants stage writes from its scores: the long table, per-level summaries, figures
and BigWigs of chosen variants. Tables and choices here; drawing in ``plots/figures.py``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..fs import atomic_path, safe_filename
from ..plots import figures as draw
from ..plots.figures import FigureIndex
from ..rundir.layout import VariantsFolder
from ..targets.table import hierarchy_order, metadata_columns
from .alleles import genome_alleles, reference_start
from .scores import STATS, SUMS
from .vcf import short_name

VARIANT_COLUMNS = ["variant", "id", "chrom", "pos", "ref", "alt", "kind"]


def track_columns(tracks: pd.DataFrame) -> pd.DataFrame:
    """The tracks' identifier, description and metadata columns, renamed ``track_NAME`` where a
    name is also a variant column."""
    keep = ["identifier", "description"] + [c for c in metadata_columns(tracks) if c not in ("identifier",)]
    table = tracks[[c for c in dict.fromkeys(keep) if c in tracks.columns]].reset_index(drop=True)
    return table.rename(columns={c: f"track_{c}" for c in table.columns if c in VARIANT_COLUMNS})


def score_columns(stats: list[str], with_p: bool) -> list[str]:
    return list(SUMS) + list(stats) + [f"{s}_z" for s in stats] + ([f"{s}_p" for s in stats] if with_p else [])


def long_table(variants: pd.DataFrame, tracks: pd.DataFrame, values: dict[str, np.ndarray],
               columns: list[str]) -> pd.DataFrame:
    """One row per variant and track: the variant, the track's metadata, every score."""
    n, t = len(variants), len(tracks)
    left = variants[VARIANT_COLUMNS].loc[variants.index.repeat(t)].reset_index(drop=True)
    right = pd.concat([track_columns(tracks)] * n, ignore_index=True)
    scores = pd.DataFrame({name: values[name].reshape(-1) for name in columns})
    return pd.concat([left, right, scores], axis=1)


def top_variants(variants: pd.DataFrame, tracks: pd.DataFrame, groups: np.ndarray, values: dict[str, np.ndarray],
                 stat: str, top: int) -> pd.DataFrame:
    """Per level and track: the ``top`` variants with the largest |stat| in that track, with the
    score's z-score among the level's tracks (and p-value when there is a null)."""
    rows = []
    order = np.argsort(-np.abs(np.nan_to_num(values[stat], nan=0.0)), axis=0, kind="stable")
    for t, identifier in enumerate(tracks["identifier"]):
        for rank, i in enumerate(order[:top, t], 1):
            row = {"level": groups[t], "identifier": identifier, "rank": rank,
                   **variants.iloc[i][["variant", "id"]].to_dict(),
                   stat: values[stat][i, t], f"{stat}_z": values[f"{stat}_z"][i, t]}
            if f"{stat}_p" in values:
                row[f"{stat}_p"] = values[f"{stat}_p"][i, t]
            rows.append(row)
    return pd.DataFrame(rows)


def most_affected(variants: pd.DataFrame, tracks: pd.DataFrame, groups: np.ndarray, values: dict[str, np.ndarray],
                  stat: str) -> pd.DataFrame:
    """Per variant and level: the track with the largest |stat|, its score and z-score, and the
    runner-up (how clearly one cell type stands out)."""
    ids = np.asarray(tracks["identifier"])
    rows = []
    for group in dict.fromkeys(groups):
        members = np.flatnonzero(groups == group)
        part = np.abs(np.nan_to_num(values[stat][:, members], nan=0.0))
        ranked = np.argsort(-part, axis=1, kind="stable")
        for i in range(len(variants)):
            best = members[ranked[i, 0]]
            second = members[ranked[i, 1]] if len(members) > 1 else None
            rows.append({"variant": variants["variant"].iloc[i], "id": variants["id"].iloc[i], "level": group,
                         "most_affected": ids[best], stat: values[stat][i, best],
                         f"{stat}_z": values[f"{stat}_z"][i, best],
                         "second": ids[second] if second is not None else "",
                         f"second_{stat}": values[stat][i, second] if second is not None else np.nan})
    return pd.DataFrame(rows)


def chosen_variants(variants: pd.DataFrame, values: dict[str, np.ndarray], stat: str, asked: list[str],
                    plot_top: int) -> list[int]:
    """Positions of the variants to draw: those asked for (by key or ID), then the ``plot_top``
    with the largest |stat| in any track."""
    chosen = list(dict.fromkeys(int(np.flatnonzero((variants["variant"] == a) | (variants["id"] == a))[0])
                                for a in asked))
    strongest = [int(i) for i in np.argsort(-np.nan_to_num(np.abs(values[stat]), nan=0.0).max(axis=1), kind="stable")]
    return chosen + [i for i in strongest if i not in chosen][:plot_top]


def variant_stem(variant) -> str:
    return f"{int(variant.index):06d}_{safe_filename(variant.variant)[:80]}"


def draw_variants(out: VariantsFolder, scorer, variants: pd.DataFrame, tracks: pd.DataFrame, groups: np.ndarray,
                  values: dict[str, np.ndarray], stat: str, chosen: list[int], geometry,
                  bigwig: bool = False) -> list[dict]:
    """For each chosen variant: its effect in every track in hierarchy order, the predicted
    reference and alternative tracks around it, and (``bigwig``) one BigWig of alt - ref per
    track. Returns the figure index entries."""
    index = FigureIndex(out.figures)
    order = hierarchy_order(tracks)
    ids = list(tracks["identifier"])
    for i in chosen:
        v = next(variants.iloc[[i]].itertuples(index=False))
        stem = variant_stem(v)
        label = short_name(v.variant) + (f" ({v.id})" if v.id else "")
        index.add(f"effects_{stem}", f"{label}: {stat} in every track (hierarchy order) and its z-score within "
                  "each level",
                  draw.variant_effect_bars(values[stat][i, order], values[f"{stat}_z"][i, order],
                                           [ids[t] for t in order], [str(groups[t]) for t in order], stat,
                                           label, out.figures / f"effects_{stem}"),
                  kind="variant", variant=v.variant)
        ref, alt = scorer.profiles(v)
        start = reference_start(v.pos, *genome_alleles(v), geometry.seq_length) - scorer.offset + geometry.context
        coords = start + geometry.bin_size * (np.arange(geometry.n_bins) + 0.5)
        shown = [t for t in np.argsort(-np.abs(np.nan_to_num(values[stat][i])), kind="stable")[:8]]
        index.add(f"tracks_{stem}", f"{label}: predicted reference and alternative signal of the most affected "
                  f"tracks around the variant ({v.chrom}:{start:,}-{start + geometry.target_interval_bp:,})",
                  draw.variant_tracks(coords, ref[:, shown], alt[:, shown], [ids[t] for t in shown], v.pos,
                                      label, out.figures / f"tracks_{stem}"),
                  kind="variant", variant=v.variant)
        if bigwig:
            write_difference_bigwigs(out, stem, v.genome_chrom, start, scorer.genome.sizes[v.genome_chrom],
                                     alt - ref, ids, geometry.bin_size)
    return index.write()


def write_difference_bigwigs(out: VariantsFolder, stem: str, chrom: str, start: int, chrom_size: int,
                             difference: np.ndarray, identifiers: list[str], bin_size: int) -> None:
    """One bin-resolution BigWig per track of alt - ref over the target interval around a variant."""
    import pybigtools

    starts = start + bin_size * np.arange(difference.shape[0])
    inside = (starts >= 0) & (starts + bin_size <= chrom_size)
    for t, identifier in enumerate(identifiers):
        path = out.bigwig(stem, safe_filename(identifier))
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = [(chrom, int(a), int(a) + bin_size, float(d)) for a, d in
                   zip(starts[inside], difference[inside, t], strict=True)]
        pybigtools.open(str(path), "w").write({chrom: chrom_size}, iter(entries))


# --- the matrix view: baskerville's scores.h5 ------------------------------------------------

def baskerville_percentiles() -> np.ndarray:
    """The quantiles baskerville's ``write_pct`` summarises each score's distribution at: fine in
    each tail, coarse in the middle."""
    return np.concatenate([np.arange(0.001, 0.1, 0.001), np.arange(0.1, 0.9, 0.01), np.arange(0.9, 1, 0.001)])


def _bytes(values) -> np.ndarray:
    return np.array([str(v).encode() for v in values], dtype="S")


def write_matrix(path, variants: pd.DataFrame, tracks: pd.DataFrame, values: dict[str, np.ndarray],
                 columns: list[str], stats: list[str], conventions: dict) -> bool:
    """Per score a (variants, tracks) matrix in HDF5, laid out as baskerville's ``scores.h5``
    (``snps.initialize_output_h5`` and ``write_pct``) so its analysis code reads it: ``snp`` (the
    VCF ID, or the variant's name when it has none), ``chr``, ``pos``, ``ref_allele``,
    ``alt_allele`` (as the VCF states them, flipped or not), ``target_ids``, ``target_labels``,
    one float32 dataset per score named as in the long table (``SUM``, ``logSED``, ...,
    ``ref_sum``, ``SUM_z``, ``SUM_p``), ``percentiles`` and ``STAT_pct`` (tracks, percentiles);
    ``variant`` adds the unique name of every row. Returns False when h5py is missing."""
    try:
        import h5py
    except ImportError:
        import logging

        logging.getLogger("enformer_transfer").warning("variants: h5py is not installed; no scores.h5 matrix view")
        return False
    ids = [i or name for i, name in zip(variants["id"], variants["variant"], strict=True)]
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("snp", data=_bytes(ids))
        h5.create_dataset("variant", data=_bytes(variants["variant"]))
        h5.create_dataset("chr", data=_bytes(variants["chrom"]))
        h5.create_dataset("pos", data=variants["pos"].to_numpy(dtype="uint32"))
        h5.create_dataset("ref_allele", data=_bytes(variants["ref"]))
        h5.create_dataset("alt_allele", data=_bytes(variants["alt"]))
        h5.create_dataset("target_ids", data=_bytes(tracks["identifier"]))
        h5.create_dataset("target_labels", data=_bytes(tracks["description"].fillna("")))
        for name in columns:
            h5.create_dataset(name, data=np.asarray(values[name], dtype=np.float32))
        quantiles = baskerville_percentiles()
        h5.create_dataset("percentiles", data=quantiles)
        for stat in [s for s in stats if s in STATS]:
            h5.create_dataset(f"{stat}_pct", data=np.percentile(values[stat], 100 * quantiles, axis=0).T
                              .astype(np.float32))
        h5.attrs.update({key: str(value) for key, value in conventions.items()})
    return True
