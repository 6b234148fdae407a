"""Motifs: pattern trimming, q-values, motif files; the stage's early errors; and, on the demo
(slow: TF-MoDISco and TOMTOM compile numba kernels on first use, about a minute cold), the
motif planted for each subclass recovered from its called DARs' contributions, the report
showing the logos and the motif table, and DeepLIFT/SHAP through the stage."""

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from enformer_transfer import Run
from enformer_transfer.cli import main
from enformer_transfer.config import MotifsConfig
from enformer_transfer.interpret.motif_db import benjamini_hochberg, meme_motifs, write_meme
from enformer_transfer.interpret.motifs import (
    ModiscoResult,
    SeqletCount,
    count_seqlets,
    min_seqlets_for,
    trim,
    why_no_pattern,
)
from enformer_transfer.synthetic import MOTIFS, SUBCLASSES

LEVEL = ["--label-column", "subclass", "--tracks-where", "level == 'Subclass'"]


def planted_meme(path):
    """The demo's planted motifs (each whole homotypic cluster) as a MEME file."""
    write_meme(path, {name: np.eye(4)[["ACGT".index(b) for b in seq]].T * 0.96 + 0.01 for name, seq in MOTIFS.items()})
    return path


def test_trim_keeps_the_core_and_four_bases_of_flank():
    cwm = np.zeros((30, 4))
    cwm[10:15, 0] = [0.1, 1.0, 0.5, 0.9, 0.2]
    assert trim(cwm) == slice(11 - 4, 13 + 4 + 1)
    cwm[0, 1] = 0.4  # at 40% of the peak: kept, so the span starts at the edge
    assert trim(cwm).start == 0


def test_benjamini_hochberg_and_meme_round_trip(tmp_path):
    p = np.array([0.01, 0.04, 0.03, 0.5])
    np.testing.assert_allclose(benjamini_hochberg(p), [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])  # p * n / rank, monotone
    motifs = meme_motifs(planted_meme(tmp_path / "planted.meme"))
    assert [m.id for m in motifs] == list(MOTIFS)
    assert motifs[0].ppm.shape == (4, len(MOTIFS["NEUROD"])) and np.allclose(motifs[0].ppm.sum(0), 1)
    (tmp_path / "bad.meme").write_text("not a motif file\n")
    from enformer_transfer.errors import InputError

    with pytest.raises(InputError, match="no motif"):
        meme_motifs(tmp_path / "bad.meme")


def test_min_seqlets_scales_with_the_regions_and_a_target_without_pattern_says_why():
    defaults = MotifsConfig()
    assert [min_seqlets_for(n, defaults) for n in (3, 71, 150, 5000)] == [5, 7, 15, 20]
    assert min_seqlets_for(71, MotifsConfig(min_seqlets=12)) == 12
    few = ModiscoResult([], [], SeqletCount(4, 1, 0.52, 0.03), 5)
    reason = why_no_pattern(few, 6, defaults)
    assert reason.startswith("too few seqlets: 6 regions, 4 positive seqlets")
    assert "|contribution| > 0.52" in reason and "min_seqlets 5 for 6 regions" in reason
    assert "attribute more regions (about 9 at this rate)" in reason and "--min-seqlets 2" in reason
    diffuse = ModiscoResult([], [], SeqletCount(60, 30, 0.8, 0.6), 7)
    assert why_no_pattern(diffuse, 70, defaults).startswith("no cluster: 70 regions, 60 positive seqlets")
    assert "weak or flat" in why_no_pattern(ModiscoResult([], [], SeqletCount(0, 0, float("nan"), 0.0), 5), 6,
                                            defaults)
    assert why_no_pattern(ModiscoResult([object()], [], SeqletCount(60, 0, 0.8, 0.1), 7), 70, defaults) is None
    # seqlets counted as TF-MoDISco calls them: one strong planted site per region stands out
    rng = np.random.default_rng(0)
    onehot = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (12, 200))]
    hypothetical = rng.normal(0, 0.01, (12, 200, 4)).astype(np.float32)
    hypothetical[:, 90:100] += 1.0
    counted = count_seqlets(onehot, hypothetical, SimpleNamespace(sliding_window=21, flank=10, seqlet_fdr=0.2))
    assert counted.positive == 12 and counted.negative <= 2 and counted.threshold > 0


def test_motifs_refuse_bad_input(demo_run, tmp_path, capsys):
    run_dir = shutil.copytree(demo_run, tmp_path / "run", ignore=shutil.ignore_patterns("report"))
    assert main(["motifs", str(run_dir), "--quiet"]) == 2
    assert "--contributions NAME" in capsys.readouterr().err
    assert main(["motifs", str(run_dir), "--contributions", "nope", "--quiet"]) == 2
    assert "no finished contributions stage 'nope'" in capsys.readouterr().err
    table = pd.read_csv(demo_run.parent / "data" / "dar_subclass.csv")
    table[table["subclass"] == "Astro"].head(3).to_csv(tmp_path / "astro.csv", index=False)
    assert main(["contributions", str(run_dir), "--regions", str(tmp_path / "astro.csv"), *LEVEL, "--width", "64",
                 "--plot-width", "8", "--name", "c", "--no-bigwigs", "--quiet"]) == 0
    assert main(["motifs", str(run_dir), "--contributions", "c", "--targets", "Microglia", "--quiet"]) == 2
    assert "'Microglia': not attributed" in capsys.readouterr().err
    assert main(["motifs", str(run_dir), "--contributions", "c", "--targets", "Astro", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "'Astro' has 3 region(s)" in err and "--min-regions 5" in err
    assert main(["motifs", str(run_dir), "--contributions", "c", "--no-jaspar", "--min-regions", "1",
                 "--quiet"]) == 2
    assert "--motif-file" in capsys.readouterr().err
    # too few regions for TF-MoDISco: no pattern, and the console, summary.json and report say why
    meme = planted_meme(tmp_path / "planted.meme")
    assert main(["motifs", str(run_dir), "--contributions", "c", "--targets", "Astro", "--min-regions", "1",
                 "--no-jaspar", "--motif-file", str(meme), "--quiet"]) == 0
    out = capsys.readouterr().out
    # 3 regions give a seqlet or two, or none at all (TF-MoDISco's null model may not even fit): either
    # way the reason names the regions and what to change
    why = next((w for w in ("too few seqlets: 3 regions", "no seqlets: 3 regions") if w in out), None)
    assert "motifs: Astro: 0 patterns" in out and why is not None, out
    entry = Run(run_dir).motifs("c").summary["targets"]["Astro"]
    assert entry["patterns"] == 0 and entry["min_seqlets"] == 5 and entry["reason"].startswith(why)
    assert "attribute" in entry["reason"] and "regions" in entry["reason"]
    assert entry["seqlets_called"]["positive"] <= 5
    assert main(["report", str(run_dir), "--quiet"]) == 0
    html = (run_dir / "report" / "report.html").read_text()
    section = html[html.index("Motifs c"):]
    assert "Without a positive pattern" in section and why in section


@pytest.mark.slow
def test_demo_motifs_recover_the_motif_planted_for_each_subclass(demo_run, tmp_path, capsys):
    """call-dars -> contributions (grad-input) on the called DARs -> TF-MoDISco per subclass on its
    own DARs: for every subclass whose track the head learned (test Pearson >= 0.9), the most
    important pattern is the motif planted for it (TOMTOM against the planted motifs), and against
    JASPAR it matches the family of that motif. The motifs read the model, not the data: a
    subclass the head predicts poorly (the demo's L23_IT, test Pearson ~0.64: NEUROD-led, like
    L5_ET with other weights) has diffuse contributions and may yield no pattern."""
    run_dir = shutil.copytree(demo_run, tmp_path / "run")
    assert main(["call-dars", str(run_dir), *LEVEL, "--quiet"]) == 0
    dars = Run(run_dir).called_dars("observed").folder.table
    assert main(["contributions", str(run_dir), "--regions", str(dars), *LEVEL, "--name", "dars", "--quiet"]) == 0
    meme = planted_meme(tmp_path / "planted.meme")
    # the commands of docs/interpretation.md, with the default settings (min_seqlets scaled to the regions)
    assert main(["motifs", str(run_dir), "--contributions", "dars", "--motif-file", str(meme), "--no-jaspar",
                 "--name", "planted", "--quiet"]) == 0
    patterns = Run(run_dir).motifs("planted").patterns
    recovered = {}
    for subclass, (_, weights) in SUBCLASSES.items():
        mine = patterns[(patterns["label"] == subclass) & (patterns["sign"] == "pos")]
        if mine.empty:
            continue
        top = mine.sort_values("importance", ascending=False).iloc[0]
        recovered[subclass] = (top["best_motif_id"], max(weights, key=weights.get), top["best_qvalue"])
    per_track = Run(run_dir).evaluation("default").per_track
    level = per_track[(per_track["split"] == "test") & (per_track["level"] == "Subclass")]
    pearson = dict(zip(level["subclass"], level["pearson"], strict=True))
    learned = {s for s in SUBCLASSES if pearson[s] >= 0.9} - {"Sst"}  # Sst: no motif (so no DAR) of its own
    print("planted motif recovery (top pattern's best match, planted, q):", recovered, "test Pearson:", pearson)
    assert learned >= {"L5_ET", "Pvalb", "Astro", "Oligo"}
    # every learned subclass with a positive pattern finds its own motif; one without says why (below).
    # Since the default head may keep its plain-ridge start, L5_ET's contributions are weaker (0.08/bp
    # against 0.5 for the others) and can fall short of a positive pattern: at least three of four
    assert len(set(recovered) & learned) >= 3, (recovered, learned)
    for subclass, (found, planted, qvalue) in recovered.items():
        assert found == planted and qvalue < 1e-6, subclass
    # JASPAR (the default database): the families of the planted motifs
    # a subclass without a positive pattern (L23_IT, if any) says why, with its numbers
    summary = Run(run_dir).motifs("planted").summary
    for subclass, entry in summary["targets"].items():
        assert (subclass in recovered) or ("seqlets" in entry["reason"] and "regions" in entry["reason"]), subclass
    # JASPAR for the subclasses with a positive pattern (TF-MoDISco is not run again for the others)
    assert main(["motifs", str(run_dir), "--contributions", "dars", "--targets", ",".join(sorted(recovered)),
                 "--quiet"]) == 0
    jaspar = Run(run_dir).motifs("dars")
    named = jaspar.patterns[jaspar.patterns["sign"] == "pos"].sort_values("importance", ascending=False)
    top = named.groupby("label")[["best_motif_name", "best_qvalue"]].first()
    print("JASPAR best match of each subclass's top pattern:", top.to_dict("index"))
    # the planted motifs are tandem repeats of made-up sites: the families match, not always at q <= 0.05
    families = {"L5_ET": "MEF2", "Astro": "SOX"}  # the planted motifs' families in JASPAR
    checked = [s for s in families if s in recovered and s in top.index]
    assert checked, (recovered, top.index)  # at least one of the two (both when both have a pattern)
    for subclass in checked:
        assert top.at[subclass, "best_motif_name"].upper().startswith(families[subclass]), subclass
    assert jaspar.summary["database"] == ["JASPAR JASPAR2024 CORE vertebrates"]
    importance = pd.read_csv(jaspar.folder.importance, index_col=0)
    assert set(importance.index) >= set(recovered) and "Sst" not in importance.index
    # the report shows the logos, the motif table and the heatmap
    assert main(["report", str(run_dir), "--quiet"]) == 0
    html = (run_dir / "report" / "report.html").read_text()
    assert "Motifs dars" in html and "Pattern logos" in html
    assert all(families[s] in html for s in checked)
    assert "Called DARs observed" in html and "Contributions dars" in html
    assert html.count("<img") >= 20


@pytest.mark.slow
def test_deepliftshap_through_the_stage(demo_run, tmp_path):
    run_dir = shutil.copytree(demo_run, tmp_path / "run", ignore=shutil.ignore_patterns("report"))
    table = pd.read_csv(demo_run.parent / "data" / "dar_subclass.csv")
    table[table["subclass"] == "Pvalb"].head(2).to_csv(tmp_path / "pvalb.csv", index=False)
    assert main(["contributions", str(run_dir), "--regions", str(tmp_path / "pvalb.csv"), "--label-column",
                 "subclass", "--tracks-where", "subclass == 'Pvalb' and level == 'Subclass'", "--contrast",
                 "Pvalb,Sst", "--method", "deepliftshap", "--shuffles", "4", "--width", "300", "--quiet"]) == 0
    result = Run(run_dir).contributions("default-deepliftshap")
    summation = json.loads(result.folder.summary.read_text())["summation"]
    assert summation["pairs"] == 4 and summation["max_relative_error"] < 1e-3
    actual = np.asarray(result.array("actual"))
    delta = np.asarray(result.array("scalars")) - np.asarray(result.array("reference_scalars"))
    np.testing.assert_allclose(actual.sum(axis=(2, 3)), delta, rtol=1e-3, atol=1e-6)
