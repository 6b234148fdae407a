"""Odd tracks are warned, counted and recorded (issue 19): negative values, all-zero tracks,
tracks saturated at the clip, BigWigs of another assembly, NaN / inf values, empty config lists."""

import json
import math

import numpy as np
import pandas as pd
import pybigtools
import pytest

from enformer_transfer import Run
from enformer_transfer.cli import main
from enformer_transfer.config import validate_config
from enformer_transfer.data._reference import reference_build
from enformer_transfer.errors import InputError
from enformer_transfer.synthetic import make_synthetic


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small synthetic dataset: 3 chromosomes of 60 kb, 10-bp runs."""
    return make_synthetic(tmp_path_factory.mktemp("odd"), seed=2, n_chroms=3, chrom_length=60_000)


def _rewrite(data, path, value=lambda chrom, start, v: v, sizes=None):
    """Track 0's BigWig with every record's value replaced by ``value`` (and other chromosome sizes)."""
    source = pybigtools.open(str(data.bigwigs[0]))
    chroms = dict(source.chroms())
    sizes = sizes or chroms
    entries = [(c, s, e, value(c, s, v)) for c in chroms for s, e, v in source.records(c) if e <= sizes[c]]
    source.close()
    pybigtools.open(str(path), "w").write(sizes, iter(entries))
    return path


def _table(data, tmp_path, *files):
    """The targets table with its first rows reading ``files``."""
    df = pd.read_csv(data.targets, sep="\t", dtype=str, keep_default_na=False)
    for row, file in enumerate(files):
        df.loc[row, "file"] = str(file)
    path = tmp_path / "targets.tsv"
    df.to_csv(path, sep="\t", index=False)
    return path


def _dataset(data, run, targets, *extra):
    return main(["dataset", "--out", str(run), "--workers", "1", "--seq-length", "16384", "--n-bins", "64",
                 "--genome", str(data.genome), "--windows", str(data.windows), "--targets", str(targets), *extra])


def _error(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


def _stats(run):
    return json.loads((run / "dataset" / "stage.json").read_text())["stats"]


def _targets(run, track: int = 0):
    r = Run(run)
    return np.concatenate([np.asarray(r.targets(s))[..., track] for s in r.splits])


def test_negative_track_clipped_warned_counted(data, tmp_path, caplog):
    negative = _rewrite(data, tmp_path / "minus.bw", lambda c, s, v: -v - 0.5)
    assert _dataset(data, tmp_path / "run", _table(data, tmp_path, negative)) == 0
    name = pd.read_csv(data.targets, sep="\t")["identifier"][0]
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("negative coverage values, clipped to 0" in m and repr(name) in m and "bases" in m for m in said), said
    assert any("zero in every bin" in m and repr(name) in m for m in said), said
    assert not _targets(tmp_path / "run").any()  # clipped at 0: a zero track
    stats = pd.read_csv(tmp_path / "run" / "dataset" / "track_stats.tsv", sep="\t")
    assert stats["negative_bases"][0] > 0 and stats["negative_fraction"][0] > 0.99
    assert (stats["negative_bases"][1:] == 0).all()
    assert bool(stats["all_zero"][0]) and not stats["all_zero"][1:].any()
    recorded = _stats(tmp_path / "run")
    assert list(recorded["negative_values"]) == [name] and recorded["negative_rule"] == "clip"
    assert recorded["all_zero_tracks"] == [name]


def test_negative_error_refuses_before_building(data, tmp_path, capsys):
    negative = _rewrite(data, tmp_path / "minus.bw", lambda c, s, v: -v - 0.5)
    assert _dataset(data, tmp_path / "run", _table(data, tmp_path, negative), "--negative", "error") == 2
    message = _error(capsys)
    assert "minus.bw" in message and "negative values" in message and "--negative abs" in message
    assert not (tmp_path / "run" / "dataset.partial").exists()


def test_negative_abs_mirrors_the_track(data, tmp_path):
    """A minus-strand track stored negative, read with --negative abs, equals the positive track
    and the reference rules with the same choice."""
    mirror = _rewrite(data, tmp_path / "minus.bw", lambda c, s, v: -v)
    assert _dataset(data, tmp_path / "plain", data.targets) == 0
    assert _dataset(data, tmp_path / "abs", _table(data, tmp_path, mirror), "--negative", "abs") == 0
    ours = _targets(tmp_path / "abs")
    np.testing.assert_array_equal(ours.view(np.uint16), _targets(tmp_path / "plain").view(np.uint16))
    assert ours.any()
    run = Run(tmp_path / "abs")
    windows = pd.concat([run.windows(s) for s in run.splits])
    ref = reference_build(windows, run.tracks.iloc[:1], 64, 128, negative="abs")
    np.testing.assert_array_equal(ours.view(np.uint16), ref[..., 0].view(np.uint16))


def test_all_zero_track_warned(data, tmp_path, caplog):
    zero = _rewrite(data, tmp_path / "zero.bw", lambda c, s, v: 0.0)
    assert _dataset(data, tmp_path / "run", _table(data, tmp_path, zero)) == 0
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    name = pd.read_csv(data.targets, sep="\t")["identifier"][0]
    assert any("zero in every bin" in m and repr(name) in m for m in said), said
    assert not any("negative" in m for m in said)
    assert _stats(tmp_path / "run")["all_zero_tracks"] == [name]


def test_saturated_track_warned(data, tmp_path, caplog):
    """A third of the bases far above the clip (32): many bins at the clip x scale (64)."""
    loud = _rewrite(data, tmp_path / "loud.bw", lambda c, s, v: 500.0 if s % 900 < 300 else v)
    assert _dataset(data, tmp_path / "run", _table(data, tmp_path, loud)) == 0
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    name = pd.read_csv(data.targets, sep="\t")["identifier"][0]
    assert any("at the hard clip" in m and repr(name) in m for m in said), said
    stats = pd.read_csv(tmp_path / "run" / "dataset" / "track_stats.tsv", sep="\t")
    assert stats["at_clip_bin_fraction"][0] > 0.2
    assert (stats["at_clip_bin_fraction"][1:] < 0.01).all()  # the ordinary tracks are not
    assert list(_stats(tmp_path / "run")["saturated_tracks"]) == [name]


def test_ordinary_tracks_say_nothing_odd(data, tmp_path, caplog):
    assert _dataset(data, tmp_path / "run", data.targets) == 0
    said = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "negative" not in said and "zero in every bin" not in said and "hard clip" not in said
    stats = _stats(tmp_path / "run")
    assert stats["negative_values"] == {} and stats["all_zero_tracks"] == [] and stats["saturated_tracks"] == {}


def test_other_assembly_refused(data, tmp_path, capsys):
    sizes = {f"chr{i + 1}": 30_000 for i in range(3)}
    half = _rewrite(data, tmp_path / "half.bw", sizes=sizes)
    assert _dataset(data, tmp_path / "run", _table(data, tmp_path, half)) == 2
    message = _error(capsys)
    for needle in ("half.bw", "chr1", "30000", "60000", "another assembly", "--allow-chrom-size-mismatch"):
        assert needle in message, message
    assert not (tmp_path / "run" / "dataset.partial").exists()


def test_other_assembly_allowed(data, tmp_path, caplog):
    sizes = {f"chr{i + 1}": 30_000 for i in range(3)}
    half = _rewrite(data, tmp_path / "half.bw", sizes=sizes)
    assert _dataset(data, tmp_path / "run", _table(data, tmp_path, half), "--allow-chrom-size-mismatch") == 0
    assert any("30000 bp in the BigWig" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


@pytest.mark.parametrize("bad,kind", [(math.nan, "NaN"), (math.inf, "infinite")])
def test_nonfinite_values_named(data, tmp_path, capsys, bad, kind):
    odd = _rewrite(data, tmp_path / "odd.bw", lambda c, s, v: bad if (c, s) == ("chr2", 1230) else v)
    assert _dataset(data, tmp_path / "run", _table(data, tmp_path, odd)) == 2
    message = _error(capsys)
    assert f"contains {kind} values" in message and "chr2:1230-1240" in message and "fix the file" in message
    assert "damaged" not in message


@pytest.mark.parametrize("setting,needle", [
    ({"train": {"ridge_lambdas": []}}, "train.ridge_lambdas: give at least one ridge strength"),
    ({"train": {"ridge_lambdas": [0.1, -1.0]}}, "positive"),
    ({"embed": {"splits": []}}, "embed.splits"),
])
def test_empty_or_bad_config_lists(setting, needle):
    with pytest.raises(InputError, match=needle):
        validate_config(setting)


def test_empty_ridge_lambdas_on_the_command_line(tmp_path, capsys):
    assert main(["train", str(tmp_path / "run"), "--set", "train.ridge_lambdas=[]"]) == 2
    assert "train.ridge_lambdas: give at least one ridge strength" in _error(capsys)
