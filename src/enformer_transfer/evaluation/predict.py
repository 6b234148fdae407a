"""The predict stage's work (``stages/predict.py`` runs it):
a head's predictions for new regions (one BigWig per track) or given
sequences (a table), from sequence through the backbone and the head.

Regions are tiled into windows whose target intervals step by ``stride`` (default half the
target interval); each output bin is taken from the window where it lies most central, so
window edges, where accuracy drops, are not used when a more central prediction exists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..backbone.inputs import window_batch
from ..backbone.model import load_sequence_model
from ..errors import InputError
from ..fs import atomic_path, safe_filename
from ..genome.sequence import Genome
from ..results import Run
from ..rundir.layout import PredictionsFolder


def tile_region(start: int, end: int, target_bp: int, bin_size: int, stride: int, chrom_size: int) -> list[int]:
    """Target-interval starts covering [start, end), aligned to ``start``, inside the chromosome."""
    if stride <= 0 or stride % bin_size or stride > target_bp:
        raise InputError(f"stride {stride} must be a positive multiple of the bin size ({bin_size}) "
                         f"and at most the target interval ({target_bp})")
    stop = min(end, chrom_size)
    starts = list(range(start, max(start, stop - target_bp) + 1, stride))
    if starts[-1] + target_bp < stop:  # one more window, on the bin grid, reaching the end
        starts.append(start + -(-(stop - target_bp - start) // bin_size) * bin_size)
    return starts


def predict_regions(run: Run, head_name: str, out: PredictionsFolder, regions: pd.DataFrame,
                    stride: int | None = None, batch_size: int = 4, device: str = "auto",
                    chrom_aliases: str | None = None) -> list[Path]:
    """One bin-resolution BigWig per track over the (merged) regions (chromosomes named as the
    genome names them); returns the paths."""
    import pybigtools

    genome, g = run.genome(chrom_aliases), run.geometry
    merged = merge_regions(regions)
    short = merged[merged["end"].clip(upper=[genome.chrom_size(c) for c in merged["chrom"]])
                   - merged["start"].clip(lower=0) < g.bin_size]
    if len(short):  # no whole bin: its BigWig would be empty
        chrom, start, end = short.iloc[0]
        raise InputError(f"predict: region {chrom}:{start}-{end} holds no whole {g.bin_size}-bp bin; widen it to "
                         f"at least {g.bin_size} bp (the predictions are per bin)")
    model, head = load_sequence_model(run, head_name, device)
    pad_value = run.embed_config.pad_value
    stride = stride or g.target_interval_bp // 2
    tracks = [t["identifier"] for t in head.metadata["tracks"]]
    per_track: list[list[tuple]] = [[] for _ in tracks]
    distance = np.abs(np.arange(g.n_bins) + 0.5 - g.n_bins / 2)
    for chrom, start, end in merged.itertuples(index=False):
        size = genome.chrom_size(chrom)
        start, end = max(0, int(start)), min(size, int(end))
        starts = tile_region(start, end, g.target_interval_bp, g.bin_size, stride, size)
        first = starts[0]
        n_out = (starts[-1] + g.target_interval_bp - first) // g.bin_size
        best = np.full(n_out, np.inf)
        values = np.zeros((n_out, len(tracks)), dtype=np.float32)
        for i in range(0, len(starts), 16):
            chunk = starts[i : i + 16]
            preds = model.predict(window_batch(genome, chrom, chunk, g, pad_value), batch_size)
            for target_start, pred in zip(chunk, preds, strict=True):
                offset = (target_start - first) // g.bin_size
                slot = slice(offset, offset + g.n_bins)
                better = distance < best[slot]
                best[slot][better] = distance[better]
                values[slot][better] = pred[better]
        for b in range(n_out):
            a = first + b * g.bin_size
            if a < start or a + g.bin_size > end:  # whole bins inside the region (and chromosome)
                continue
            for t in range(len(tracks)):
                per_track[t].append((chrom, a, a + g.bin_size, float(values[b, t])))
    chrom_sizes = {c: genome.chrom_size(c) for c in dict.fromkeys(merged["chrom"])}
    paths = []
    for t, ident in enumerate(tracks):
        path = out.bigwig(safe_filename(ident))
        with atomic_path(path) as tmp:
            pybigtools.open(str(tmp), "w").write(chrom_sizes, iter(per_track[t]))
            try:
                pybigtools.open(str(tmp)).close()
            except Exception as err:
                raise InputError(f"predict: writing {path} failed ({err})") from None
        paths.append(path)
    return paths


def predict_fasta(run: Run, head_name: str, fasta: Path | str, out: Path, batch_size: int = 4,
                  device: str = "auto") -> dict:
    """Predictions for each sequence of a FASTA (each exactly seq_length bp) as a TSV table:
    sequence, bin, start, end (bp within the sequence), one column per track."""
    model, head = load_sequence_model(run, head_name, device)
    g = run.geometry
    sequences = Genome(fasta)
    names = list(sequences.sizes)
    wrong = [n for n in names if sequences.sizes[n] != g.seq_length]
    if wrong:
        raise InputError(f"{fasta}: sequence {wrong[0]!r} is {sequences.sizes[wrong[0]]} bp; every sequence must be "
                         f"the model input length ({g.seq_length} bp)")
    x = np.stack([sequences.one_hot(n, 0, g.seq_length) for n in names])
    preds = model.predict(x, batch_size)
    tracks = [t["identifier"] for t in head.metadata["tracks"]]
    rows = []
    for name, pred in zip(names, preds, strict=True):
        frame = pd.DataFrame(pred, columns=tracks)
        frame.insert(0, "end", g.context + (np.arange(g.n_bins) + 1) * g.bin_size)
        frame.insert(0, "start", g.context + np.arange(g.n_bins) * g.bin_size)
        frame.insert(0, "bin", np.arange(g.n_bins))
        frame.insert(0, "sequence", name)
        rows.append(frame)
    with atomic_path(out) as tmp:
        pd.concat(rows).to_csv(tmp, sep="\t", index=False)
    return {"sequences": len(names)}


def merge_regions(regions: pd.DataFrame) -> pd.DataFrame:
    """Overlapping or touching regions of a chromosome merged into one."""
    out = []
    for chrom, part in regions.sort_values(["chrom", "start"]).groupby("chrom", sort=False):
        current = None
        for _, start, end in part.itertuples(index=False):
            if current and start <= current[2]:
                current[2] = max(current[2], end)
            else:
                if current:
                    out.append(tuple(current))
                current = [chrom, start, end]
        out.append(tuple(current))
    return pd.DataFrame(out, columns=["chrom", "start", "end"])
