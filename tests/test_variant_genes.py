"""Gene-level variant scores (``variants --genes``): logSED and SUM over each gene's exon bins equal
a NumPy computation from the model's ref / alt predictions and a GTF the test writes (both
strands, genes at both window edges, a variant near two genes, a gene type left out), the
z-scores, one-line errors that write nothing, and on the demo the planted promoter variants'
cell type recovered from their gene's expression."""

import numpy as np
import pandas as pd

from enformer_transfer import Run
from enformer_transfer.cli import main
from enformer_transfer.interpret.gene_scores import gene_pairs, read_gene_table
from enformer_transfer.interpret.variants import make_scorer, plan_variants
from enformer_transfer.pipeline import promoter_variant_recovery
from enformer_transfer.rundir.config import as_config
from enformer_transfer.rundir.layout import VariantsFolder
from enformer_transfer.rundir.run import VariantEffects

HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
POS = 100_000  # the variant (chr4, held out)


def _gtf(path, genes: list[tuple]) -> str:
    """GENCODE-style lines (1-based, inclusive) for (gene_id, type, chrom, strand, exons 0-based half-open)."""
    lines = []
    for gene_id, gene_type, chrom, strand, exons in genes:
        start, end = min(a for a, _ in exons), max(b for _, b in exons)
        attributes = f'gene_id "{gene_id}"; gene_type "{gene_type}"; gene_name "{gene_id}_name";'
        lines.append(f"{chrom}\tTEST\tgene\t{start + 1}\t{end}\t.\t{strand}\t.\t{attributes}\n")
        transcript = f'{attributes} transcript_id "{gene_id}_t1";'
        lines.append(f"{chrom}\tTEST\ttranscript\t{start + 1}\t{end}\t.\t{strand}\t.\t{transcript}\n")
        for k, (a, b) in enumerate(exons, 1):
            lines.append(f"{chrom}\tTEST\texon\t{a + 1}\t{b}\t.\t{strand}\t.\t{transcript} exon_number {k};\n")
    path.write_text("".join(lines))
    return str(path)


def _variant(run, tmp_path) -> tuple[str, str, str]:
    ref = run.genome().fetch("chr4", POS - 1, POS)
    alt = "ACGT"[("ACGT".index(ref) + 1) % 4]
    vcf = tmp_path / "v.vcf"
    vcf.write_text(HEADER + f"chr4\t{POS}\tv1\t{ref}\t{alt}\t.\t.\t.\n")
    return str(vcf), ref, alt


def test_gene_scores_equal_numpy_on_both_strands_and_window_edges(demo_run, tmp_path):
    genes_run = demo_run.parent / "run-genes"
    run = Run(genes_run)
    vcf, ref, alt = _variant(run, tmp_path)
    g = run.geometry
    start = POS - 1 - g.seq_length // 2 + g.context  # the variant's output interval
    end = start + g.target_interval_bp
    gtf = _gtf(tmp_path / "small.gtf", [
        ("plus_near", "protein_coding", "chr4", "+", [(POS + 200, POS + 500), (POS + 1500, POS + 1800)]),
        ("minus_near", "protein_coding", "chr4", "-", [(POS - 3000, POS - 2500), (POS - 900, POS - 300)]),
        ("left_edge", "protein_coding", "chr4", "+", [(start - 2000, start - 1500), (start - 600, start + 200)]),
        ("right_edge", "protein_coding", "chr4", "-", [(end - 50, end + 400)]),
        ("outside", "protein_coding", "chr4", "+", [(end + 1000, end + 2000)]),
        ("other_chrom", "protein_coding", "chr3", "+", [(POS + 200, POS + 500)]),
        ("a_lncrna", "lncRNA", "chr4", "+", [(POS + 2000, POS + 2500)]),
    ])
    out = tmp_path / "genes"
    assert main(["variants", str(genes_run), "--vcf", vcf, "--genes", gtf, "--gene-types", "protein_coding",
                 "--strands", "separate", "--out", str(out), "--plot-top", "0", "--quiet"]) == 0
    effects = VariantEffects(VariantsFolder(out))
    table = effects.gene_scores
    assert pd.read_parquet(VariantsFolder(out).gene_scores_parquet).shape == table.shape
    assert sorted(table["gene_id"].unique()) == ["left_edge", "minus_near", "plus_near", "right_edge"]
    assert effects.summary["genes"]["genes_read"] == 6 and effects.summary["genes"]["variant_gene_pairs"] == 4

    # the model's predictions for the variant, every track (strands separate), on the scored scale
    config = as_config(genes_run)
    config.variants.vcf, config.variants.strands = vcf, "separate"
    plan = plan_variants(config)
    row = plan.variants.iloc[0]
    ref_pred, alt_pred = make_scorer(plan).profiles(row)  # (bins, tracks), one shift
    tracks = plan.head_tracks
    ids = list(tracks["identifier"])
    plus = [i for i in ids if i.endswith("_plus")]
    assert len(table) == 4 * len(plus) and set(table["identifier"]) == set(plus)

    expected_bins = {"plus_near": [(POS + 200, POS + 500), (POS + 1500, POS + 1800)],
                     "minus_near": [(POS - 3000, POS - 2500), (POS - 900, POS - 300)],
                     "left_edge": [(start, start + 200)], "right_edge": [(end - 50, end)]}
    tss = {"plus_near": POS + 200, "minus_near": POS - 301, "left_edge": start - 2000, "right_edge": end + 399}
    strand = {"plus_near": "+", "minus_near": "-", "left_edge": "+", "right_edge": "-"}
    for gene_id, exons in expected_bins.items():
        bins = sorted({b for a, e in exons for b in range((a - start) // g.bin_size, (e - 1 - start) // g.bin_size + 1)})
        part = table[table["gene_id"] == gene_id].set_index("identifier")
        distance = (POS - 1 - tss[gene_id]) * (1 if strand[gene_id] == "+" else -1)
        assert (part["tss_distance"] == distance).all() and (part["exon_bins"] == len(bins)).all(), gene_id
        assert (part["gene_strand"] == strand[gene_id]).all() and (part["tss"] == tss[gene_id]).all()
        for identifier in plus:
            read = identifier if strand[gene_id] == "+" else identifier.replace("_plus", "_minus")
            t = ids.index(read)
            r, a = ref_pred[bins, t].astype(np.float64).sum(), alt_pred[bins, t].astype(np.float64).sum()
            got = part.loc[identifier]
            assert got["track_read"] == read
            np.testing.assert_allclose([got["ref_sum"], got["alt_sum"], got["SUM"], got["logSED"]],
                                       [r, a, a - r, np.log2(a + 1) - np.log2(r + 1)], rtol=2e-4, atol=2e-5)
    assert table.loc[table["gene_id"] == "left_edge", "exon_bins"].iloc[0] == 2  # bins 0 and 1 only
    assert table.loc[table["gene_id"] == "right_edge", "exon_bins"].iloc[0] == 1  # the last bin only

    # z-scores: per variant and gene, across the columns of each level
    for (_, _), part in table.groupby(["gene_id", "level"]):
        for stat in ("logSED", "SUM"):
            x = part[stat].to_numpy(np.float64)
            if x.std() > 0 and len(x) > 1:
                np.testing.assert_allclose(part[f"{stat}_z"], (x - x.mean()) / x.std(), rtol=1e-3, atol=1e-3)

    # gene scores do not depend on --strands: merged pairs read the gene's strand the same way
    merged = tmp_path / "merged"
    assert main(["variants", str(genes_run), "--vcf", vcf, "--genes", gtf, "--gene-types", "protein_coding",
                 "--out", str(merged), "--plot-top", "0", "--quiet"]) == 0
    again = VariantEffects(VariantsFolder(merged)).gene_scores
    pd.testing.assert_frame_equal(again[["gene_id", "identifier", "logSED", "SUM"]],
                                  table[["gene_id", "identifier", "logSED", "SUM"]])


def test_gene_pairs_window_rule_in_numpy(demo_run, tmp_path):
    """A gene is scored for a variant when one of its exons lies in the variant's output interval."""
    run = Run(demo_run)
    g = run.geometry
    start = POS - 1 - g.seq_length // 2 + g.context
    genes = pd.DataFrame([
        {"gene_id": "in", "chrom": "chr4", "strand": "+", "start": start + 10, "end": start + 20, "tss": start + 10,
         "exons": [(start + 10, start + 20)]},
        {"gene_id": "intron_only", "chrom": "chr4", "strand": "-", "start": start - 100,
         "end": start + g.target_interval_bp + 100, "tss": start + g.target_interval_bp + 99,
         "exons": [(start - 100, start - 50), (start + g.target_interval_bp + 50, start + g.target_interval_bp + 100)]},
    ])
    variants = pd.DataFrame([{"index": 7, "genome_chrom": "chr4", "pos": POS, "ref": "A", "alt": "C"}])
    pairs = gene_pairs(variants, genes, g)
    assert list(pairs["gene"]) == [0] and list(pairs["variant"]) == [7] and list(pairs["bins"][0]) == [0]


def test_a_gtf_with_no_gene_near_any_variant_is_a_one_line_error(demo_run, tmp_path, capsys):
    genes_run = demo_run.parent / "run-genes"
    vcf, _, _ = _variant(Run(genes_run), tmp_path)
    gtf = _gtf(tmp_path / "far.gtf", [("far", "protein_coding", "chr1", "+", [(50_000, 51_000)])])
    out = tmp_path / "out"
    assert main(["variants", str(genes_run), "--vcf", vcf, "--genes", gtf, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "none of its 1 genes has an exon in the output interval" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_demo_promoter_variants_change_their_gene_in_the_planted_cell_type(demo_run, tmp_path):
    """The demo scores its planted promoter variants on its genes (run-genes): for each, the
    subclass whose expression of the variant's own gene changes most (|logSED|) is the subclass the
    promoter motif was planted for."""
    data = demo_run.parent / "data" / "genes"
    genes = read_gene_table(data / "genes.gtf")
    assert len(genes) == 40 and set(genes["strand"]) == {"+", "-"} and set(genes["gene_type"]) == {"protein_coding"}
    recovered = promoter_variant_recovery(demo_run.parent / "run-genes", data / "genes.tsv")
    hit = (recovered["most_affected"] == recovered["planted_for"]).mean()
    held_out = recovered[recovered["chrom"].isin(["chr3", "chr4"])]
    held_hit = (held_out["most_affected"] == held_out["planted_for"]).mean()
    print(f"promoter variants: {len(recovered)}; most affected subclass (gene-level |logSED|) = planted in "
          f"{100 * hit:.1f}% ({100 * held_hit:.1f}% of {len(held_out)} on held-out chromosomes)")
    assert len(recovered) == 40 and hit >= 0.9
    assert (recovered["logSED"] < 0).mean() >= 0.9  # destroying the motif lowers expression
    # the report of the gene run: its gene-level effects, strongest first, and its evaluation per gene
    import shutil

    copy = shutil.copytree(demo_run.parent / "run-genes", tmp_path / "run-genes")
    assert main(["report", str(copy), "--quiet"]) == 0
    page = (copy / "report" / "report.html").read_text()
    assert "Gene-level effects: the 15 strongest by |logSED|" in page and "40 variant-gene pairs x 12 tracks" in page
