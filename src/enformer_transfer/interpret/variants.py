"""The variants stage's work (``stages/variants.py`` runs it):
which variants change a head's predicted tracks, and in which cell types.

``enformer-transfer variants RUN_DIR --head NAME --vcf FILE`` scores every variant of a VCF (or a
TSV) in every track of a head, frozen-trunk or fine-tuned, from sequence (docs/variants.md):
Basenji / baskerville's scores per variant and track, the z-score of each score across the
tracks of one level (specificity: "affects astrocytes only" is one column), and optionally an
empirical p-value from the variant in shuffled copies of its context.

The stage in four steps: ``plan_variants`` (read the variants and check them against the
genome and the head, before any compute), the key, ``score_chunks`` (chunks of variants, each
written atomically and logged, so a killed run resumes; torchrun / SLURM ranks take disjoint
chunks), ``finish_variants`` (tables, summaries, figures, BigWigs).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.transform import TrackParams
from ..devices import (
    Dist,
    barrier,
    dist_from_env,
    resolve_device,
    resolve_precision,
)
from ..errors import EnformerTransferError, InputError
from ..fs import atomic_path, write_json_atomic
from ..progress import Progress
from ..results import Run
from ..rundir import store
from ..rundir.config import RunConfig, VariantsConfig
from ..rundir.layout import VariantsFolder
from ..targets.table import strand_partners
from . import outputs
from .alleles import PLACEMENT_SHIFT
from .gene_scores import (
    GENE_STATS,
    GeneColumns,
    GeneScorer,
    gene_pairs,
    gene_table,
    read_gene_table,
)
from .scores import StrandMerge, specificity
from .untransform import untransform_for
from .vcf import match_genome, read_variants

log = logging.getLogger("enformer_transfer")

TABLE_DTYPES = {"variant": str, "id": str, "chrom": str, "ref": str, "alt": str, "kind": str, "genome_chrom": str,
                "flipped": bool}


@dataclass
class VariantsPlan:
    """Validated inputs of the variants stage."""

    config: RunConfig
    run: Run
    head: object  # heads.checkpoint.Head
    head_tracks: pd.DataFrame  # the head's tracks (rows of the run's targets table), what the model predicts
    merge: StrandMerge | None  # --strands merge with stranded pairs: one scored column per pair
    tracks: pd.DataFrame  # the scored columns: the head's tracks, or one row per strand pair when merged
    groups: np.ndarray  # per scored column: its level (the value of the level column), for the z-scores
    level_column: str | None
    variants: pd.DataFrame  # accepted variants in file order, with index and genome_chrom
    skipped: pd.DataFrame
    mismatches: pd.DataFrame
    folder: Path
    device: object  # torch.device
    precision: str
    dist: Dist
    genes: pd.DataFrame | None = None  # --genes: the GTF's genes on the genome's chromosomes
    gene_pairs: pd.DataFrame | None = None  # (variant, gene) with exons in the variant's output interval
    gene_columns: GeneColumns | None = None
    gene_groups: np.ndarray | None = None  # per gene column: its level, for the z-scores

    @property
    def settings(self) -> VariantsConfig:
        return self.config.variants


def plan_variants(config: RunConfig) -> VariantsPlan:
    """Check every input of the stage; nothing is computed or written yet."""
    # torch comes with it: imported when the stage runs, not with the CLI
    p = config.variants
    run = Run.of(config, "variants")
    head = run.head(p.head)  # a head of this run, compatible with its tracks and geometry
    track_index = head.check_compatible(run)
    head_tracks = run.tracks.iloc[track_index].reset_index(drop=True)
    partners = strand_partners(head_tracks)
    merge = None
    if p.strands == "merge" and partners is not None:
        merge = StrandMerge.from_partners(partners, list(head_tracks["identifier"]))
    tracks = head_tracks if merge is None else merge.tracks(head_tracks)
    if p.vcf is None:
        raise InputError("variants: give --vcf FILE (VCF, bgzipped VCF, or a TSV of chrom, pos, ref, alt, id)")
    g = run.geometry
    bad_shifts = [k for k in p.shifts if abs(k) >= g.bin_size]
    if bad_shifts or len(set(p.shifts)) != len(p.shifts) or not p.shifts:
        raise InputError(f"variants --shifts {','.join(map(str, p.shifts))}: give distinct shifts smaller than "
                         f"a bin ({g.bin_size} bp), e.g. --shifts=-1,0,1")
    if p.summary_stat not in p.stats:
        raise InputError(f"variants --summary-stat {p.summary_stat} is not among --stats ({','.join(p.stats)})")
    level_column, groups = _levels(tracks, p.level_column)
    genome = run.genome(p.chrom_aliases)
    read = read_variants(p.vcf)
    variants, mismatches = match_genome(read.variants, genome, p.vcf, p.ref_mismatch)
    skipped = read.skipped
    too_long = variants["ref"].str.len().combine(variants["alt"].str.len(), max) > g.target_interval_bp // 2
    if too_long.any():
        skipped = pd.concat([skipped, variants[too_long].assign(
            reason=f"allele longer than half the target interval ({g.target_interval_bp // 2} bp)")[skipped.columns]])
        variants = variants[~too_long]
    if variants.empty:
        raise InputError(f"{p.vcf}: no variant left to score ({len(read.variants)} read, {len(skipped)} left out, "
                         f"{len(mismatches)} REF mismatches)")
    variants = variants.reset_index(drop=True)
    variants.insert(0, "index", np.arange(len(variants)))
    unknown = [a for a in p.plot_variants if not ((variants["variant"] == a) | (variants["id"] == a)).any()]
    if unknown:
        raise InputError(f"variants --plot-variants: {', '.join(unknown[:3])} not among the scored variants "
                         "(name them by ID or chrom:pos:ref:alt)")
    genes = pairs = columns = gene_groups = None
    if p.genes is not None:
        genes, pairs, columns = _plan_genes(p, variants, genome, head_tracks, g)
        gene_groups = _levels(columns.tracks(head_tracks), level_column)[1]
    dist = dist_from_env()
    device = resolve_device(p.device, dist)
    folder = p.out or run.layout.variants(p.head).path
    return VariantsPlan(config, run, head, head_tracks, merge, tracks, groups, level_column, variants,
                        skipped.reset_index(drop=True), mismatches, folder, device,
                        resolve_precision(p.precision, device), dist, genes, pairs, columns, gene_groups)


def _plan_genes(p: VariantsConfig, variants: pd.DataFrame, genome, head_tracks: pd.DataFrame, geometry):
    """The GTF's genes, every (variant, gene) pair to score, and the gene-level columns; refused
    when no gene has an exon in any variant's output interval."""
    genes = read_gene_table(p.genes, p.gene_types, genome.names)
    pairs = gene_pairs(variants, genes, geometry, PLACEMENT_SHIFT[p.placement])
    if pairs.empty:
        raise InputError(f"variants --genes {p.genes}: none of its {len(genes)} genes has an exon in the output "
                         f"interval ({geometry.target_interval_bp} bp) of any of the {len(variants)} variants; "
                         "check the GTF's assembly and chromosome names (--chrom-aliases)")
    return genes, pairs, GeneColumns.from_tracks(head_tracks)


def _levels(tracks: pd.DataFrame, column: str | None) -> tuple[str | None, np.ndarray]:
    """The level of each track (the z-scores compare tracks of one level)."""
    if column is None:
        column = "level" if "level" in tracks.columns else None
    elif column not in tracks.columns:
        raise InputError(f"variants --level-column {column!r}: the head's tracks have no such column "
                         f"(they have {', '.join(tracks.columns)})")
    if column is None:
        return None, np.full(len(tracks), "all", dtype=object)
    return column, tracks[column].astype(str).replace({"nan": "", "None": ""}).to_numpy(dtype=object)


def build_variants(plan: VariantsPlan, out: VariantsFolder, progress: bool) -> dict:
    started = time.time()
    if plan.dist.primary and not out.variants.is_file():
        write_inputs(plan, out)
    barrier(plan.dist)
    table = pd.read_csv(out.variants, sep="\t", dtype=TABLE_DTYPES, keep_default_na=False)
    scorer = make_scorer(plan)
    done = set(_chunk_checksums(out))
    left = [c for c in dict.fromkeys(table["chunk"]) if c not in done][plan.dist.rank :: plan.dist.world]
    barrier(plan.dist)  # every rank has read the logs before anyone writes
    n_scored = score_chunks(plan, out, scorer, table, left, progress)
    barrier(plan.dist)
    if not plan.dist.primary:
        return {}
    return finish_variants(plan, out, scorer, table, n_scored, time.time() - started)


def write_inputs(plan: VariantsPlan, out: VariantsFolder) -> None:
    """The variants to score (with the chunk of each: a resumed run keeps this split whatever
    --chunk-variants says then), those left out, and the REF mismatches."""
    table = plan.variants.assign(chunk=plan.variants["index"] // plan.settings.chunk_variants)
    plan.skipped.to_csv(out.skipped, sep="\t", index=False)
    plan.mismatches.to_csv(out.ref_mismatches, sep="\t", index=False)
    with atomic_path(out.variants) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def make_scorer(plan: VariantsPlan):
    """The end-to-end model (run backbone + head, or the fine-tuned trunk + head) on this rank's
    device, in the plan's precision, inside a ``VariantScorer``."""
    import torch

    from ..backbone.model import load_sequence_model
    from .scorer import VariantScorer

    p = plan.settings
    model, _ = load_sequence_model(plan.run, p.head, str(plan.device))
    model.precision = plan.precision
    if p.compile:
        model.trunk = torch.compile(model.trunk)
    # each track's transform as the head records it; the order is the dataset's (the head's targets)
    untransform = untransform_for(p.scale, TrackParams.from_table(plan.head.tracks),
                                  plan.run.dataset_config.transform_order)
    genome = plan.run.genome(p.chrom_aliases)
    genes = None if plan.genes is None else GeneScorer(plan.gene_pairs, plan.genes, plan.gene_columns)
    return VariantScorer(model, genome, plan.run.geometry, plan.run.embed_config.pad_value, p.stats,
                         p.shifts, p.rc, strand_partners(plan.head_tracks), p.batch_size, p.null_shuffles,
                         plan.config.seed, offset=PLACEMENT_SHIFT[p.placement], untransform=untransform,
                         merge=plan.merge, genes=genes)


def _chunk_checksums(out: VariantsFolder) -> dict[int, list[str]]:
    """Chunks finished by any rank of any earlier or current run, with their checksums."""
    done: dict[int, list[str]] = {}
    for log_file in sorted(out.progress.glob("chunks.rank*.txt")):
        done.update(store.ProgressLog(log_file).entries())
    return done


def score_chunks(plan: VariantsPlan, out: VariantsFolder, scorer, table: pd.DataFrame, chunks: list[int],
                 progress: bool) -> int:
    """Score this rank's chunks; each is written atomically, then logged."""
    rank = plan.dist.rank
    progress_log = store.ProgressLog(out.progress / f"chunks.rank{rank}.txt")
    out.chunks.mkdir(parents=True, exist_ok=True)
    todo = table[table["chunk"].isin(chunks)]
    bar = Progress(len(todo), f"variants (rank {rank})" if plan.dist.active else "variants", unit="variants",
                   enabled=progress)
    for chunk, part in todo.groupby("chunk", sort=False):
        values = scorer.score(part)
        with atomic_path(out.chunk(int(chunk))) as tmp:
            np.savez(tmp, **values)
        progress_log.add(int(chunk), [store.checksum(values[name]) for name in sorted(values)])
        bar.update(len(part))
    return len(todo)


def load_chunks(out: VariantsFolder, table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every chunk's scores, in variant order, each checked against the checksums logged when it
    was written."""
    done = _chunk_checksums(out)
    chunks = list(dict.fromkeys(table["chunk"]))
    missing = [c for c in chunks if c not in done]
    if missing:
        raise EnformerTransferError(f"variants: {len(missing)} chunk(s) of variants missing; rerun to resume")
    parts: dict[str, list[np.ndarray]] = {}
    for chunk in chunks:
        with np.load(out.chunk(chunk)) as data:
            values = {name: data[name] for name in data.files}
        if [store.checksum(values[name]) for name in sorted(values)] != done[chunk]:
            raise EnformerTransferError(f"{out.chunk(chunk)}: differs from what was written; delete it and its "
                                        "line in progress/ and rerun, or rerun with --force")
        for name, array in values.items():
            parts.setdefault(name, []).append(array)
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}


def finish_variants(plan: VariantsPlan, out: VariantsFolder, scorer, table: pd.DataFrame, n_scored: int,
                    seconds: float) -> dict:
    """Tables, summaries, figures and BigWigs from the chunks; the stage's stats."""
    p = plan.settings
    values = load_chunks(out, table)
    gene_values = {name: values.pop(name) for name in list(values) if name.startswith("gene_")}
    genes_summary = _write_gene_scores(plan, out, table, gene_values) if plan.genes is not None else None
    for stat in p.stats:
        values[f"{stat}_z"] = specificity(values[stat], plan.groups).astype(np.float32)
    columns = outputs.score_columns(p.stats, p.null_shuffles > 0)
    scores = outputs.long_table(table, plan.tracks, values, columns)
    scores.to_csv(out.scores, sep="\t", index=False, float_format="%.6g")
    parquet = _write_parquet(scores, out.scores_parquet)
    conventions = {"placement": p.placement, "scale": p.scale, "strands": p.strands, "ref_mismatch": p.ref_mismatch}
    matrix = outputs.write_matrix(out.scores_h5, table, plan.tracks, values, columns, p.stats, conventions)
    top = outputs.top_variants(table, plan.tracks, plan.groups, values, p.summary_stat, p.top)
    top.to_csv(out.top_variants, sep="\t", index=False, float_format="%.6g")
    affected = outputs.most_affected(table, plan.tracks, plan.groups, values, p.summary_stat)
    affected.to_csv(out.most_affected, sep="\t", index=False, float_format="%.6g")
    n_sequences = scorer.sequences  # scoring passes (the figures' passes come next)
    n_flipped = int((plan.mismatches["action"] == "flipped").sum())
    ids = list(plan.head_tracks["identifier"])
    merged_pairs = [] if plan.merge is None else [[ids[plan.merge.first[c]], ids[plan.merge.second[c]]]
                                                  for c in plan.merge.pairs]
    chosen = outputs.chosen_variants(table, values, p.summary_stat, p.plot_variants, p.plot_top)
    figures = outputs.draw_variants(out, scorer, table, plan.tracks, plan.groups, values, p.summary_stat, chosen,
                                    plan.run.geometry, p.bigwig)
    summary = {
        "head": p.head, "finetuned": plan.head.finetuned, "variants": len(table),
        "kinds": table["kind"].value_counts().to_dict(),
        "skipped": plan.skipped["reason"].value_counts().to_dict(), "ref_mismatches": len(plan.mismatches),
        "flipped": n_flipped, "ref_mismatches_dropped": len(plan.mismatches) - n_flipped, **conventions,
        "merged_strand_pairs": merged_pairs,
        "tracks": len(plan.tracks), "stats": list(p.stats), "summary_stat": p.summary_stat,
        "level_column": plan.level_column,
        "levels": {str(g): list(plan.tracks["identifier"][plan.groups == g]) for g in dict.fromkeys(plan.groups)},
        "rc": p.rc, "shifts": list(p.shifts), "null_shuffles": p.null_shuffles, "precision": plan.precision,
        "drawn": [table["variant"].iloc[i] for i in chosen], "figures": len(figures), "parquet": parquet,
        "matrix": matrix,
        "most_affected": _most_affected_counts(affected),
        **({"genes": genes_summary} if genes_summary is not None else {}),
    }
    write_json_atomic(out.summary, summary)
    rate = n_scored / max(seconds, 1e-9)
    print(f"variants: {len(table)} variants x {len(plan.tracks)} tracks of head {p.head!r} ({n_scored} scored in "
          f"{seconds:.1f} s, {rate:.2f} variants/s, {n_sequences} sequences) -> {plan.folder}",
          flush=True)
    if genes_summary is not None:
        print(f"variants: gene-level scores: {genes_summary['variant_gene_pairs']} variant-gene pairs "
              f"({genes_summary['genes_scored']} of {genes_summary['genes_read']} genes of {p.genes.name}) x "
              f"{genes_summary['columns']} tracks -> {out.gene_scores_parquet.name if genes_summary['parquet'] else out.gene_scores.name}",
              flush=True)
    if n_flipped:
        print(f"variants: {n_flipped} REF mismatch(es) flipped (ALT is the genome's allele; scored ALT - REF as the "
              "VCF states; listed in ref_mismatches.tsv)", flush=True)
    if len(plan.skipped) or len(plan.mismatches) > n_flipped:
        log.warning("variants: %d allele(s) left out (%s), %d REF mismatch(es) dropped (ref_mismatches.tsv)",
                    len(plan.skipped), "; ".join(f"{k}: {v}" for k, v in summary["skipped"].items()) or "-",
                    len(plan.mismatches) - n_flipped)
    return {"variants": len(table), "tracks": len(plan.tracks), "skipped": len(plan.skipped),
            "ref_mismatches": len(plan.mismatches), "flipped": n_flipped, "scored_this_run": n_scored,
            "sequences_this_run": n_sequences,
            "seconds": round(seconds, 2),
            "variants_per_second": round(rate, 3), "device": str(plan.device), "world_size": plan.dist.world}


def _write_gene_scores(plan: VariantsPlan, out: VariantsFolder, table: pd.DataFrame,
                       values: dict[str, np.ndarray]) -> dict:
    """gene_scores.tsv / .parquet: one row per variant, gene and column (strand pairs read on the
    gene's strand), with the z-scores across each level's columns."""
    for stat in GENE_STATS:
        values[f"gene_{stat}_z"] = specificity(values[f"gene_{stat}"], plan.gene_groups).astype(np.float32)
    genes = gene_table(table, plan.genes, plan.gene_pairs, plan.gene_columns, plan.head_tracks, values,
                       outputs.track_columns)
    genes.to_csv(out.gene_scores, sep="\t", index=False, float_format="%.6g")
    parquet = _write_parquet(genes, out.gene_scores_parquet)
    pairs = genes.drop_duplicates(["variant", "gene_id"])
    return {"gtf": str(plan.settings.genes), "gene_types": list(plan.settings.gene_types),
            "genes_read": len(plan.genes), "genes_scored": int(pairs["gene_id"].nunique()),
            "variant_gene_pairs": len(pairs), "variants_with_genes": int(pairs["variant"].nunique()),
            "columns": len(plan.gene_columns.plus), "parquet": parquet}


def _most_affected_counts(affected: pd.DataFrame) -> dict:
    """Per level: how many variants have each track as their most affected."""
    return {str(level): part["most_affected"].value_counts().to_dict()
            for level, part in affected.groupby("level", sort=False)}


def _write_parquet(scores: pd.DataFrame, path: Path) -> bool:
    """The table as Parquet too, when pyarrow is installed (it is a dependency of the model extra)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        log.warning("variants: pyarrow is not installed; the scores are written as TSV only")
        return False
    scores.to_parquet(path, index=False)
    return True
