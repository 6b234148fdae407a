"""Run directory: skip when up to date, refuse stale results, --force, resume after kill -9."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from _kill import kill_when, without_quiet

from enformer_transfer import (
    InputError,
    Run,
    RunConfig,
    StaleStageError,
    build_dataset,
    load_config,
)
from enformer_transfer.cli import main
from enformer_transfer.synthetic import DEMO_GEOMETRY


def _config(data, run_dir, **dataset):
    config = RunConfig(run_dir=run_dir, geometry=DEMO_GEOMETRY)
    ds = config.dataset
    ds.genome, ds.targets, ds.windows, ds.blacklist = data.genome, data.targets, data.windows, data.blacklist
    ds.workers = 1
    for key, value in dataset.items():
        setattr(ds, key, value)
    return config


def _all_targets(run_dir):
    run = Run(run_dir)
    return {s: np.asarray(run.targets(s)) for s in run.splits}


def test_run_api_and_store_layout(synthetic, tmp_path):
    folder = build_dataset(_config(synthetic, tmp_path / "run"), progress=False)
    run = Run(tmp_path / "run")
    assert folder == tmp_path / "run" / "dataset"
    assert run.splits == ["train", "valid", "test"]
    assert list(run.tracks["identifier"])[:3] == ["00_Glutamatergic", "01_GABAergic", "02_Non-neuronal"]
    assert {"level", "class", "subclass", "cluster", "n_nuclei"} <= set(run.tracks.columns)
    test = run.windows("test")
    assert list(test.columns[:3]) == ["chrom", "start", "end"]
    assert (test["chrom"] == "chr4").all() and (test["end"] - test["start"] == 64 * 128).all()
    assert test["start"].is_monotonic_increasing
    targets = run.targets("test")
    assert targets.shape == (len(test), 64, 12) and targets.dtype == np.float16
    assert targets.chunks == (8, 64, 12)  # read by window, never the whole array
    assert np.asarray(targets[3]).shape == (64, 12)
    record = run.dataset_record
    assert record.tool_version and record.key["inputs"]["genome"]["path"].endswith("genome.fa")
    assert all("sha256" in f for f in record.key["inputs"]["bigwigs"])
    assert load_config(tmp_path / "run" / "config.toml").dataset.targets == synthetic.targets
    assert run.masks("test") is None


def test_signal_follows_cell_type(synthetic, tmp_path):
    """The synthetic planted motifs give cell-type-specific accessibility."""
    build_dataset(_config(synthetic, tmp_path / "run"), progress=False)
    run = Run(tmp_path / "run")
    y = np.concatenate([np.asarray(run.targets(s)) for s in run.splits]).reshape(-1, 12).astype(np.float64)
    corr = np.corrcoef(y.T)
    ids = list(run.tracks["identifier"])
    astro, oligo, l23 = ids.index("07_Astro"), ids.index("08_Oligo"), ids.index("03_L23_IT")
    assert corr[astro, oligo] > corr[astro, l23] + 0.1
    assert y.max() <= 64 and y.min() >= 0  # clip 32, scale 2 (the study's targets lie in [0, 64])


def test_skip_stale_and_force(synthetic, tmp_path, capsys, caplog):
    config = _config(synthetic, tmp_path / "run")
    build_dataset(config, progress=False)
    stamp = (tmp_path / "run" / "dataset" / "stage.json").stat().st_mtime_ns
    build_dataset(config, progress=False)
    assert "up to date" in caplog.text
    assert (tmp_path / "run" / "dataset" / "stage.json").stat().st_mtime_ns == stamp
    config.dataset.transform_order = "new"
    with pytest.raises(StaleStageError, match="dataset.transform_order changed.*--force"):
        build_dataset(config, progress=False)
    # an edited input is detected too (content hash)
    targets = tmp_path / "targets.tsv"
    targets.write_text(synthetic.targets.read_text().replace("\t2.0\t", "\t3.0\t", 1))
    config = _config(synthetic, tmp_path / "run", targets=targets)
    with pytest.raises(StaleStageError, match="inputs"):
        build_dataset(config, progress=False)
    before = _all_targets(tmp_path / "run")
    build_dataset(config, force=True, progress=False)
    after = _all_targets(tmp_path / "run")
    assert not np.array_equal(before["train"][..., 0], after["train"][..., 0])


def test_same_inputs_same_outputs(synthetic, tmp_path):
    build_dataset(_config(synthetic, tmp_path / "a", workers=2, chunk_windows=4), progress=False)
    build_dataset(_config(synthetic, tmp_path / "b", workers=1, chunk_windows=4), progress=False)
    a, b = _all_targets(tmp_path / "a"), _all_targets(tmp_path / "b")
    for split in a:
        np.testing.assert_array_equal(a[split], b[split])


@pytest.mark.slow
def test_resume_after_kill(synthetic, tmp_path):
    config = _config(synthetic, tmp_path / "killed", chunk_windows=1)
    args = ["dataset", "--out", str(config.run_dir), "--workers", "1", "--chunk-windows", "1",
            "--genome", str(synthetic.genome), "--targets", str(synthetic.targets),
            "--windows", str(synthetic.windows), "--blacklist", str(synthetic.blacklist),
            "--seq-length", "16384", "--n-bins", "64", "--quiet"]
    progress = config.run_dir / "dataset.partial" / "progress" / "train.txt"
    kill_when([sys.executable, "-m", "enformer_transfer.cli", *args],
              lambda: progress.exists() and progress.read_text().count(";") >= 3)
    assert not (config.run_dir / "dataset").exists()  # nothing that looks complete
    done_before = progress.read_text().count(";")
    result = subprocess.run(without_quiet([sys.executable, "-m", "enformer_transfer.cli", *args]), capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr
    n_train = len(Run(config.run_dir).windows("train"))
    assert (config.run_dir / "dataset" / "progress" / "train.txt").read_text().count(";") == n_train
    assert done_before < n_train
    build_dataset(_config(synthetic, tmp_path / "fresh", chunk_windows=1), progress=False)
    resumed, fresh = _all_targets(tmp_path / "killed"), _all_targets(tmp_path / "fresh")
    for split in fresh:
        np.testing.assert_array_equal(resumed[split], fresh[split])


def test_mask_mode_marks_uncovered_bins(synthetic, tmp_path):
    build_dataset(_config(synthetic, tmp_path / "run", uncovered="mask"), progress=False)
    run = Run(tmp_path / "run")
    mask = np.asarray(run.masks("test"))  # chr4 has a stretch without data in every BigWig
    assert mask.dtype == bool and mask.shape == run.targets("test").shape
    assert 0 < mask.sum() < mask.size
    assert not np.asarray(run.masks("train")).any()


def test_run_command_with_toml_config(synthetic, tmp_path, capsys):
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        f'run_dir = "run"\nseed = 3\n[geometry]\nseq_length = 16384\nn_bins = 64\n'
        f'[dataset]\ngenome = "{synthetic.genome}"\ntargets = "{synthetic.targets}"\n'
        f'windows = "{synthetic.windows}"\nworkers = 1\n'
    )
    assert main(["run", str(config_path), "--quiet", "--transform-order", "new",
                 "--set", "train.batch_size=8", "--set", "train.tracks_where=level == 'Class'"]) == 0
    snapshot = load_config(tmp_path / "run" / "config.toml")
    assert snapshot.seed == 3 and snapshot.dataset.transform_order == "new"  # flag overrides file
    assert snapshot.train.batch_size == 8 and snapshot.train.tracks_where == "level == 'Class'"
    assert Run(tmp_path / "run").targets("valid").shape[1:] == (64, 12)
    assert main(["run", str(config_path), "--quiet", "--transform-order", "new"]) == 0  # resumes: up to date
    assert main(["run", str(config_path), "--quiet", "--set", "nosection.key=1"]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[dataset]\nno_such_key = 1\n")
    assert main(["run", str(bad)]) == 2
    assert "no_such_key" in capsys.readouterr().err


def test_run_without_dataset_says_what_to_do(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no finished dataset stage yet"):
        Run(tmp_path / "empty").targets("train")


@pytest.mark.parametrize("order", ["old", "new"])
def test_synthetic_full_coverage_equals_reference(synthetic, tmp_path, order):
    """bp-resolution coverage with a median baseline in every window, blacklist and a gap."""
    from enformer_transfer.data._reference import reference_build
    from enformer_transfer.data.build import blacklist_slices
    from enformer_transfer.genome.intervals import IntervalSet

    config = _config(synthetic, tmp_path / "run", transform_order=order, workers=2, extreme_clip_percentile=99.0)
    build_dataset(config, progress=False)
    run = Run(tmp_path / "run")
    blacklist = IntervalSet.from_bed(synthetic.blacklist)
    windows = pd.concat([run.windows(s) for s in run.splits])
    ref = reference_build(
        windows, run.tracks, 64, 128,
        blacklist_slices_of=lambda r: blacklist_slices(blacklist, r.chrom, r.row_start, r.row_end, 20, False),
        order=order, extreme_clip_percentile=99.0,
    )
    ours = np.concatenate([np.asarray(run.targets(s)) for s in run.splits])
    np.testing.assert_array_equal(ours.view(np.uint16), ref.view(np.uint16))


def test_unmappable_windows_are_dropped(synthetic, tmp_path):
    run_all = Run(build_dataset(_config(synthetic, tmp_path / "all"), progress=False).parent)
    first = run_all.windows("train").iloc[0]
    second = run_all.windows("train").iloc[1]
    unmap = tmp_path / "unmap.bed"
    # all of window 0 unmappable; 30 % of window 1 (kept)
    unmap.write_text(f"chr1\t{first.start}\t{first.end}\nchr1\t{second.start}\t{second.start + 2458}\n")
    run = Run(build_dataset(_config(synthetic, tmp_path / "run", unmappable=unmap), progress=False).parent)
    assert len(run.windows("train")) == len(run_all.windows("train")) - 1
    assert run.windows("train").iloc[0]["start"] == second.start
    dropped = pd.read_csv(run.layout.dataset.dropped_windows, sep="\t")
    assert list(dropped["start"]) == [first.start] and dropped["reason"][0].startswith("unmappable bins 1.00")
    np.testing.assert_array_equal(np.asarray(run.targets("train")), np.asarray(run_all.targets("train"))[1:])


def test_example_study_config_parses():
    from pathlib import Path

    import tomllib

    from enformer_transfer.config import config_to_toml

    path = Path(__file__).resolve().parents[1] / "examples" / "study.toml"
    config = load_config(path)
    assert config.geometry.target_interval_bp == 114_688 and config.dataset.transform_order == "old"
    assert config.embed.backbone == str(path.parent / "enformer-weights") and config.train.devices == 2
    assert config.dataset.genome == path.parent / "data" / "hg38.fa"
    again = RunConfig.model_validate(tomllib.loads(config_to_toml(config)))
    assert again == config


@pytest.mark.slow
def test_run_command_runs_every_stage_and_resumes(synthetic, tmp_path, caplog):
    from enformer_transfer.backbone.load import init_backbone

    backbone = init_backbone(tmp_path / "bb", dim=48, depth=1, heads=2, attn_dim_key=16, n_bins=64,
                             human_tracks=8)
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        f'run_dir = "run"\n[geometry]\nseq_length = 16384\nn_bins = 64\n'
        f'[dataset]\ngenome = "{synthetic.genome}"\ntargets = "{synthetic.targets}"\n'
        f'windows = "{synthetic.windows}"\nworkers = 1\n'
        f'[embed]\nbackbone = "{backbone}"\nloader_workers = 0\n'
        f'[train]\nmax_epochs = 2\nbatch_size = 8\nloader_workers = 0\n'
    )
    assert main(["run", str(config_path), "--quiet"]) == 0
    run = Run(tmp_path / "run")
    assert run.heads() == ["default", "ridge"] and run.predictions("default", "test").shape == (23, 64, 12)
    # the ridge head is trained as the evaluation's baseline: its Pearson beside the head's, per track
    assert run.head("ridge").metadata["model"] == "ridge"
    assert run.evaluation("default").per_track["ridge_pearson"].notna().all()
    assert (tmp_path / "run" / "report" / "report.html").is_file()
    caplog.clear()
    assert main(["run", str(config_path), "--quiet"]) == 0  # everything up to date: nothing redone
    assert caplog.text.count("up to date") >= 5


def test_every_head_and_stage_name_in_the_config_has_the_one_name_type():
    """Every section's head (and finetune's from_head, report's heads, an analysis' name) is
    rundir.config.Name / OptionalName: one validator, layout.check_name's rule, at load and on
    assignment; no stage repeats its own copy."""
    import typing

    from pydantic import ValidationError

    from enformer_transfer.rundir.config import SECTIONS, RunConfig, _checked_name

    def validators(field):
        found = [getattr(m, "func", None) for m in field.metadata]
        for arg in typing.get_args(field.annotation):  # list[Name]
            found += [getattr(m, "func", None) for m in getattr(arg, "__metadata__", ())]
        return found

    named = {(s, f): validators(field) for s, section in SECTIONS.items()
             for f, field in section.model_fields.items()
             if f in ("head", "from_head", "heads", "name") and (s, f) != ("pretrain", "heads")}  # attention heads
    assert ("finetune", "from_head") in named and ("report", "heads") in named
    assert {k: v for k, v in named.items() if v != [_checked_name]} == {}
    config = RunConfig()
    for section in ("train", "finetune", "evaluate", "variants"):
        with pytest.raises(ValidationError, match="starts with '.'"):
            getattr(config, section).head = "../x"
    config.finetune.head = "ft.v2"  # what train accepts, finetune accepts
    with pytest.raises(ValidationError, match="contains '/'"):
        config.report.heads = ["default", "a/b"]
