"""DAR calling from a run's own tracks (the demo's planted subclass-specific sites are found), the
rule by hand, and the DAR analysis' statistics (permutation p-value, bootstrap interval)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from enformer_transfer import Run
from enformer_transfer.cli import main
from enformer_transfer.evaluation.dar import bootstrap_interval, permutation_test
from enformer_transfer.genome.intervals import parse_region
from enformer_transfer.interpret.dar_calling import Rule, apply_rule

LEVEL = ["--label-column", "subclass", "--tracks-where", "level == 'Subclass'"]


@pytest.fixture(scope="module")
def run_copy(demo_run, tmp_path_factory):
    return shutil.copytree(demo_run, tmp_path_factory.mktemp("dars") / "run", ignore=shutil.ignore_patterns("report"))


def _planted(demo_run) -> pd.DataFrame:
    table = pd.read_csv(demo_run.parent / "data" / "dar_subclass.csv")
    table[["chrom", "start", "end"]] = pd.DataFrame([parse_region(r) for r in table["region"]], index=table.index)
    return table


def _overlaps(a: pd.DataFrame, row, label_a: str, label: str) -> bool:
    return bool(((a["chrom"] == row.chrom) & (a["start"] < row.end) & (a["end"] > row.start)
                 & (a[label_a] == label)).any())


def test_call_dars_finds_the_planted_subclass_specific_sites(run_copy, demo_run, capsys):
    assert main(["call-dars", str(run_copy), *LEVEL, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "cell-type-specific regions" in printed and "vs rest" in printed
    called = Run(run_copy).called_dars("observed")
    table = called.table
    assert {"region", "chrom", "start", "end", "subclass", "log2_fold_change"} <= set(table.columns)
    assert (table["end"] - table["start"] == 4 * 128).all()
    planted = _planted(demo_run)
    run = Run(run_copy)
    intervals = pd.concat([run.windows(s) for s in run.splits])
    # planted sites whose 512 bp around the centre lie in a target interval (where targets exist)
    centre = (planted["start"] + planted["end"]) // 2
    inside = [((intervals["chrom"] == c) & (intervals["start"] <= m - 256) & (intervals["end"] >= m + 256)).any()
              for c, m in zip(planted["chrom"], centre, strict=True)]
    findable = planted[inside]
    recall = np.mean([_overlaps(table, r, "subclass", r.subclass) for r in findable.itertuples()])
    precision = np.mean([_overlaps(planted, r, "subclass", r.subclass) for r in table.itertuples()])
    assert len(findable) > 250 and recall >= 0.95 and precision >= 0.95, (recall, precision)
    # Sst responds to no motif more than every other subclass: no Sst-specific site was planted
    assert called.summary["per_cell_type"]["Sst"] == 0
    assert called.summary["rule"]["min_signal"] > called.summary["rule"]["pseudocount"] > 0
    assert called.figures and called.figures[0]["path"].is_file()
    # the table is a DAR table for the DAR analysis as it is
    assert main(["dar", str(run_copy), "--head", "default", "--regions", str(called.folder.table), *LEVEL,
                 "--force", "--quiet"]) == 0  # the demo's DAR analysis (of the published-style table) replaced
    summary = Run(run_copy).dar("default").summary
    assert summary["top_agreement_permutation_p"] < 0.01
    low, high = summary["pearson_across_cell_types_median_ci"]
    assert low <= summary["pearson_across_cell_types_median"] <= high
    assert "permutation null" in capsys.readouterr().out


def test_call_dars_from_predictions_and_settings(run_copy, capsys):
    assert main(["call-dars", str(run_copy), *LEVEL, "--source", "predicted", "--head", "default",
                 "--max-per-cell-type", "3", "--versus", "second", "--min-log2-fold-change", "0.5", "--quiet"]) == 0
    called = Run(run_copy).called_dars("default")
    assert called.summary["source"] == "predicted (default)" and set(called.table["split"]) <= {"valid", "test"}
    assert called.table.groupby("subclass").size().max() <= 3
    assert called.summary["rule"]["versus"] == "second"
    # peaks as candidates: each peak's bins
    peaks = run_copy.parent / "peaks.bed"
    test = Run(run_copy).windows("test")
    start = int(test["start"].iloc[2])
    peaks.write_text(f"{test['chrom'].iloc[2]}\t{start + 1000}\t{start + 1600}\tp1\nchr1\t5\t50\toff\n")
    assert main(["call-dars", str(run_copy), *LEVEL, "--peaks", str(peaks), "--name", "peaks",
                 "--min-log2-fold-change", "0", "--min-signal", "0", "--quiet"]) == 0
    peaks_called = Run(run_copy).called_dars("peaks")
    assert peaks_called.summary["candidates"] == 1  # chr1:5-50 lies in no target interval
    assert peaks_called.table["region"].tolist() == [f"{test['chrom'].iloc[2]}:{start + 1000}-{start + 1600}"]


@pytest.mark.parametrize("args, message", [
    (["--tracks-where", "level == 'Subclass'"], "--label-column"),
    (["--label-column", "nope"], "no column 'nope'"),
    (["--label-column", "subclass"], "share the subclass label"),
    ([*LEVEL, "--splits", "nope"], "no split nope"),
    ([*LEVEL, "--source", "predicted", "--head", "nope"], "no trained head 'nope'"),
    ([*LEVEL, "--region-bins", "100"], "exceeds the 64 bins"),
])
def test_call_dars_refuses_bad_input(run_copy, capsys, args, message):
    assert main(["call-dars", str(run_copy), "--name", "bad", *args, "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_the_rule_by_hand():
    signals = np.array([[8.0, 1.0, 1.0, 0.0],    # specific: log2((8+1)/(2/3+1)) = 2.43
                        [8.0, 7.0, 0.0, 0.0],    # two open: vs rest 2.0, vs second 0.17
                        [0.5, 0.0, 0.0, 0.0],    # specific but weak
                        [3.0, 3.0, 3.0, 3.0]])   # open everywhere
    rule = Rule(min_log2_fold_change=1.0, min_signal=2.0, pseudocount=1.0, versus="rest")
    top, versus, lfc, called = apply_rule(signals, rule)
    assert list(top) == [0, 0, 0, 0]
    np.testing.assert_allclose(lfc[:2], [np.log2(9 / (2 / 3 + 1)), np.log2(9 / (7 / 3 + 1))])
    assert list(called) == [True, True, False, False]
    _, versus, lfc, called = apply_rule(signals, Rule(1.0, 2.0, 1.0, "second"))
    np.testing.assert_allclose(versus[:2], [1.0, 7.0])
    assert list(called) == [True, False, False, False]


def test_permutation_p_value_and_bootstrap_interval():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 10)
    p, null = permutation_test(labels, labels, 999, rng)
    assert p == pytest.approx(1 / 1000) and null == pytest.approx(1 / 6, abs=0.03)
    p_random, _ = permutation_test(labels, rng.permutation(labels), 999, rng)
    assert p_random > 0.01
    # unbalanced tops: chance is what the frequencies imply, not 1 / cell types
    skewed = np.array([0] * 50 + [1] * 10)
    _, null_skewed = permutation_test(skewed, skewed[rng.permutation(60)], 500, rng)
    assert null_skewed == pytest.approx((50 / 60) ** 2 + (10 / 60) ** 2, abs=0.03)
    values = rng.normal(0.5, 0.2, 200)
    low, high = bootstrap_interval(np.append(values, np.nan), 2000, 0.95, rng)
    assert low < np.median(values) < high and high - low < 0.15
    assert np.isnan(permutation_test(labels, labels, 0, rng)[0])
    assert np.isnan(bootstrap_interval(values, 0, 0.95, rng)[0])


def test_dar_statistics_are_seeded_and_in_the_report(demo_run):
    summary = json.loads((demo_run / "dar" / "default" / "summary.json").read_text())
    assert summary["permutations"] == 1000 and summary["top_agreement_permutation_p"] < 0.01
    html = (demo_run / "report" / "report.html").read_text()
    assert "bootstrap" in html and "permutation p" in html  # an interval, or 'no spread' when it has none
