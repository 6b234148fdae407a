"""Deterministic synthetic data in real formats, for tests and the demo.

A random genome with planted motifs; per cell type, accessibility peaks at the motifs that
cell type responds to; BigWigs of that coverage; a targets table with a three-level cell-type
hierarchy (class / subclass / cluster); a windows BED with whole-chromosome splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .rundir.config import Geometry
from .targets.table import build_targets_table, write_targets_table

DEMO_GEOMETRY = Geometry(seq_length=16_384, bin_size=128, n_bins=64)

# homotypic clusters: a motif repeated over ~60 bp, as in many real enhancers
MOTIFS = {
    "NEUROD": "CAGATGGCG" * 7,
    "MEF2": "CTATTTTTAG" * 6,
    "SOX": "AACAATGG" * 8,
    "CTCF": "CCGCGAGGAGGCAG" * 4,
    "DLX": "TAATTAGC" * 8,
    "OLIG": "CATATGGTCA" * 6,
}

# subclass -> (class, motif weights)
SUBCLASSES = {
    "L23_IT": ("Glutamatergic", {"NEUROD": 6.0, "MEF2": 3.0, "CTCF": 1.0}),
    "L5_ET": ("Glutamatergic", {"NEUROD": 3.0, "MEF2": 6.0, "CTCF": 1.0}),
    "Pvalb": ("GABAergic", {"DLX": 6.0, "MEF2": 2.0, "CTCF": 1.0}),
    "Sst": ("GABAergic", {"DLX": 4.0, "SOX": 2.0, "CTCF": 1.0}),
    "Astro": ("Non-neuronal", {"SOX": 6.0, "CTCF": 1.0}),
    "Oligo": ("Non-neuronal", {"OLIG": 6.0, "SOX": 3.0, "CTCF": 1.0}),
}
CLUSTERS = {"L23_IT_1": "L23_IT", "Pvalb_2": "Pvalb", "Oligo_3": "Oligo"}

# the demo's stand-in for Enformer's own tracks: accessibility driven by single motifs and pairs,
# other combinations than the cell types' (the backbone is pretrained on these, never on those)
PRETRAINING_TRACKS = {
    **{f"{m}_only": {m: 6.0} for m in MOTIFS},
    "NEUROD_SOX": {"NEUROD": 4.0, "SOX": 4.0},
    "MEF2_OLIG": {"MEF2": 4.0, "OLIG": 4.0},
    "DLX_CTCF": {"DLX": 4.0, "CTCF": 4.0},
    "SOX_DLX": {"SOX": 3.0, "DLX": 5.0},
}


@dataclass
class SyntheticData:
    genome: Path
    targets: Path
    windows: Path
    metadata: Path
    blacklist: Path
    dar: Path
    bigwigs: list[Path]
    geometry: Geometry
    pretrain_targets: Path | None = None  # tracks for pretraining a backbone (pretraining_tracks=...)
    sites: dict | None = None  # chrom -> [(centre, motif)] of every planted motif


def make_synthetic(
    out_dir: Path | str,
    seed: int = 0,
    n_chroms: int = 4,
    chrom_length: int = 200_000,
    geometry: Geometry = DEMO_GEOMETRY,
    motif_spacing: int = 1500,
    step: int = 10,
    motifs: dict[str, str] = MOTIFS,
    subclasses: dict[str, tuple[str, dict[str, float]]] = SUBCLASSES,
    clusters: dict[str, str] = CLUSTERS,
    pretraining_tracks: dict[str, dict[str, float]] | None = None,
) -> SyntheticData:
    """Write genome.fa, bigwigs/*.bw, metadata.csv, targets.tsv, windows.bed, blacklist.bed, and
    with ``pretraining_tracks`` (name -> motif weights) pretrain/targets.tsv with their BigWigs.

    ``motifs`` are planted; ``subclasses`` (subclass -> class, motif weights) and ``clusters``
    (cluster -> subclass) define the cell-type tracks at three levels."""

    out = Path(out_dir)
    (out / "bigwigs").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    chroms = [f"chr{i + 1}" for i in range(n_chroms)]
    motif_names = list(motifs)

    # genome with planted motifs
    seqs: dict[str, np.ndarray] = {}
    sites: dict[str, list[tuple[int, str]]] = {}
    for chrom in chroms:
        seq = rng.choice(np.frombuffer(b"ACGT", dtype=np.uint8), size=chrom_length, p=[0.29, 0.21, 0.21, 0.29])
        chrom_sites = []
        pos = int(rng.integers(200, motif_spacing))
        while pos < chrom_length - 200:
            name = motif_names[int(rng.integers(len(motif_names)))]
            motif = np.frombuffer(motifs[name].encode(), dtype=np.uint8)
            seq[pos : pos + len(motif)] = motif
            chrom_sites.append((pos + len(motif) // 2, name))
            pos += int(rng.integers(motif_spacing // 2, 2 * motif_spacing))
        # a short stretch of N, as assembly gaps
        gap = int(rng.integers(chrom_length // 4, chrom_length // 2))
        seq[gap : gap + 300] = ord("N")
        seqs[chrom] = seq
        sites[chrom] = chrom_sites
    with open(out / "genome.fa", "w") as handle:
        for chrom in chroms:
            handle.write(f">{chrom}\n")
            text = seqs[chrom].tobytes().decode()
            for i in range(0, len(text), 80):
                handle.write(text[i : i + 80] + "\n")

    # cell types: 3 classes, 6 subclasses, 3 clusters
    cell_types = []
    for cls in dict.fromkeys(c for c, _ in subclasses.values()):
        subs = [s for s, (c, _) in subclasses.items() if c == cls]
        cell_types.append(("Class", cls, cls, "", "", subs, 1.0))
    for sub, (cls, _) in subclasses.items():
        cell_types.append(("Subclass", sub, cls, sub, "", [sub], 1.0))
    for cluster, sub in clusters.items():
        cell_types.append(("cluster", cluster, subclasses[sub][0], sub, cluster, [sub], float(rng.uniform(0.7, 1.3))))

    bigwigs, meta_rows = [], []
    for t, (level, name, cls, sub, cluster, members, gain) in enumerate(cell_types):
        path = out / "bigwigs" / f"{t:02d}_{name}.bw"
        weights = {m: np.mean([subclasses[s][1].get(m, 0.0) for s in members]) * gain for m in motif_names}
        _write_track(path, weights, sites, chroms, chrom_length, step, rng)
        bigwigs.append(path)
        meta_rows.append({
            "identifier": path.stem, "level": level, "class": cls, "subclass": sub, "cluster": cluster,
            "description": f"ATAC:{name}", "n_nuclei": int(rng.integers(200, 5000)),
        })
    metadata = pd.DataFrame(meta_rows)
    metadata.to_csv(out / "metadata.csv", index=False)
    write_targets_table(build_targets_table(bigwigs, metadata), out / "targets.tsv")

    # differentially accessible regions: sites of motifs one subclass responds to most
    dar_rows = []
    for chrom in chroms:
        for center, motif in sites[chrom]:
            weights = {sub: w[motif] for sub, (_, w) in subclasses.items() if motif in w}
            best = sorted(weights.values(), reverse=True)
            if best and (len(best) == 1 or best[0] > best[1]):
                top = max(weights, key=weights.get)
                dar_rows.append({"region": f"{chrom}:{center - 300}-{center + 300}", "subclass": top})
    pd.DataFrame(dar_rows).to_csv(out / "dar_subclass.csv", index=False)

    with open(out / "blacklist.bed", "w") as handle:
        for chrom in chroms[:2]:
            start = int(rng.integers(10_000, chrom_length - 10_000))
            handle.write(f"{chrom}\t{start}\t{start + 700}\tHigh Signal Region\n")

    # windows: whole-chromosome splits, Enformer-style rows (target + crop on each side)
    crop = min(8192, geometry.context)
    test_chrom, valid_chrom = chroms[-1], chroms[-2]
    rows = []
    T = geometry.target_interval_bp
    for chrom in chroms:
        split = "test" if chrom == test_chrom else "valid" if chrom == valid_chrom else "train"
        for tstart in range(geometry.context, chrom_length - T - geometry.context + 1, T):
            rows.append((chrom, tstart - crop, tstart + T + crop, split))
    pd.DataFrame(rows).to_csv(out / "windows.bed", sep="\t", header=False, index=False)
    pretrain_targets = None
    if pretraining_tracks:
        pretrain_rng = np.random.default_rng([seed, 1])  # its own stream: the cell-type data stay the same
        files = []
        for t, (name, weights) in enumerate(pretraining_tracks.items()):
            path = out / "pretrain" / "bigwigs" / f"{t:02d}_{name}.bw"
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_track(path, weights, sites, chroms, chrom_length, step, pretrain_rng)
            files.append(path)
        table = build_targets_table(files, pd.DataFrame({"identifier": [f.stem for f in files],
                                                         "description": [f"ATAC:{f.stem}" for f in files]}))
        pretrain_targets = out / "pretrain" / "targets.tsv"
        write_targets_table(table, pretrain_targets)
    return SyntheticData(
        out / "genome.fa", out / "targets.tsv", out / "windows.bed", out / "metadata.csv",
        out / "blacklist.bed", out / "dar_subclass.csv", bigwigs, geometry, pretrain_targets, sites,
    )


_PEAK = np.exp(-0.5 * (np.arange(-300, 301) / 120.0) ** 2)


def _write_track(path: Path, weights: dict[str, float], sites: dict, chroms: list[str], chrom_length: int,
                 step: int, rng) -> None:
    """A BigWig of background noise plus a peak of ``weights[motif]`` at every planted motif,
    Poisson count noise, runs of ``step`` bp, and (last chromosome) a stretch without data."""
    import pybigtools

    entries = []
    for chrom in chroms:
        signal = rng.gamma(2.0, 0.05, size=chrom_length // step).repeat(step)[:chrom_length]
        signal = signal.astype(np.float64)
        for center, motif in sites[chrom]:
            weight = weights.get(motif, 0.0)
            if weight == 0:
                continue
            a, b = max(0, center - 300), min(chrom_length, center + 301)
            signal[a:b] += weight * _PEAK[a - (center - 300) : b - (center - 300)]
        signal = rng.poisson(signal * 4) / 4.0  # count noise
        runs = signal.reshape(-1, step).mean(axis=1)
        uncovered = (0, 0)
        if chrom == chroms[-1]:  # a stretch with no data, as in real BigWigs
            uncovered = (chrom_length // 3 // step, chrom_length // 3 // step + 50)
        for i, v in enumerate(runs):
            if uncovered[0] <= i < uncovered[1]:
                continue
            entries.append((chrom, i * step, (i + 1) * step, float(round(v, 4))))
    pybigtools.open(str(path), "w").write({c: chrom_length for c in chroms}, iter(entries))


@dataclass
class SyntheticFragments:
    fragments: list[Path]  # one sorted, gzipped 10x-style fragment file per sample (SAMPLE.fragments.tsv.gz)
    cells: Path  # barcode, sample, class, subclass, cluster (empty where a cell has no cluster)
    chrom_sizes: Path
    samples: list[str]


def make_fragments(data: SyntheticData, out_dir: Path | str | None = None, seed: int = 0,
                   cells_per_subclass: int = 40, fragments_per_cell: int = 400, samples: int = 2,
                   subclasses: dict[str, tuple[str, dict[str, float]]] = SUBCLASSES,
                   clusters: dict[str, str] = CLUSTERS) -> SyntheticFragments:
    """Single-cell ATAC fragments for the cell types of ``make_synthetic``'s genome: per subclass
    ``cells_per_subclass`` cells spread over ``samples`` samples (the same barcodes recur in every
    sample, as in real runs), each with ``fragments_per_cell`` fragments drawn from its subclass's
    accessibility (a background plus a peak at every motif it responds to); half the cells of a
    subclass with a cluster form that cluster. 10x conventions: already shifted, 0-based, a read
    count in column 5, sorted by chromosome and start, bgzip-free gzip, a '#' header."""
    import gzip

    out = Path(out_dir) if out_dir is not None else Path(data.genome).parent / "single-cell"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 2])
    sizes = {}
    with open(data.genome) as handle:
        name = None
        for line in handle:
            if line.startswith(">"):
                name = line[1:].split()[0]
                sizes[name] = 0
            else:
                sizes[name] += len(line.strip())
    chroms = list(sizes)
    offsets = np.cumsum([0] + [sizes[c] for c in chroms])
    sample_names = [f"donor{i + 1}" for i in range(samples)]
    pool = ["".join(rng.choice(list("ACGT"), 16)) + "-1" for _ in range(cells_per_subclass * len(subclasses))]
    per_sample = dict.fromkeys(sample_names, 0)
    cells, parts = [], {s: [] for s in sample_names}
    for subclass, (cls, weights) in subclasses.items():
        signal = np.concatenate([np.full(sizes[c], 0.05) for c in chroms])
        for chrom, offset in zip(chroms, offsets, strict=False):
            for center, motif in (data.sites or {}).get(chrom, []):
                a, b = max(0, center - 300), min(sizes[chrom], center + 301)
                signal[offset + a : offset + b] += weights.get(motif, 0.0) * _PEAK[a - (center - 300) : b - (center - 300)]
        cdf = np.cumsum(signal)
        cdf /= cdf[-1]
        cluster = next((c for c, s in clusters.items() if s == subclass), "")
        for i in range(cells_per_subclass):
            sample = sample_names[i % samples]
            j = per_sample[sample]
            per_sample[sample] += 1
            # unique within a sample; recurring across samples, in other cell types
            barcode = pool[j] if sample_names.index(sample) % 2 == 0 else pool[-1 - j]
            in_cluster = cluster if i % 4 < 2 else ""
            cells.append({"barcode": barcode, "sample": sample, "class": cls, "subclass": subclass, "cluster": in_cluster})
            centers = np.minimum(np.searchsorted(cdf, rng.random(fragments_per_cell)), len(cdf) - 1)
            lengths = 40 + rng.geometric(1 / 120, size=fragments_per_cell)
            chrom = np.searchsorted(offsets, centers, side="right") - 1
            start = np.maximum(0, centers - offsets[chrom] - lengths // 2)
            end = np.minimum(offsets[chrom + 1] - offsets[chrom], start + lengths)
            parts[sample].append(pd.DataFrame({"chrom": chrom, "start": start, "end": end, "barcode": barcode,
                                               "reads": rng.integers(1, 4, size=fragments_per_cell)}))
    files = []
    for sample in sample_names:
        table = pd.concat(parts[sample], ignore_index=True).sort_values(["chrom", "start", "end"], kind="stable")
        table = table[table["end"] > table["start"]]
        table["chrom"] = np.array(chroms)[table["chrom"].to_numpy()]
        path = out / f"{sample}.fragments.tsv.gz"
        with gzip.open(path, "wt", compresslevel=1) as handle:
            handle.write(f"# id={sample}\n# pseudobulk demo fragments\n")
            table.to_csv(handle, sep="\t", header=False, index=False)
        files.append(path)
    pd.DataFrame(cells).to_csv(out / "cells.tsv", sep="\t", index=False)
    with open(out / "chrom.sizes", "w") as handle:
        handle.writelines(f"{c}\t{sizes[c]}\n" for c in chroms)
    return SyntheticFragments(files, out / "cells.tsv", out / "chrom.sizes", sample_names)
