"""Predictions for new regions (BigWig per track) or given sequences (a table).

Regions are tiled into windows whose target intervals step by ``stride`` (default half the
target interval); each output bin is taken from the window where it lies most central, so
window edges, where accuracy drops, are not used when a more central prediction exists.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import InputError
from ..genome.intervals import IntervalSet
from ..genome.onehot import one_hot_padded
from ..genome.sequence import Genome
from ..provenance import safe_filename

log = logging.getLogger("enformer_transfer")


class Predictor:
    """Backbone (as embedded) + head: one-hot windows -> (windows, bins, tracks)."""

    def __init__(self, run, head_name: str, batch_size: int = 4, device: str = "auto"):
        from ..backbone.embed import Dist, resolve_device
        from ..backbone.load import load_backbone
        from ..config import RunConfig

        self.run = run
        self.head = run.head(head_name)
        record = run.stage_record("embeddings")
        dataset_config = RunConfig.model_validate(run.stage_record("dataset")["config"])
        self.geometry = dataset_config.geometry
        self.genome = Genome(dataset_config.dataset.genome, dataset_config.dataset.chrom_aliases)
        embed = record["config"]["embed"]
        self.device = resolve_device(device, Dist())
        self.precision = record["stats"]["precision"]
        self.pad_value = embed["pad_value"]
        self.backbone = load_backbone(embed["backbone"], self.geometry, embed["tf_gamma"],
                                      embed["allow_download"], str(self.device))
        self.head.module.to(self.device)
        self.batch_size = batch_size

    @torch.inference_mode()
    def predict_onehot(self, x: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(x), self.batch_size):
            batch = torch.from_numpy(x[start : start + self.batch_size]).to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                emb = self.backbone.model.trunk(batch)
            out.append(self.head.module(emb.float()).float().cpu().numpy())
        return np.concatenate(out)

    def window_inputs(self, chrom: str, target_starts: list[int]) -> np.ndarray:
        context = self.geometry.context
        xs = []
        for start in target_starts:
            a = start - context
            seq, left, right = self.genome.fetch_padded(chrom, a, a + self.geometry.seq_length)
            xs.append(one_hot_padded(seq, left, right, self.pad_value))
        return np.stack(xs)


def tile_region(start: int, end: int, target_length: int, bin_size: int, stride: int, chrom_size: int) -> list[int]:
    """Target-interval starts covering [start, end), aligned to ``start``, inside the chromosome."""
    if stride <= 0 or stride % bin_size or stride > target_length:
        raise InputError(f"stride {stride} must be a positive multiple of the bin size ({bin_size}) "
                         f"and at most the target interval ({target_length})")
    stop = min(end, chrom_size)
    starts = list(range(start, max(start, stop - target_length) + 1, stride))
    if starts[-1] + target_length < stop:  # one more window, on the bin grid, reaching the end
        starts.append(start + -(-(stop - target_length - start) // bin_size) * bin_size)
    return starts


def predict_regions(run, head_name: str, out_dir: Path | str, regions: pd.DataFrame, stride: int | None = None,
                    batch_size: int = 4, device: str = "auto") -> list[Path]:
    """One bin-resolution BigWig per track over the (merged) regions; returns the paths."""
    import pybigtools

    predictor = Predictor(run, head_name, batch_size, device)
    g = predictor.geometry
    stride = stride or g.target_length // 2
    merged = _merge(regions)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tracks = [t["identifier"] for t in predictor.head.metadata["tracks"]]
    per_track: list[list[tuple]] = [[] for _ in tracks]
    for chrom, start, end in merged.itertuples(index=False):
        size = predictor.genome.chrom_size(chrom)
        start, end = max(0, int(start)), min(size, int(end))
        if end - start < g.bin_size:
            continue
        starts = tile_region(start, end, g.target_length, g.bin_size, stride, size)
        first = starts[0]
        n_out = (starts[-1] + g.target_length - first) // g.bin_size
        best = np.full(n_out, np.inf)
        values = np.zeros((n_out, len(tracks)), dtype=np.float32)
        for i in range(0, len(starts), 16):
            chunk = starts[i : i + 16]
            preds = predictor.predict_onehot(predictor.window_inputs(chrom, chunk))
            for target_start, pred in zip(chunk, preds, strict=True):
                offset = (target_start - first) // g.bin_size
                distance = np.abs(np.arange(g.n_bins) + 0.5 - g.n_bins / 2)
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
    chrom_sizes = {c: predictor.genome.chrom_size(c) for c in dict.fromkeys(merged["chrom"])}
    paths = []
    for t, ident in enumerate(tracks):
        path = out_dir / f"{safe_filename(ident)}.bw"
        tmp = path.with_name(path.stem + ".partial.bw")  # pybigtools wants the .bw suffix
        writer = pybigtools.open(str(tmp), "w")
        writer.write(chrom_sizes, iter(per_track[t]))
        try:
            pybigtools.open(str(tmp)).close()
        except Exception as err:
            raise InputError(f"predict: writing {path} failed ({err})") from None
        tmp.replace(path)
        paths.append(path)
    log.info("predict: %d BigWigs (%s, bin %d bp) in %s", len(paths), head_name, g.bin_size, out_dir)
    return paths


def predict_fasta(run, head_name: str, fasta: Path | str, out: Path | str, batch_size: int = 4,
                  device: str = "auto") -> Path:
    """Predictions for each sequence of a FASTA (each exactly seq_length bp) as a TSV table:
    sequence, bin, start, end (bp within the sequence), one column per track."""
    predictor = Predictor(run, head_name, batch_size, device)
    g = predictor.geometry
    genome = Genome(fasta)
    names = list(genome.sizes)
    wrong = [n for n in names if genome.sizes[n] != g.seq_length]
    if wrong:
        raise InputError(f"{fasta}: sequence {wrong[0]!r} is {genome.sizes[wrong[0]]} bp; every sequence must be "
                         f"the model input length ({g.seq_length} bp)")
    x = np.stack([one_hot_padded(genome.fetch(n, 0, g.seq_length), 0, 0) for n in names])
    preds = predictor.predict_onehot(x)
    tracks = [t["identifier"] for t in predictor.head.metadata["tracks"]]
    rows = []
    for name, pred in zip(names, preds, strict=True):
        frame = pd.DataFrame(pred, columns=tracks)
        frame.insert(0, "end", g.context + (np.arange(g.n_bins) + 1) * g.bin_size)
        frame.insert(0, "start", g.context + np.arange(g.n_bins) * g.bin_size)
        frame.insert(0, "bin", np.arange(g.n_bins))
        frame.insert(0, "sequence", name)
        rows.append(frame)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    pd.concat(rows).to_csv(tmp, sep="\t", index=False)
    tmp.replace(out)
    return out


def read_regions(bed: Path | str | None, chroms: list[str] | None, genome_sizes: dict[str, int]) -> pd.DataFrame:
    rows = []
    if bed is not None:
        regions = IntervalSet.from_bed(bed)
        for chrom, array in regions.regions.items():
            rows += [(chrom, int(a), int(b)) for a, b in array]
    for chrom in chroms or []:
        if chrom not in genome_sizes:
            raise InputError(f"predict: chromosome {chrom!r} is not in the genome")
        rows.append((chrom, 0, genome_sizes[chrom]))
    if not rows:
        raise InputError("predict: give --regions BED, --chrom NAME or --fasta FASTA")
    return pd.DataFrame(rows, columns=["chrom", "start", "end"])


def _merge(regions: pd.DataFrame) -> pd.DataFrame:
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

