"""examples/tiny-hg38.toml: the whole pipeline on real hg38 DNA with ten ENCODE DNase tracks as
the new tracks, run with the commands docs/guide.md gives (skipped when ../shared/data is absent)."""

import numpy as np
import pandas as pd
import pytest

from enformer_transfer import Run
from enformer_transfer.cli import main

EXAMPLE = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples" / "tiny-hg38.toml"


@pytest.mark.slow
def test_real_data_example_end_to_end(tiny_hg38, tmp_path):
    backbone, run_dir = tmp_path / "backbone", tmp_path / "run"
    # the guide's two commands, with the backbone and the run directory put in tmp_path
    assert main(["backbone", "init", "--out", str(backbone), "--dim", "48", "--depth", "1", "--heads", "2",
                 "--attn-dim-key", "16", "--n-bins", "512", "--human-tracks", "16"]) == 0
    assert main(["run", str(EXAMPLE), "--out", str(run_dir), "--set", f"embed.backbone='{backbone}'", "--quiet"]) == 0
    run = Run(run_dir)
    # the dataset reproduces the records' targets: the 32-bp values of the TFRecords, averaged per 128-bp bin
    records = np.load(tiny_hg38 / "targets_32bp.npy")  # (65 windows, 2048 bins, 74 tracks), windows.bed order
    bed = pd.read_csv(tiny_hg38 / "windows.bed", sep="\t", header=None, names=["chrom", "start", "end", "name", "split"])
    columns = list(range(24, 34))  # the ten DNase tracks
    for split in run.splits:
        rows = np.flatnonzero(bed["split"] == split)
        expected = records[rows][:, :, columns].astype(np.float32).reshape(len(rows), 512, 4, 10).mean(axis=2)
        np.testing.assert_allclose(np.asarray(run.targets(split)).astype(np.float32), expected, rtol=2e-3, atol=1e-3)
    report = (run_dir / "report" / "report.html").read_text()
    assert all(ident in report for ident in run.tracks["identifier"])
    assert set(run.evaluation("default").per_level["grouping"]) == {"biosample_type"}
    assert run.evaluation("default").per_track["ridge_pearson"].notna().all()  # the ridge baseline beside it
    # genes: a GTF written for the test windows (GENCODE's layout), Borzoi's exon protocol
    from test_genes import write_gtf

    test = run.windows("test")
    genes = [{"chrom": w.chrom, "strand": "+-"[k % 2], "id": f"ENSG{k:011d}.1", "name": f"GENE{k}",
              "transcripts": [[(int(w.start) + 5_000 + 3_000 * j, int(w.start) + 5_600 + 3_000 * j) for j in range(3)]]}
             for k, w in enumerate(test.itertuples())]
    gtf = write_gtf(tmp_path / "genes.gtf.gz", genes, gz=True)
    assert main(["evaluate", str(run_dir), "--head", "default", "--genes", str(gtf), "--gene-signal", "exons",
                 "--force", "--quiet"]) == 0
    per_track_genes = run.evaluation("default").per_track_genes
    assert len(per_track_genes) == len(run.tracks) and (per_track_genes["n_genes"] == len(test)).all()
    # gene-level variant effects: an SNV 50 bp upstream of the first exon of two genes
    from enformer_transfer.genome.sequence import Genome

    genome, rows = Genome(str(tiny_hg38 / "windows.fa")), []
    for k, w in enumerate(test.head(2).itertuples()):
        first = int(w.start) + 5_000 if k % 2 == 0 else int(w.start) + 5_600 + 6_000  # the gene's TSS side
        pos = first - 50 if k % 2 == 0 else first + 50  # 1-based, upstream on the gene's strand
        ref = genome.fetch(w.chrom, pos - 1, pos).upper()
        rows.append(f"{w.chrom}\t{pos}\t{ref}\t{'C' if ref != 'C' else 'G'}\tv{k}\n")
    vcf = tmp_path / "promoters.tsv"
    vcf.write_text("chrom\tpos\tref\talt\tid\n" + "".join(rows))
    assert main(["variants", str(run_dir), "--head", "default", "--vcf", str(vcf), "--genes", str(gtf), "--quiet"]) == 0
    gene_scores = run.variants("default").gene_scores
    assert {"GENE0", "GENE1"} <= set(gene_scores["gene_name"])
    assert gene_scores["logSED"].notna().all()
    # fine-tuning on real data: the harm gate holds (no track more than 0.01 below its frozen head)
    assert main(["finetune", str(run_dir), "--head", "finetuned", "--from-head", "default", "--steps", "12",
                 "--quiet"]) == 0
    change = pd.read_json(run_dir / "heads" / "finetuned" / "track_change.json")
    assert len(change) == len(run.tracks) and (change["change"] >= -0.01).all()
    assert main(["evaluate", str(run_dir), "--head", "finetuned", "--quiet"]) == 0
    assert main(["report", str(run_dir), "--quiet"]) == 0
    assert "finetuned" in (run_dir / "report" / "report.html").read_text()
