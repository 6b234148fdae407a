"""Genes from a GTF, stranded tracks and ``evaluate --genes``: the reader, the placement in windows,
and gene-level metrics equal to a NumPy computation written here from the stored predictions, the
targets and a GTF this file writes (both protocols, both strands, genes at window edges)."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from enformer_transfer.errors import InputError
from enformer_transfer.genes import place_genes, read_genes
from enformer_transfer.genome.chroms import ChromNames
from enformer_transfer.targets.table import gene_tracks, read_targets_table


def _gtf_line(chrom, feature, start, end, strand, gene_id, transcript_id=None, gene_type="protein_coding",
              gene_name=None, type_key="gene_type"):
    """One GTF row from 0-based half-open coordinates."""
    attributes = f'gene_id "{gene_id}"; {type_key} "{gene_type}";'
    if gene_name:
        attributes += f' gene_name "{gene_name}";'
    if transcript_id:
        attributes += f' transcript_id "{transcript_id}";'
    return "\t".join([chrom, "TEST", feature, str(start + 1), str(end), ".", strand, ".", attributes])


def write_gtf(path, genes, gz=False, exons=True, type_key="gene_type"):
    """genes: dicts with chrom, strand, id, transcripts (lists of exons, 0-based half-open), type."""
    lines = ["##description: written by test_genes.py", "#!genome-build test"]
    for g in genes:
        spans = [e for t in g["transcripts"] for e in t]
        start, end = min(a for a, _ in spans), max(b for _, b in spans)
        lines.append(_gtf_line(g["chrom"], "gene", start, end, g["strand"], g["id"], None, g.get("type", "protein_coding"),
                               g.get("name"), type_key))
        for k, transcript in enumerate(g["transcripts"]):
            tid = f"{g['id']}.t{k}"
            lines.append(_gtf_line(g["chrom"], "transcript", min(a for a, _ in transcript), max(b for _, b in transcript),
                                   g["strand"], g["id"], tid, g.get("type", "protein_coding"), g.get("name"), type_key))
            if exons:
                for a, b in transcript:
                    lines.append(_gtf_line(g["chrom"], "exon", a, b, g["strand"], g["id"], tid,
                                           g.get("type", "protein_coding"), g.get("name"), type_key))
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


SMALL = [
    {"chrom": "chr1", "strand": "+", "id": "P", "name": "PLUS", "transcripts": [[(100, 150), (140, 200)], [(120, 130), (300, 400)]]},
    {"chrom": "chr1", "strand": "-", "id": "M", "transcripts": [[(1000, 1100), (1900, 2000)], [(1500, 1800)]],
     "type": "lncRNA"},
    {"chrom": "chr2", "strand": "+", "id": "Q", "transcripts": [[(5000, 5100)]]},
]


@pytest.mark.parametrize("gz", [False, True])
def test_read_genes(tmp_path, gz):
    path = write_gtf(tmp_path / ("a.gtf.gz" if gz else "a.gtf"), SMALL, gz=gz)
    genes = read_genes(path).set_index("gene_id")
    assert list(genes.loc["P", ["chrom", "strand", "start", "end", "tss"]]) == ["chr1", "+", 100, 400, 100]
    assert genes.loc["P", "gene_name"] == "PLUS" and genes.loc["M", "gene_name"] == "M"  # id when no name
    assert genes.loc["P", "tss_all"] == [100, 120]
    assert [tuple(e) for e in genes.loc["P", "exons"]] == [(100, 200), (300, 400)]  # merged across transcripts
    assert genes.loc["M", "tss"] == 1999 and genes.loc["M", "tss_all"] == [1799, 1999]  # - strand: end - 1
    assert [tuple(e) for e in genes.loc["M", "exons"]] == [(1000, 1100), (1500, 1800), (1900, 2000)]
    assert list(read_genes(path, ["lncRNA"])["gene_id"]) == ["M"]
    # Ensembl: gene_biotype, chromosomes named 1 against a genome naming them chr1
    ensembl = [dict(g, chrom=g["chrom"].removeprefix("chr")) for g in SMALL]
    path = write_gtf(tmp_path / "e.gtf", ensembl, type_key="gene_biotype")
    genes = read_genes(path, ["protein_coding"], ChromNames(["chr1", "chr2"], "auto"))
    assert sorted(genes["gene_id"]) == ["P", "Q"] and set(genes["chrom"]) == {"chr1", "chr2"}


def test_place_genes_once_in_the_most_central_window():
    genes = pd.DataFrame({"gene_id": ["a", "b", "c", "d"], "chrom": ["chr1"] * 3 + ["chr9"],
                          "tss": [1600, 0, 2047, 10], "strand": ["+", "-", "+", "+"]})
    # overlapping target intervals: a's TSS lies in both, nearer the second's centre
    windows = pd.DataFrame({"chrom": ["chr1", "chr1"], "start": [0, 1024], "end": [2048, 3072]})
    placed = place_genes(genes, windows, 128).set_index("gene_id")
    assert sorted(placed.index) == ["a", "b", "c"]  # d: no window on chr9
    assert placed.loc["a", "window"] == 1 and placed.loc["a", "tss_bin"] == (1600 - 1024) // 128
    assert placed.loc["b", "tss_bin"] == 0 and placed.loc["c", "window"] == 1  # 2047: 1 bp from window 0's end
    with pytest.raises(InputError, match="another assembly"):
        place_genes(genes.assign(chrom="chrZ"), windows, 128)


@pytest.mark.parametrize("case, message", [
    ("no_exons", "no exon rows"),
    ("not_gtf", "not a GTF"),
    ("gff3", "GFF3"),
    ("chrom", "no chromosome chr2"),
    ("type", "--gene-types protein_codng"),
])
def test_bad_gtf_one_line_errors(tmp_path, case, message):
    path = tmp_path / "bad.gtf"
    if case == "no_exons":
        write_gtf(path, SMALL, exons=False)
    elif case == "not_gtf":
        path.write_text("chrom\tstart\tend\nchr1\t1\t2\n")
    elif case == "gff3":
        path.write_text("chr1\tx\tgene\t1\t10\t.\t+\t.\tID=g1\nchr1\tx\texon\t1\t10\t.\t+\t.\tParent=g1\n")
    else:
        write_gtf(path, SMALL)
    with pytest.raises(InputError) as err:
        read_genes(path, ["protein_codng"] if case == "type" else None, ["chr1"] if case == "chrom" else None)
    assert message in str(err.value) and "\n" not in str(err.value) and str(path) in str(err.value)


def test_strand_column_and_pairs(tmp_path):
    bw = tmp_path / "t.bw"
    bw.write_bytes(b"")
    rows = ["index\tidentifier\tfile\tclip\tscale\tsum_stat\tdescription\tstrand",
            "0\tRNA_A+\tt.bw\t32\t2\tmean\tA\t+", "1\tRNA_A-\tt.bw\t32\t2\tmean\tA\t-",
            "2\tATAC_A\tt.bw\t32\t2\tmean\tA\t.", "3\tRNA_B\tt.bw\t32\t2\tmean\tB\t"]
    (tmp_path / "t.tsv").write_text("\n".join(rows) + "\n")
    tracks = read_targets_table(tmp_path / "t.tsv", check_files=False)
    assert list(tracks["strand"]) == ["+", "-", ".", "."]
    assert [tuple(t) for t in gene_tracks(tracks)] == [("RNA_A", 0, 1), ("ATAC_A", 2, 2), ("RNA_B", 3, 3)]
    # Basenji's strand_pair column, identifiers without a suffix: the strand column says which is +
    paired = tracks.assign(identifier=["x", "y", "z", "w"], strand=["-", "+", ".", "."], strand_pair=[1, 0, 2, 3])
    assert [tuple(t) for t in gene_tracks(paired)][0] == ("y/x", 1, 0)
    (tmp_path / "bad.tsv").write_text("\n".join(rows[:2] + [rows[2].replace("\t-", "\tminus")]) + "\n")
    with pytest.raises(InputError, match=r"bad.tsv row 3: strand 'minus' is not \+, - or \."):
        read_targets_table(tmp_path / "bad.tsv", check_files=False)


# --- evaluate --genes on the demo ----------------------------------------------------------------


def _demo_genes(windows: pd.DataFrame, bin_size: int) -> list[dict]:
    """Genes in the test windows: + and - genes mid-window with two transcripts, genes whose TSS
    is in the first or last bin, exons running past the window's end, a gene outside every window."""
    genes = []
    for k, w in enumerate(windows.itertuples()):
        s, e = int(w.start), int(w.end)
        mid = s + (e - s) // 2 + 37 * k
        genes.append({"chrom": w.chrom, "strand": "+", "id": f"p{k}",
                      "transcripts": [[(mid, mid + 300), (mid + 900, mid + 1500)], [(mid + 200, mid + 600)]]})
        genes.append({"chrom": w.chrom, "strand": "-", "id": f"m{k}",
                      "transcripts": [[(mid - 2000 - 50 * k, mid - 1700), (mid - 900, mid - 500 + 11 * k)]]})
        if k % 2 == 0:
            genes.append({"chrom": w.chrom, "strand": "+", "id": f"left{k}", "transcripts": [[(s, s + 200)]]})
            genes.append({"chrom": w.chrom, "strand": "+", "id": f"past{k}", "transcripts": [[(e - 3 * bin_size, e + 900)]]})
        else:
            genes.append({"chrom": w.chrom, "strand": "-", "id": f"right{k}", "transcripts": [[(e - 500, e)]]})
            genes.append({"chrom": w.chrom, "strand": "-", "id": f"lnc{k}", "type": "lncRNA",
                          "transcripts": [[(mid + 3000, mid + 3400)]]})
    last = windows.iloc[-1]
    genes.append({"chrom": last.chrom, "strand": "+", "id": "outside",
                  "transcripts": [[(int(last.end) + 10_000_000, int(last.end) + 10_000_500)]]})
    return genes


def _numpy_reference(run, genes: list[dict], split: str, signal: str, pairs, levels, tss_bins=1):
    """Observed and predicted sums per gene written from scratch: the stored predictions, the targets."""
    from enformer_transfer.rundir import store

    windows, g = run.windows(split), run.geometry
    predictions = store.open_array(run.layout.evaluation("default").predictions_store, split)
    targets = run.targets(split)
    obs, pred, ids = [], [], []
    for gene in genes:
        tss = gene_tss(gene)
        hit = windows.index[(windows["chrom"] == gene["chrom"]) & (windows["start"] <= tss) & (tss < windows["end"])]
        if not len(hit):
            continue
        w = int(hit[0])
        start = int(windows.loc[w, "start"])
        b = (tss - start) // g.bin_size
        if signal == "tss":
            bins = [i for i in range(b - tss_bins, b + tss_bins + 1) if 0 <= i < g.n_bins]
        else:
            bins = sorted({i for t in gene["transcripts"] for a, e in t
                           for i in range((a - start) // g.bin_size, (e - 1 - start) // g.bin_size + 1)
                           if 0 <= i < g.n_bins})
        o = np.asarray(targets[w], dtype=np.float64)[bins].sum(0)
        p = np.asarray(predictions[w], dtype=np.float64)[bins].sum(0)
        column = [t[1] if gene["strand"] == "+" else t[2] for t in pairs]
        obs.append(o[column])
        pred.append(p[column])
        ids.append(gene["id"])
    return ids, np.log1p(np.maximum(np.array(obs), 0)), np.log1p(np.maximum(np.array(pred), 0))


def gene_tss(gene: dict) -> int:
    spans = [e for t in gene["transcripts"] for e in t]
    return min(a for a, _ in spans) if gene["strand"] == "+" else max(b for _, b in spans) - 1


def _pearson(x, y):
    return np.corrcoef(x, y)[0, 1]


@pytest.mark.slow
def test_evaluate_genes_equals_numpy(demo_run, tmp_path, monkeypatch):
    """``evaluate --genes`` on a copy of the demo, with its first two tracks made a strand pair:
    every gene metric equals NumPy on the stored predictions and targets, both protocols."""
    from enformer_transfer.cli import main
    from enformer_transfer.results import Run
    from enformer_transfer.rundir.run import RunDirectory as BaseRun

    run_dir = tmp_path / "run"
    shutil.copytree(demo_run, run_dir, ignore=shutil.ignore_patterns("report", "dar", "variants*"))
    run = Run(run_dir)
    tracks = run.tracks.copy()
    tracks["strand"] = ["+", "-"] + ["."] * (len(tracks) - 2)
    tracks["strand_pair"] = [1, 0] + list(tracks["index"][2:])
    monkeypatch.setattr(BaseRun, "tracks", property(lambda self: tracks))
    test = run.windows("test").head(6)
    genes = _demo_genes(test, run.geometry.bin_size)
    gtf = write_gtf(tmp_path / "genes.gtf.gz", genes, gz=True)
    from enformer_transfer.rundir.config import load_config

    config = load_config(run_dir / "config.toml")
    config.run_dir = run_dir
    config.evaluate.head, config.evaluate.splits = "default", ["test"]
    config.evaluate.genes, config.evaluate.gene_types = gtf, ["protein_coding"]
    from enformer_transfer.stages.evaluate import evaluate_head

    folder = evaluate_head(config, force=True, progress=False)
    head_tracks = Run(run_dir).tracks.iloc[run.head("default").check_compatible(Run(run_dir))].reset_index(drop=True)
    pairs = gene_tracks(head_tracks)
    assert pairs[0][1:] == (0, 1) and len(pairs) == len(head_tracks) - 1
    levels = (head_tracks["level"].iloc[[p[1] for p in pairs]].astype(str).to_numpy() if "level" in head_tracks
              else np.full(len(pairs), "all"))
    kept = [g for g in genes if g.get("type", "protein_coding") == "protein_coding"]
    for signal in ("tss", "exons"):
        if signal == "exons":  # the command line, the Borzoi protocol
            monkeypatch.setattr(BaseRun, "tracks", property(lambda self: tracks))
            assert main(["evaluate", str(run_dir), "--head", "default", "--splits", "test", "--genes", str(gtf),
                         "--gene-types", "protein_coding", "--gene-signal", "exons", "--quiet", "--force"]) == 0
        ids, obs, pred = _numpy_reference(Run(run_dir), kept, "test", signal, pairs, levels)
        assert "outside" not in ids and {"left0", "right1", "past0", "m0"} <= set(ids)
        per_track = pd.read_csv(folder / "per_track_genes.csv")
        long = pd.read_parquet(folder / "genes.parquet")
        assert sorted(long["gene_id"].unique()) == sorted(ids)
        wide = long.pivot(index="gene_id", columns="identifier", values="observed_log1p").loc[ids]
        np.testing.assert_allclose(wide[[p[0] for p in pairs]].to_numpy(), obs, rtol=1e-6, atol=1e-6)
        assert list(per_track["identifier"]) == [p[0] for p in pairs] and (per_track["n_genes"] == len(ids)).all()
        centred_o, centred_p = obs.copy(), pred.copy()
        for level in set(levels):
            cols = levels == level
            centred_o[:, cols] -= obs[:, cols].mean(1, keepdims=True)
            centred_p[:, cols] -= pred[:, cols].mean(1, keepdims=True)
        for t in range(len(pairs)):
            expected = _pearson(obs[:, t], pred[:, t])
            assert per_track["pearson_across_genes"][t] == pytest.approx(expected, abs=1e-6)
            ranks = pd.DataFrame({"o": obs[:, t], "p": pred[:, t]}).rank()
            assert per_track["spearman_across_genes"][t] == pytest.approx(_pearson(ranks["o"], ranks["p"]), abs=1e-6)
            assert per_track["pearson_specificity"][t] == pytest.approx(_pearson(centred_o[:, t], centred_p[:, t]),
                                                                        abs=1e-6)
        per_gene = pd.read_csv(folder / "per_gene.csv")
        first = next(level for level in levels if (levels == level).sum() >= 3)
        cols = np.flatnonzero(levels == first)
        row = per_gene[(per_gene["gene_id"] == ids[0]) & (per_gene["level"] == first)]
        assert row["pearson_across_tracks"].iloc[0] == pytest.approx(_pearson(obs[0, cols], pred[0, cols]), abs=1e-6)
        summary = json.loads((folder / "summary.json").read_text())["genes"]
        assert summary["gene_signal"] == signal and summary["n_genes"] == len(ids)
        assert summary["pearson_across_genes_mean"] == pytest.approx(per_track["pearson_across_genes"].mean())
        if "ridge" in summary["baselines"]:
            assert per_track["ridge_pearson_across_genes"].notna().all()
        index = json.loads((folder / "figures" / "index.json").read_text())
        assert {"genes_scatter", "genes_specificity"} <= {f["name"] for f in index}
    # the report shows the gene section; an edited GTF makes the evaluation stale
    assert main(["report", str(run_dir), "--quiet"]) == 0
    html = (run_dir / "report" / "report.html").read_text()
    assert "Pearson across genes" in html and "vary most across cell types" in html
    write_gtf(gtf, kept[:-1], gz=True)
    assert main(["evaluate", str(run_dir), "--head", "default", "--splits", "test", "--genes", str(gtf),
                 "--gene-types", "protein_coding", "--gene-signal", "exons", "--quiet"]) == 2


@pytest.mark.slow
def test_evaluate_genes_bad_inputs_write_nothing(demo_run, tmp_path, capsys):
    """A GTF of another assembly, a GTF without exons and a chromosome the genome lacks: exit 2
    with one line, and no evaluation folder written."""
    from enformer_transfer.cli import main
    from enformer_transfer.results import Run

    run_dir = tmp_path / "run"
    shutil.copytree(demo_run, run_dir, ignore=shutil.ignore_patterns("report", "dar", "variants*", "evaluation"))
    windows = Run(run_dir).windows("test").head(2)
    genes = _demo_genes(windows, 128)
    far = [dict(g, transcripts=[[(a + 50_000_000, b + 50_000_000) for a, b in t] for t in g["transcripts"]])
           for g in genes]
    cases = {
        "another assembly": write_gtf(tmp_path / "far.gtf", far),
        "no exon rows": write_gtf(tmp_path / "noexon.gtf", genes, exons=False),
        "no chromosome chrUn_test": write_gtf(tmp_path / "chrom.gtf", genes + [dict(genes[0], chrom="chrUn_test",
                                                                                      id="x")]),
    }
    for message, gtf in cases.items():
        capsys.readouterr()
        assert main(["evaluate", str(run_dir), "--head", "default", "--genes", str(gtf), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not (run_dir / "evaluation").exists() or not any((run_dir / "evaluation").iterdir())
