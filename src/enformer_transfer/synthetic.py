"""Deterministic synthetic data in real formats, for tests and the demo.

A random genome with planted motifs; per cell type, accessibility peaks at the motifs that
cell type responds to; BigWigs of that coverage; a targets table with a three-level cell-type
hierarchy (class / subclass / cluster); a windows BED with whole-chromosome splits; with
``genes_per_chrom``, a copy of the genome with genes planted (exons, an oriented core promoter and a
cell-type motif upstream of the TSS), a stranded expression track per cell type, their GTF and a
VCF of promoter variants.
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
    genes: SyntheticGenes | None = None  # with genes_per_chrom > 0


@dataclass
class SyntheticGenes:
    """The demo's genes: their genome (the synthetic genome with the genes planted), GENCODE-style
    GTF, stranded expression tracks (a + and a - BigWig per cell type, paired in their targets
    table), the planted promoter variants and the truth."""

    genome: Path
    gtf: Path
    targets: Path  # stranded expression tracks: strand column (+ / -) and strand_pair
    bigwigs: list[Path]
    variants: Path  # VCF: each gene's promoter motif shuffled (ID GENE_promoter)
    truth: Path  # genes.tsv: gene_id, gene_name, chrom, strand, tss, motif, planted_for, variant

    @property
    def windows(self) -> Path:
        """windows.bed: the genome's windows whose target interval reaches a gene."""
        return self.genome.parent / "windows.bed"


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
    genes_per_chrom: int = 0,
) -> SyntheticData:
    """Write genome.fa, bigwigs/*.bw, metadata.csv, targets.tsv, windows.bed, blacklist.bed, and
    with ``pretraining_tracks`` (name -> motif weights) pretrain/targets.tsv with their BigWigs.

    ``motifs`` are planted; ``subclasses`` (subclass -> class, motif weights) and ``clusters``
    (cluster -> subclass) define the cell-type tracks at three levels. ``genes_per_chrom`` > 0 adds
    OUT/genes: genome.fa (the same genome with genes planted, ``_plant_genes``; the files above are
    the same with or without genes), genes.gtf, stranded expression BigWigs and their targets.tsv,
    promoter_variants.vcf and genes.tsv (what was planted where)."""

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
    genes = gene_seqs = gene_sites = None
    if genes_per_chrom:
        # a copy of the genome with the genes planted (OUT/genes/genome.fa), from their own random
        # stream: the accessibility data and its genome stay exactly as without genes
        gene_seqs = {chrom: seq.copy() for chrom, seq in seqs.items()}
        gene_sites = {chrom: list(chrom_sites) for chrom, chrom_sites in sites.items()}
        genes = _plant_genes(gene_seqs, gene_sites, chroms, geometry, motifs, subclasses, genes_per_chrom,
                             np.random.default_rng([seed, 3]))
    _write_fasta(out / "genome.fa", seqs)

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
    synthetic_genes = None
    if genes is not None:
        synthetic_genes = _write_genes(out / "genes", genes, gene_seqs, gene_sites, cell_types, subclasses, chroms,
                                       chrom_length, np.random.default_rng([seed, 4]))
        # the windows whose target interval reaches a gene (1 kb around it): the gene run's windows
        near = [(chrom, a + crop, b - crop) for chrom, a, b, _ in rows]
        keep = [row for row, (chrom, a, b) in zip(rows, near, strict=True)
                if any(g["chrom"] == chrom and g["start"] - 1000 < b and g["end"] + 1000 > a for g in genes)]
        pd.DataFrame(keep).to_csv(synthetic_genes.windows, sep="\t", header=False, index=False)
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
        out / "blacklist.bed", out / "dar_subclass.csv", bigwigs, geometry, pretrain_targets, sites, synthetic_genes,
    )


# an oriented core promoter (TATA box and initiator-like bases) just upstream of every TSS: what
# tells the model the strand a gene is transcribed from
CORE_PROMOTER = "GGTATAAAAGGCGCTCAGTCACTTCGAGCA"
_COMPLEMENT = bytes.maketrans(b"ACGTN", b"TGCAN")


def _specific_motifs(motifs: dict[str, str], subclasses: dict[str, tuple[str, dict[str, float]]]) -> dict[str, str]:
    """motif -> the one subclass that responds to it most (motifs without a single top left out)."""
    out = {}
    for motif in motifs:
        weights = {sub: w.get(motif, 0.0) for sub, (_, w) in subclasses.items()}
        ranked = sorted(weights.values(), reverse=True)
        if ranked[0] > 0 and (len(ranked) == 1 or ranked[0] > ranked[1]):
            out[motif] = max(weights, key=weights.get)
    return out


def _plant_genes(seqs: dict[str, np.ndarray], sites: dict, chroms: list[str], geometry: Geometry,
                 motifs: dict[str, str], subclasses: dict, per_chrom: int, rng) -> list[dict]:
    """Genes spread over the windows' target intervals, ``per_chrom`` a chromosome, on either
    strand: three exons, the core promoter just upstream of the TSS in the gene's orientation, and
    60 bp further upstream the motif of one subclass (subclasses taken in turn), which becomes a
    planted site too (accessible where that motif is). Sequence is written into ``seqs``."""
    specific = _specific_motifs(motifs, subclasses)
    order = list(specific)
    genes = []
    for c, chrom in enumerate(chroms):
        seq = seqs[chrom]
        lo = geometry.context + 1000
        hi = len(seq) - geometry.context - geometry.target_interval_bp - 1000
        slot = (hi - lo) // per_chrom
        centres = np.array([centre for centre, _ in sites[chrom]])
        for g in range(per_chrom):
            motif = order[(c * per_chrom + g) % len(order)]
            strand = "+" if rng.random() < 0.5 else "-"
            lengths = [int(x) for x in rng.integers(200, 500, size=3)]
            introns = [int(x) for x in rng.integers(400, 1000, size=2)]
            offsets, at = [], 0
            for k, length in enumerate(lengths):
                offsets.append((at, at + length))
                at += length + (introns[k] if k < 2 else 0)
            span = at + 500
            elements = len(motifs[motif]) + 60 + len(CORE_PROMOTER)
            for _ in range(200):
                tss = int(lo + g * slot + rng.integers(span, max(span + 1, slot - span)))
                if strand == "+":
                    motif_start, first, last = tss - elements, tss - elements - 200, tss + at + 200
                else:
                    motif_start, first, last = tss + 1 + 60 + len(CORE_PROMOTER), tss - at - 200, tss + elements + 200
                centre = motif_start + len(motifs[motif]) // 2
                clear = not len(centres) or np.abs(centres - centre).min() > 200
                if clear and not (seq[first:last] == ord("N")).any():
                    break
            else:
                continue
            core = CORE_PROMOTER.encode()
            if strand == "+":
                seq[tss - len(core) : tss] = np.frombuffer(core, dtype=np.uint8)
                exons = [(tss + a, tss + b) for a, b in offsets]
            else:
                seq[tss + 1 : tss + 1 + len(core)] = np.frombuffer(core[::-1].translate(_COMPLEMENT), dtype=np.uint8)
                exons = sorted((tss + 1 - b, tss + 1 - a) for a, b in offsets)
            seq[motif_start : motif_start + len(motifs[motif])] = np.frombuffer(motifs[motif].encode(), dtype=np.uint8)
            sites[chrom].append((centre, motif))
            name = f"{specific[motif]}-g{sum(gene['planted_for'] == specific[motif] for gene in genes) + 1}"
            genes.append({"gene_id": f"ENSGSYN{len(genes) + 1:08d}.1", "gene_name": name, "chrom": chrom,
                          "strand": strand, "tss": tss, "start": exons[0][0], "end": exons[-1][1], "exons": exons,
                          "motif": motif, "motif_start": motif_start,
                          "motif_length": len(motifs[motif]), "planted_for": specific[motif]})
        sites[chrom].sort()
    return genes


def _write_genes(out: Path, genes: list[dict], seqs: dict[str, np.ndarray], sites: dict, cell_types: list,
                 subclasses: dict, chroms: list[str], chrom_length: int, rng) -> SyntheticGenes:
    """genes.gtf, genes.tsv, promoter_variants.vcf, and per cell type a + and a - expression BigWig
    (coverage over the exons of the genes on that strand, as much as the cell type responds to
    each gene's promoter motif, and bidirectional enhancer RNA at every site it responds to) with
    their targets table."""
    (out / "bigwigs").mkdir(parents=True, exist_ok=True)
    _write_fasta(out / "genome.fa", seqs)
    with open(out / "genes.gtf", "w") as handle:
        handle.write("##description: synthetic genes of the enformer-transfer demo (GENCODE style)\n"
                     "##provider: enformer-transfer\n##format: gtf\n")
        for number, gene in enumerate(genes, 1):
            common = f'gene_id "{gene["gene_id"]}"; gene_type "protein_coding"; gene_name "{gene["gene_name"]}";'
            transcript = (f' transcript_id "ENSTSYN{number:08d}.1"; transcript_type "protein_coding"; '
                          f'transcript_name "{gene["gene_name"]}-201";')
            row = f'{gene["chrom"]}\tSYNTHETIC\t{{}}\t{{}}\t{{}}\t.\t{gene["strand"]}\t.\t{{}}\n'
            handle.write(row.format("gene", gene["start"] + 1, gene["end"], common + " level 2;"))
            handle.write(row.format("transcript", gene["start"] + 1, gene["end"], common + transcript + " level 2;"))
            exons = gene["exons"] if gene["strand"] == "+" else gene["exons"][::-1]
            for k, (a, b) in enumerate(exons, 1):
                handle.write(row.format("exon", a + 1, b, common + transcript +
                                        f' exon_number {k}; exon_id "ENSESYN{number:08d}{k}.1"; level 2;'))
    variants = []
    for gene in genes:
        start = gene["motif_start"]
        ref = seqs[gene["chrom"]][start : start + gene["motif_length"]].tobytes().decode()
        alt = ref
        while alt == ref:
            alt = "".join(rng.permutation(list(ref)))
        gene["variant"] = f"{gene['gene_name']}_promoter"
        variants.append(f"{gene['chrom']}\t{gene['motif_start'] + 1}\t{gene['variant']}\t{ref}\t{alt}\t.\tPASS\t"
                        f"GENE={gene['gene_id']};CELL_TYPE={gene['planted_for']}\n")
    with open(out / "promoter_variants.vcf", "w") as handle:
        handle.write("##fileformat=VCFv4.2\n##INFO=<ID=GENE,Number=1,Type=String,Description=\"gene whose promoter "
                     "motif this shuffles\">\n##INFO=<ID=CELL_TYPE,Number=1,Type=String,Description=\"the subclass "
                     "the motif was planted for\">\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        handle.writelines(variants)
    truth = pd.DataFrame([{k: g[k] for k in ("gene_id", "gene_name", "chrom", "strand", "tss", "start", "end",
                                              "motif", "planted_for", "variant")} for g in genes])
    truth.to_csv(out / "genes.tsv", sep="\t", index=False)
    files, rows = [], []
    motif_names = list(dict.fromkeys(m for _, w in subclasses.values() for m in w))
    for t, (level, name, cls, sub, cluster, members, gain) in enumerate(cell_types):
        # expression is sharper than accessibility: a cell type's weight w (0-6) acts as w^2 / 6
        weights = {m: (gain * float(np.mean([subclasses[s][1].get(m, 0.0) for s in members]))) ** 2 / 6
                   for m in motif_names}
        response = {g["gene_id"]: 0.2 + weights.get(g["motif"], 0.0) for g in genes}
        for strand, word in (("+", "plus"), ("-", "minus")):
            path = out / "bigwigs" / f"RNA_{t:02d}_{name}_{word}.bw"
            _write_expression_track(path, strand, genes, response, weights, sites, chroms, chrom_length, rng)
            files.append(path)
            rows.append({"identifier": path.stem, "level": level, "class": cls, "subclass": sub, "cluster": cluster,
                         "description": f"RNA:{name}:{strand}", "strand": strand,
                         "strand_pair": len(files) if strand == "+" else len(files) - 2})
    write_targets_table(build_targets_table(files, pd.DataFrame(rows)), out / "targets.tsv")
    return SyntheticGenes(out / "genome.fa", out / "genes.gtf", out / "targets.tsv", files, out / "promoter_variants.vcf",
                          out / "genes.tsv")


def _write_expression_track(path: Path, strand: str, genes: list[dict], response: dict[str, float],
                            weights: dict[str, float], sites: dict, chroms: list[str], chrom_length: int, rng,
                            step: int = 20) -> None:
    """A BigWig of one strand: low background, enhancer RNA (both strands) of ``weights[motif]``/2
    at every site, plus ``response[gene]`` over the exons of every gene on this strand, Poisson
    count noise, runs of ``step`` bp."""
    import pybigtools

    entries = []
    for chrom in chroms:
        signal = rng.gamma(2.0, 0.02, size=chrom_length // step).repeat(step)[:chrom_length]
        for center, motif in sites[chrom]:
            if weights.get(motif, 0.0):
                a, b = max(0, center - 300), min(chrom_length, center + 301)
                signal[a:b] += weights[motif] / 2 * _PEAK[a - (center - 300) : b - (center - 300)]
        for gene in genes:
            if gene["chrom"] == chrom and gene["strand"] == strand:
                for a, b in gene["exons"]:
                    signal[a:b] += response[gene["gene_id"]]
        runs = (rng.poisson(signal * 4) / 4.0).reshape(-1, step).mean(axis=1)
        entries.extend((chrom, i * step, (i + 1) * step, float(round(v, 4))) for i, v in enumerate(runs))
    pybigtools.open(str(path), "w").write({c: chrom_length for c in chroms}, iter(entries))


def _write_fasta(path: Path, seqs: dict[str, np.ndarray]) -> None:
    with open(path, "w") as handle:
        for chrom, seq in seqs.items():
            handle.write(f">{chrom}\n")
            text = seq.tobytes().decode()
            for i in range(0, len(text), 80):
                handle.write(text[i : i + 80] + "\n")


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
