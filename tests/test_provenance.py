"""Every result knows what it was made from (issue 19): a stage records the digest of every
upstream stage it read and of every file it wrote; every reader checks both before it uses a
result, so a stale or damaged upstream is refused, never read into a wrong number with exit 0.
And --force removes only folders the tool made. Each test reproduces one hostile-user case on a
copy of the demo run."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _provenance import copy_run as _copy
from _provenance import one_error as _error

from enformer_transfer import Run
from enformer_transfer.cli import main
from enformer_transfer.config import load_config


def _check_problems(run_dir, capsys) -> str:
    assert main(["check", str(run_dir), "--quiet"]) == 2
    return capsys.readouterr().err


# --- 1. stale upstream ------------------------------------------------------------------------

@pytest.mark.slow
def test_a_head_trained_on_other_embeddings_is_refused_not_evaluated(demo_run, tmp_path, capsys):
    """embed --force with another backbone, then evaluate --force (as the refusal suggests) once
    gave exit 0 and test Pearson 0.005: the head was trained on the old embeddings."""
    run_dir = _copy(demo_run, tmp_path, "dar", "report", "weights", "variants", "contributions", "motifs",
                    "called-dars")
    other = demo_run.parent / "random-backbone"
    assert main(["embed", str(run_dir), "--backbone", str(other), "--force", "--quiet"]) == 0
    before = (run_dir / "evaluation" / "default" / "summary.json").read_text()
    assert main(["evaluate", str(run_dir), "--head", "default", "--force", "--quiet"]) == 2
    err = _error(capsys)
    assert "heads/default was built from an earlier embeddings" in err
    assert f"enformer-transfer train {run_dir} --head default --force" in err
    # nothing half-removed: the evaluation that was refused is still the old one, and check names both
    assert (run_dir / "evaluation" / "default" / "summary.json").read_text() == before
    err = _check_problems(run_dir, capsys)
    assert "heads/default: stale" in err and "evaluation/default: stale" in err
    # retraining from the current embeddings makes the chain whole again
    assert main(["train", str(run_dir), "--head", "default", "--force", "--quiet"]) == 0
    assert main(["evaluate", str(run_dir), "--head", "default", "--force", "--quiet"]) == 0
    assert Run(run_dir).evaluation("default").record.upstream["heads/default"] == \
        Run(run_dir).head_record("default").digest


@pytest.mark.slow
def test_a_dataset_rebuilt_with_reordered_windows_stales_the_embeddings(demo_run, tmp_path, capsys):
    """dataset --force with the train windows reordered (same count), then train: once exit 0 with
    valid Pearson -0.049; only embed noticed."""
    run_dir = _copy(demo_run, tmp_path, "dar", "report", "weights", "variants", "contributions", "motifs",
                    "called-dars")
    windows = Path(load_config(run_dir / "config.toml").dataset.windows)
    lines = windows.read_text().splitlines()
    train = [i for i, line in enumerate(lines) if line.rstrip().endswith("train")]
    lines[train[0]], lines[train[1]] = lines[train[1]], lines[train[0]]
    reordered = tmp_path / "windows.bed"
    reordered.write_text("\n".join(lines) + "\n")
    assert main(["dataset", "--out", str(run_dir), "--windows", str(reordered), "--force", "--quiet"]) == 0
    assert main(["train", str(run_dir), "--head", "again", "--quiet"]) == 2
    err = _error(capsys)
    assert "embeddings was built from an earlier dataset" in err and f"embed {run_dir} --force" in err
    assert not (run_dir / "heads" / "again").exists()
    err = _check_problems(run_dir, capsys)
    assert "embeddings: stale" in err and "heads/default: stale" in err


@pytest.mark.slow
def test_the_report_leaves_out_an_evaluation_of_a_head_retrained_since(demo_run, tmp_path, capsys):
    """train --head ridge --force with another lambda, then report --force once showed the old
    head's number under the new head."""
    run_dir = _copy(demo_run, tmp_path, "variants", "contributions", "motifs", "called-dars")
    assert main(["train", str(run_dir), "--head", "ridge", "--model", "ridge", "--ridge-lambdas", "1e6",
                 "--force", "--quiet"]) == 0
    # every evaluation shows the ridge head (as a head or as the baseline): none is current now
    assert main(["report", str(run_dir), "--quiet"]) == 2
    err = _error(capsys)
    assert "no current evaluation" in err and "heads/ridge" in err and "--head ridge --force" in err
    assert main(["evaluate", str(run_dir), "--head", "ridge", "--force", "--quiet"]) == 0
    new = Run(run_dir).evaluation("ridge").summary["splits"]["test"]["pearson_mean"]
    assert main(["report", str(run_dir), "--quiet"]) == 0
    page = (run_dir / "report" / "report.html").read_text()
    assert "Left out: stale or damaged results" in page and "evaluation default" in page
    assert f"evaluate {run_dir} --head default --force" in page
    assert f"{new:.3f}" in page
    assert main(["report", str(run_dir), "--heads", "default", "--quiet"]) == 2
    assert "heads/ridge" in _error(capsys)  # the refusal names the upstream that changed


def _stopped_at(cmd: list[str], ready) -> subprocess.Popen:
    """Start ``cmd`` and stop it (SIGSTOP) as soon as ``ready()`` holds: it then holds its locks."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the command never reached the point to stop it at"
        time.sleep(0.005)
    proc.send_signal(signal.SIGSTOP)
    return proc


def _resume(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]


@pytest.mark.slow
def test_an_upstream_cannot_be_rebuilt_while_a_stage_reads_it(demo_run, tmp_path):
    """dataset --force while embed runs, and train --force while evaluate reads the head: both
    once exited 0 and the report printed the old head's number under the new one."""
    run_dir = _copy(demo_run, tmp_path, "dar", "report", "weights", "variants", "contributions", "motifs",
                    "called-dars")
    cli = [sys.executable, "-m", "enformer_transfer.cli"]
    evaluate = _stopped_at(cli + ["evaluate", str(run_dir), "--head", "default", "--force"],
                           lambda: (run_dir / "evaluation" / "default.partial" / "key.json").exists())
    try:
        retrain = subprocess.run(cli + ["train", str(run_dir), "--head", "default", "--force", "--model", "ridge",
                                        "--quiet"], capture_output=True, text=True, timeout=300)
        assert retrain.returncode == 2 and "reading it" in retrain.stderr
    finally:
        _resume(evaluate)
    embed = _stopped_at(cli + ["embed", str(run_dir), "--force", "--batch-size", "1"],
                        lambda: (run_dir / "embeddings.partial" / "key.json").exists())
    try:
        rebuild = subprocess.run(cli + ["dataset", "--out", str(run_dir), "--force", "--quiet"],
                                 capture_output=True, text=True, timeout=300)
        assert rebuild.returncode == 2 and "in use by" in rebuild.stderr and f"PID {embed.pid}" in rebuild.stderr
    finally:
        _resume(embed)
    # the embeddings were rebuilt (batch size 1: other rounding), so the heads are stale now, and said so
    assert main(["check", str(run_dir), "--quiet"]) == 2


# --- 2. integrity that cannot be switched off -------------------------------------------------

def test_a_deleted_checksum_record_is_an_error_not_zeros(demo_run, tmp_path, capsys):
    """With embeddings/checksums.json deleted, missing chunks once read as zeros: check said all
    intact and evaluate --force gave 0.625 instead of 0.914."""
    run_dir = _copy(demo_run, tmp_path, "dar", "report", "weights")
    (run_dir / "embeddings" / "checksums.json").unlink()
    next((run_dir / "embeddings" / "embeddings.zarr" / "valid" / "c").iterdir()).rename(tmp_path / "gone")
    assert main(["evaluate", str(run_dir), "--head", "ridge", "--force", "--quiet"]) == 2
    err = _error(capsys)
    assert "embeddings/checksums.json: missing" in err and f"embed {run_dir} --force" in err
    assert "embeddings: damaged" in _check_problems(run_dir, capsys)


@pytest.mark.parametrize("edit, words", [
    (lambda meta: meta.update(data_type="int16"), "changed since"),
    (lambda meta: meta.update(shape=[meta["shape"][0] + 5] + meta["shape"][1:]), "changed since"),
    (None, "changed since"),  # truncated
])
def test_edited_store_metadata_is_one_line_naming_the_store(demo_run, tmp_path, capsys, edit, words):
    """zarr.json data_type float16 -> int16 once gave exit 0 and Pearson 0.741; a shape edit or a
    truncated zarr.json a traceback."""
    run_dir = _copy(demo_run, tmp_path, "dar", "report", "weights")
    meta_path = run_dir / "embeddings" / "embeddings.zarr" / "test" / "zarr.json"
    if edit is None:
        meta_path.write_text(meta_path.read_text()[:40])
    else:
        meta = json.loads(meta_path.read_text())
        edit(meta)
        meta_path.write_text(json.dumps(meta))
    assert main(["evaluate", str(run_dir), "--head", "ridge", "--force", "--quiet"]) == 2
    err = _error(capsys)
    assert "Traceback" not in err and str(meta_path) in err and words in err


# --- 3. tables and heads ----------------------------------------------------------------------

def test_reordered_track_table_is_refused_everywhere(demo_run, tmp_path, capsys):
    """Two rows of dataset/tracks.tsv swapped once mislabelled every metric with check intact."""
    run_dir = _copy(demo_run, tmp_path, "dar", "report", "weights")
    tracks = run_dir / "dataset" / "tracks.tsv"
    lines = tracks.read_text().splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]
    tracks.write_text("".join(lines))
    assert main(["evaluate", str(run_dir), "--head", "ridge", "--force", "--quiet"]) == 2
    assert "dataset/tracks.tsv: changed since the 'dataset' stage wrote it" in _error(capsys)
    assert main(["train", str(run_dir), "--head", "new", "--model", "ridge", "--quiet"]) == 2
    assert "tracks.tsv" in _error(capsys)
    assert "dataset: damaged" in _check_problems(run_dir, capsys)


@pytest.mark.parametrize("damage", ["swap_weights", "truncate_safetensors", "reverse_tracks"])
def test_check_verifies_heads(demo_run, tmp_path, capsys, damage):
    run_dir = _copy(demo_run, tmp_path, "dar", "report", "weights")
    head = run_dir / "heads" / "default"
    if damage == "swap_weights":
        shutil.copy(run_dir / "heads" / "ridge" / "head.safetensors", head / "head.safetensors")
    elif damage == "truncate_safetensors":
        path = head / "head.safetensors"
        path.write_bytes(path.read_bytes()[:100])
    else:
        meta = json.loads((head / "head.json").read_text())
        meta["tracks"] = meta["tracks"][::-1]
        (head / "head.json").write_text(json.dumps(meta))
    err = _check_problems(run_dir, capsys)
    assert "heads/default: damaged" in err and "changed since the 'default' stage wrote it" in err
    assert f"train {run_dir} --head default --force" in err
    assert main(["evaluate", str(run_dir), "--head", "default", "--force", "--quiet"]) == 2


def test_a_hand_edited_stage_record_is_refused(demo_run, tmp_path, capsys):
    run_dir = _copy(demo_run, tmp_path, "dar", "report", "weights")
    record_path = run_dir / "heads" / "ridge" / "stage.json"
    record = json.loads(record_path.read_text())
    record["outputs"]["head.json"]["sha256"] = "0" * 64  # hide an edit of head.json
    record_path.write_text(json.dumps(record))
    assert "heads/ridge: damaged" in _check_problems(run_dir, capsys)


def test_records_without_output_digests_are_refused(demo_run, tmp_path, capsys):
    """A stage written before output digests existed is not trusted silently."""
    run_dir = _copy(demo_run, tmp_path, "dar", "report", "weights")
    record_path = run_dir / "heads" / "ridge" / "stage.json"
    record = json.loads(record_path.read_text())
    for key in ("digest", "outputs", "upstream"):
        record.pop(key)
    record_path.write_text(json.dumps(record))
    assert main(["evaluate", str(run_dir), "--head", "ridge", "--force", "--quiet"]) == 2
    assert "without output digests" in _error(capsys)


# --- 5. deleting only what the tool made ------------------------------------------------------

@pytest.mark.parametrize("name", ["..", ".", "a/b", "x" * 101, ".hidden"])
def test_names_that_leave_their_folder_are_refused(demo_run, tmp_path, capsys, name):
    """contributions --name .. then --force once emptied the whole run directory."""
    run_dir = _copy(demo_run, tmp_path, "dar", "report", "weights", "variants", "contributions", "motifs")
    before = sorted(p.name for p in run_dir.iterdir() if p.suffix != ".log")
    for command in (["contributions", str(run_dir), "--head", "default", "--regions", str(tmp_path / "r.bed"),
                     "--name", name, "--force"],
                    ["motifs", str(run_dir), "--contributions", "x", "--name", name, "--force"],
                    ["train", str(run_dir), "--head", name, "--force"]):
        assert main(command + ["--quiet"]) == 2
        err = _error(capsys)
        assert repr(name) in err and "letters, digits" in err
    assert sorted(p.name for p in run_dir.iterdir() if p.suffix != ".log") == before


def test_force_never_removes_a_folder_the_tool_did_not_make(demo_run, tmp_path, capsys):
    """variants --out EXISTING_DIR --force once deleted the user's folder."""
    run_dir = _copy(demo_run, tmp_path, "dar", "report", "weights", "variants", "contributions", "motifs")
    mine = tmp_path / "my-results"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    genome = Run(run_dir).genome()
    base = genome.fetch("chr4", 120_000, 120_001)
    vcf = tmp_path / "v.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   f"chr4\t120001\trs1\t{base}\t{'C' if base != 'C' else 'G'}\t.\t.\t.\n")
    assert main(["variants", str(run_dir), "--head", "default", "--vcf", str(vcf), "--out", str(mine),
                 "--force", "--quiet"]) == 2
    err = _error(capsys)
    assert "was not made by enformer-transfer" in err and str(mine) in err
    assert (mine / "thesis.tex").read_text() == "years of work"
