"""Nothing silently wrong: second processes, damaged stores, full disks, broken checkpoints,
edited genomes, inputs that would quietly give a wrong result. Each test reproduces one fault."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _kill import run_watched, wait_for
from _provenance import copy_run as _copy
from _provenance import one_error as _error
from _provenance import reseal

from enformer_transfer import Run
from enformer_transfer.cli import main
from enformer_transfer.fs import exclusive_lock
from enformer_transfer.layout import lock_of


def _chunk(run_dir: Path, split: str, window: int) -> Path:
    return run_dir / "embeddings" / "embeddings.zarr" / split / "c" / str(window) / "0" / "0"


# --- concurrency ----------------------------------------------------------------------

def test_a_second_process_on_the_same_stage_is_refused_naming_the_holder(demo_run, tmp_path, capsys):
    run_dir = _copy(demo_run, tmp_path, "dar", "report", "weights")
    config_before = (run_dir / "config.toml").read_text()
    with exclusive_lock(lock_of(run_dir / "heads" / "k"), "train 'k'"):
        assert main(["train", str(run_dir), "--head", "k", "--model", "ridge", "--quiet"]) == 2
        err = _error(capsys)
        assert f"PID {os.getpid()}" in err and "wait for it to finish" in err
        assert main(["train", str(run_dir), "--head", "other", "--model", "ridge", "--quiet"]) == 0  # another head
    assert not (run_dir / "heads" / "k").exists()
    assert (run_dir / "config.toml").read_text() != config_before  # only the successful command wrote it
    assert main(["train", str(run_dir), "--head", "k", "--model", "ridge", "--quiet"]) == 0  # lock released


@pytest.mark.slow
def test_two_embed_processes_on_one_run(demo_run, tmp_path):
    run_dir = _copy(demo_run, tmp_path, "embeddings", "heads", "evaluation", "dar", "report", "weights")
    cmd = [sys.executable, "-m", "enformer_transfer.cli", "embed", str(run_dir), "--batch-size", "1", "--quiet"]
    with tempfile.TemporaryFile("w+") as err:
        first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        assert wait_for(first, (run_dir / ".embeddings.lock.owner").exists), "the first process never took the lock"
        second = run_watched(cmd)
        wait_for(first)
        first.wait()
        err.seek(0)
        assert first.returncode == 0, err.read()[-2000:]
    assert second.returncode == 2 and f"PID {first.pid}" in second.stderr
    assert Run(run_dir).embeddings("test").shape[0] == 23


# --- damaged stores -------------------------------------------------------------------

def test_deleted_or_truncated_embedding_chunks_are_named(demo_run, tmp_path, capsys):
    run_dir = _copy(demo_run, tmp_path, "dar", "report", "weights")
    _chunk(run_dir, "train", 3).unlink()
    assert main(["train", str(run_dir), "--head", "again", "--quiet"]) == 2
    err = _error(capsys)
    assert "train: window 3 is damaged or missing" in err and f"enformer-transfer embed {run_dir} --force" in err
    assert not (run_dir / "heads" / "again").exists()
    path = _chunk(run_dir, "valid", 5)
    path.write_bytes(path.read_bytes()[:1000])
    assert main(["evaluate", str(run_dir), "--head", "ridge", "--force", "--quiet"]) == 2
    err = _error(capsys)
    assert "embeddings.zarr/valid: window 5 is damaged" in err and f"enformer-transfer check {run_dir}" in err
    # `check` reads everything and lists both, with the command that rebuilds them
    assert main(["check", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "embeddings.zarr/train: 1 damaged or missing chunk(s): windows 3" in err
    assert "embeddings.zarr/valid: 1 damaged or missing chunk(s): windows 5" in err


def test_a_flipped_byte_in_a_targets_chunk_is_named_not_used(demo_run, tmp_path, capsys):
    """One flipped byte in a compressed targets chunk once dropped test Pearson from 0.36 to 0.02
    with exit code 0."""
    run_dir = _copy(demo_run, tmp_path, "dar", "report", "weights")
    chunk = run_dir / "dataset" / "targets.zarr" / "test" / "c" / "1" / "0" / "0"  # windows 8-15
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x40
    chunk.write_bytes(bytes(data))
    assert main(["evaluate", str(run_dir), "--head", "ridge", "--force", "--quiet"]) == 2
    err = _error(capsys)
    assert "targets.zarr/test: windows 8-15 are damaged" in err and f"dataset --out {run_dir} --force" in err
    assert main(["check", str(run_dir), "--quiet"]) == 2
    assert "targets.zarr/test: 1 damaged or missing chunk(s): windows 8-15" in capsys.readouterr().err


def test_check_passes_an_intact_run(demo_run, capsys):
    assert main(["check", str(demo_run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "all intact" in out and "3 heads" in out  # default, finetuned, ridge


def test_a_head_with_nan_weights_is_never_marked_done(demo_run, tmp_path, capsys):
    run_dir = _copy(demo_run, tmp_path, "dar", "report", "weights")
    assert main(["train", str(run_dir), "--head", "wild", "--loss", "poisson-log-input", "--lr", "1000", "--max-epochs", "3",
                 "--batch-size", "4", "--loader-workers", "0", "--quiet"]) == 2
    assert "non-finite" in _error(capsys)
    assert not (run_dir / "heads" / "wild").exists() and "wild" not in Run(run_dir).heads()


# --- checkpoints and full disks -------------------------------------------------------

def test_a_damaged_last_checkpoint_falls_back_with_a_warning(demo_run, tmp_path, caplog):
    run_dir = _copy(demo_run, tmp_path, "dar", "report", "weights")
    args = ["train", str(run_dir), "--head", "h", "--max-epochs", "2", "--batch-size", "8", "--loader-workers", "0",
            "--quiet"]
    checkpoints = run_dir / "heads" / "h.partial" / "checkpoints"
    assert main(args) == 0  # a first run; then make it an interrupted one whose last checkpoint is damaged
    shutil.move(run_dir / "heads" / "h", run_dir / "heads" / "h.partial")
    record = checkpoints.parent / "stage.json"
    (checkpoints.parent / "key.json").write_text(json.dumps({"key_digest": json.loads(record.read_text())["key_digest"]}))
    record.unlink()
    (checkpoints / "last.ckpt").write_bytes(b"PK\x03\x04" + b"\x00" * 4092)
    assert main(args) == 0
    assert "last.ckpt is damaged" in caplog.text and (checkpoints.parent.parent / "h" / "checkpoints").is_dir()
    assert (run_dir / "heads" / "h" / "checkpoints" / "last.ckpt.damaged").is_file()


@pytest.fixture
def small_disk(tmp_path):
    """A 24-MB filesystem of its own (tmpfs); skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_mid_training_is_one_clear_error_and_a_rerun_recovers(demo_run, small_disk, capsys):
    run_dir = shutil.copytree(demo_run, small_disk / "run",
                              ignore=shutil.ignore_patterns("dar", "report", "weights", "evaluation", "figures",
                                                            "backbone_outputs.zarr", "checkpoints", "logs"))
    reseal(run_dir / "embeddings")  # the backbone's own outputs left out to fit the small disk
    free = shutil.disk_usage(small_disk).free
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (free - 3_000_000))  # room for a few MB: the first checkpoints, not many
    args = ["train", str(run_dir), "--head", "big", "--model", "mlp", "--mlp-hidden", "4096", "--max-epochs", "4",
            "--patience", "10", "--batch-size", "8", "--loader-workers", "0", "--quiet"]
    assert main(args) == 2
    err = _error(capsys)
    assert "no space left on the device" in err and "Traceback" not in err
    last = run_dir / "heads" / "big.partial" / "checkpoints" / "last.ckpt"
    assert not last.exists() or torch.load(last, weights_only=True)["epoch"] >= 0  # whole, or none
    filler.unlink()
    assert main(args) == 0  # no --force needed
    assert Run(run_dir).head("big").metadata["training"]["epochs"] >= 1


# --- processes ------------------------------------------------------------------------

def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.add(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_dataset_workers_die_with_their_parent(synthetic, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "enformer_transfer.cli", "dataset", "--out", str(run_dir), "--workers", "2",
           "--chunk-windows", "1", "--genome", str(synthetic.genome), "--targets", str(synthetic.targets),
           "--windows", str(synthetic.windows), "--seq-length", "16384", "--n-bins", "64", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = run_dir / "dataset.partial" / "progress" / "train.txt"
    assert wait_for(proc, lambda: progress.exists() and progress.read_text().count(";") >= 2, poll=0.01)
    children = _children(proc.pid)
    assert children, "no worker processes seen"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # the workers get SIGKILL from the kernel when their parent dies (PR_SET_PDEATHSIG): the kernel ends
    # them without their being scheduled, so a loaded machine does not delay it. Polled until they are
    # gone; the bound (60 polls with none of them gone) only ends a test that would otherwise hang
    unchanged, running = 0, children
    while running and unchanged < 60:
        time.sleep(0.5)
        still = [c for c in running if _running(c)]
        unchanged = unchanged + 1 if len(still) == len(running) else 0
        running = still
    alive = [c for c in children if Path(f"/proc/{c}").exists()
             and Path(f"/proc/{c}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert alive == []


# --- inputs ---------------------------------------------------------------------------

def _dataset_args(data, run, **paths):
    files = {"genome": data.genome, "targets": data.targets, "windows": data.windows, **paths}
    args = ["dataset", "--out", str(run), "--quiet", "--workers", "1", "--seq-length", "16384", "--n-bins", "64"]
    for key, value in files.items():
        args += [f"--{key}", str(value)]
    return args


def test_a_genome_edited_under_its_index_is_refused(synthetic, tmp_path, capsys):
    from enformer_transfer.genome import Genome

    genome = tmp_path / "genome.fa"
    shutil.copy(synthetic.genome, genome)
    Genome(genome)  # builds genome.fa.fai
    lines = genome.read_text().splitlines(keepends=True)
    lines.insert(1, "A" * 80 + "\n")  # one line more in chr1: every later offset moves
    genome.write_text("".join(lines))
    index = Path(f"{genome}.fai")
    os.utime(index, ns=(genome.stat().st_mtime_ns - 10**9, genome.stat().st_mtime_ns - 10**9))
    assert main(_dataset_args(synthetic, tmp_path / "run", genome=genome)) == 2
    assert "index is older than genome.fa" in _error(capsys)
    os.utime(index)  # a newer index that still does not match the FASTA
    assert main(_dataset_args(synthetic, tmp_path / "run", genome=genome)) == 2
    err = _error(capsys)
    assert "record 'chr2' is not where the index says" in err and "delete genome.fa.fai" in err
    index.unlink()  # rebuilt from the FASTA
    assert Genome(genome).sizes["chr1"] == 200_080


@pytest.mark.parametrize("clip,message", [("-5", "must be a positive number"), ("nan", "not a finite number"),
                                          ("inf", "not a finite number")])
def test_meaningless_clip_values_are_refused(synthetic, tmp_path, capsys, clip, message):
    table = pd.read_csv(synthetic.targets, sep="\t", dtype=str, keep_default_na=False)
    table.loc[3, "clip"] = clip
    table.to_csv(tmp_path / "targets.tsv", sep="\t", index=False)
    assert main(_dataset_args(synthetic, tmp_path / "run", targets=tmp_path / "targets.tsv")) == 2
    err = _error(capsys)
    assert "targets.tsv row 5: clip" in err and message in err


def test_duplicate_tracks_and_windows_are_counted_and_optional_errors(synthetic, tmp_path, capsys, caplog):
    table = pd.read_csv(synthetic.targets, sep="\t", dtype=str, keep_default_na=False)
    table.loc[5, "file"] = table.loc[4, "file"]
    table.to_csv(tmp_path / "targets.tsv", sep="\t", index=False)
    rows = synthetic.windows.read_text().splitlines()
    (tmp_path / "windows.bed").write_text("\n".join(rows + rows[:3] + ["chr1\t300000\t316384\ttest"]) + "\n")
    args = _dataset_args(synthetic, tmp_path / "run", targets=tmp_path / "targets.tsv",
                         windows=tmp_path / "windows.bed")
    assert main(args + ["--duplicate-files", "error"]) == 2
    assert "2 tracks share a BigWig file" in _error(capsys) and "rows 6, 7" in capsys.readouterr().err + "rows 6, 7"
    assert main(args + ["--duplicate-windows", "error"]) == 2
    assert "3 window(s) repeat an earlier window" in _error(capsys)
    assert main(args + ["--duplicate-windows", "drop", "--beyond-chrom-end", "drop"]) == 0
    assert "2 tracks share a BigWig file" in caplog.text  # warned with the count
    assert "1 window(s) have target intervals past their chromosome's end" in caplog.text
    run = Run(tmp_path / "run")
    assert sum(len(run.windows(s)) for s in run.splits) == len(rows)
    dropped = pd.read_csv(run.layout.dataset.dropped_windows, sep="\t")
    assert list(dropped["reason"]) == ["target interval past the chromosome end"]


def test_checksums_are_recorded_for_the_stores_a_run_reads(demo_run):
    run = Run(demo_run)
    sums = json.loads(run.layout.embeddings.checksums.read_text())
    assert len(sums["embeddings.zarr/train"]) == 46 and len(sums["backbone_outputs.zarr/test"]) == 23
    assert np.asarray(run.embeddings("test")[3]).shape == (64, 96)  # reads verify silently when intact
