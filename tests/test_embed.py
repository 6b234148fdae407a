"""Embeddings: equal to a direct enformer-pytorch forward pass; resumable; two processes; bad inputs."""

import os
import subprocess
import sys

import numpy as np
import pyfaidx
import pytest
import torch
from _kill import free_port, kill_when, without_quiet

from enformer_transfer import (
    EnformerTransferError,
    InputError,
    Run,
    RunConfig,
    StaleStageError,
    build_dataset,
    embed_run,
)
from enformer_transfer.backbone.load import init_backbone
from enformer_transfer.cli import main
from enformer_transfer.synthetic import DEMO_GEOMETRY

TINY = dict(dim=48, depth=1, heads=2, attn_dim_key=16, n_bins=64, human_tracks=8)


@pytest.fixture(scope="module")
def dataset_run(synthetic, tmp_path_factory):
    """A finished dataset stage on the synthetic data (copied per test by `fresh_run`)."""
    run_dir = tmp_path_factory.mktemp("embed") / "run"
    config = RunConfig(run_dir=run_dir, geometry=DEMO_GEOMETRY)
    ds = config.dataset
    ds.genome, ds.targets, ds.windows, ds.workers = synthetic.genome, synthetic.targets, synthetic.windows, 1
    build_dataset(config, progress=False)
    return run_dir


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return init_backbone(tmp_path_factory.mktemp("bb") / "tiny", seed=1, **TINY)


@pytest.fixture
def fresh_run(dataset_run, tmp_path):
    import shutil

    target = tmp_path / "run"
    shutil.copytree(dataset_run, target)
    return target


def _embed(run_dir, backbone, **embed):
    config = Run(run_dir).config
    config.run_dir = run_dir
    config.embed.backbone = str(backbone)
    config.embed.loader_workers = 0
    for key, value in embed.items():
        setattr(config.embed, key, value)
    return embed_run(config, progress=False)


def _direct(backbone, genome, windows, pad=0.25):
    """enformer-pytorch directly, one window at a time, one-hot built here independently."""
    from enformer_pytorch import Enformer

    model = Enformer.from_pretrained(str(backbone)).eval()
    fasta = pyfaidx.Fasta(str(genome), sequence_always_upper=True)
    lookup = {"A": 0, "C": 1, "G": 2, "T": 3}
    out = []
    for w in windows.itertuples():
        size = len(fasta[w.chrom])
        x = torch.full((w.input_end - w.input_start, 4), pad)
        lo, hi = max(0, w.input_start), min(size, w.input_end)
        seq = str(fasta[w.chrom][lo:hi])
        core = torch.zeros(len(seq), 4)
        for j, base in enumerate(seq):
            if base in lookup:
                core[j, lookup[base]] = 1
        x[lo - w.input_start : lo - w.input_start + len(seq)] = core
        with torch.no_grad():
            out.append(model(x[None], return_only_embeddings=True)[0].numpy())
    return np.stack(out)


def test_embeddings_equal_direct_forward(fresh_run, backbone, synthetic):
    _embed(fresh_run, backbone, batch_size=3, loader_workers=2, splits=["valid", "test"])
    run = Run(fresh_run)
    emb = run.embeddings("test")
    assert emb.shape == (23, 64, 96) and emb.dtype == np.float16 and emb.chunks == (1, 64, 96)
    windows = run.windows("test").iloc[[0, 7, 22]]  # 22: the last window, near the chromosome end
    direct = _direct(backbone, synthetic.genome, windows)
    ours = np.asarray(emb.get_orthogonal_selection(([0, 7, 22], slice(None), slice(None)))).astype(np.float32)
    np.testing.assert_allclose(ours, direct, rtol=2**-10, atol=1e-5)  # float16 rounding
    assert run.embed_precision == "fp32" and run.embedding_dim == 96
    assert run.embeddings_record.key["backbone"]["files"][0]["path"].endswith("config.json")
    with pytest.raises(InputError, match="split 'train' was not embedded"):
        run.embeddings("train")


def test_bf16_close_to_fp32(fresh_run, backbone, tmp_path):
    _embed(fresh_run, backbone, splits=["test"], precision="bf16")
    bf16 = np.asarray(Run(fresh_run).embeddings("test")).astype(np.float64).ravel()
    other = tmp_path / "fp32"
    import shutil

    shutil.copytree(fresh_run, other)
    shutil.rmtree(other / "embeddings")
    _embed(other, backbone, splits=["test"], precision="fp32")
    fp32 = np.asarray(Run(other).embeddings("test")).astype(np.float64).ravel()
    assert np.corrcoef(bf16, fp32)[0, 1] > 0.995  # bf16 keeps 8 mantissa bits


@pytest.mark.slow
def test_train_bin_fraction_and_backbone_heads(fresh_run, backbone, tmp_path):
    _embed(fresh_run, backbone, train_bin_fraction=0.125, store_backbone_outputs=True, batch_size=4)
    run = Run(fresh_run)
    emb, bins = run.embeddings("train"), run.embedding_bins("train")
    assert emb.shape == (46, 8, 96) and bins.shape == (46, 8)
    b = np.asarray(bins)
    assert (np.diff(b, axis=1) > 0).all() and b.min() >= 0 and b.max() < 64
    assert len({tuple(r) for r in b}) > 1  # a different subset per window
    assert run.embeddings("valid").shape == (23, 64, 96) and run.embedding_bins("valid") is None
    full = tmp_path / "full"
    import shutil

    shutil.copytree(fresh_run, full)
    shutil.rmtree(full / "embeddings")
    _embed(full, backbone, splits=["train"], train_bin_fraction=1.0, store_backbone_outputs=False)
    all_bins = np.asarray(Run(full).embeddings("train"))
    np.testing.assert_array_equal(np.asarray(emb), np.take_along_axis(all_bins, b[..., None].astype(int), axis=1))
    heads = np.asarray(run.backbone_outputs("test"))
    assert heads.shape == (23, 64, 8) and (heads >= 0).all()
    from enformer_pytorch import Enformer

    model = Enformer.from_pretrained(str(backbone)).eval()
    e = torch.from_numpy(np.asarray(run.embeddings("test")[:2]).astype(np.float32))
    with torch.no_grad():
        expected = model.heads["human"](e).numpy()
    np.testing.assert_allclose(heads[:2].astype(np.float32), expected, rtol=5e-3, atol=1e-3)


def _cli(run_dir, backbone, *extra):
    return [sys.executable, "-m", "enformer_transfer.cli", "embed", str(run_dir), "--backbone", str(backbone),
            "--loader-workers", "0", "--quiet", *extra]


@pytest.mark.slow
def test_resume_after_kill_gives_identical_result(fresh_run, backbone, tmp_path):
    import shutil

    reference = tmp_path / "reference"
    shutil.copytree(fresh_run, reference)
    progress = fresh_run / "embeddings.partial" / "progress" / "train.rank0.txt"
    kill_when(_cli(fresh_run, backbone, "--batch-size", "1"),
              lambda: progress.exists() and progress.read_text().count(";") >= 5)
    assert not (fresh_run / "embeddings").exists()
    done_before = progress.read_text().count(";")
    result = subprocess.run(without_quiet(_cli(fresh_run, backbone, "--batch-size", "1")), capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr
    assert f"embed: {92 - done_before} windows" in result.stdout  # nothing finished is redone
    _embed(reference, backbone, batch_size=1)
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(np.asarray(Run(fresh_run).embeddings(split)),
                                      np.asarray(Run(reference).embeddings(split)))


@pytest.mark.slow
def test_two_processes_gloo(fresh_run, backbone, tmp_path):
    import shutil

    single = tmp_path / "single"
    shutil.copytree(fresh_run, single)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "enformer_transfer.cli", "embed", str(fresh_run), "--backbone", str(backbone),
           "--loader-workers", "0", "--quiet", "--batch-size", "2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    logs = sorted(p.name for p in (fresh_run / "embeddings" / "progress").glob("train.rank*.txt"))
    assert logs == ["train.rank0.txt", "train.rank1.txt"]
    assert Run(fresh_run).embeddings_record.stats["world_size"] == 2
    _embed(single, backbone, batch_size=2)
    for split in ("train", "valid", "test"):
        np.testing.assert_allclose(np.asarray(Run(fresh_run).embeddings(split)).astype(np.float32),
                                   np.asarray(Run(single).embeddings(split)).astype(np.float32), rtol=2**-9, atol=1e-4)


def test_skip_when_up_to_date_and_refuse_other_backbone(fresh_run, backbone, tmp_path, caplog, capsys):
    _embed(fresh_run, backbone, splits=["test"])
    assert "embed: Enformer 64 x 96 float16 = 12.3 kB per window" in capsys.readouterr().out  # the plan's size
    _embed(fresh_run, backbone, splits=["test"])
    assert "up to date" in caplog.text
    other = init_backbone(tmp_path / "other", seed=2, **TINY)
    with pytest.raises(StaleStageError, match="built from different inputs.*--force"):
        _embed(fresh_run, other, splits=["test"])


def test_bad_inputs(fresh_run, backbone, tmp_path, capsys):
    def fails(args, *needles):
        assert main(args) == 2
        err = capsys.readouterr().err
        for needle in needles:
            assert needle in err, err

    base = ["embed", str(fresh_run), "--quiet", "--loader-workers", "0"]
    fails(base + ["--backbone", str(tmp_path / "missing")], "backbone directory not found")
    (tmp_path / "empty").mkdir()
    fails(base + ["--backbone", str(tmp_path / "empty")], "no config.json")
    fails(base + ["--backbone", "EleutherAI/enformer-official-rough"], "huggingface-cli download", "--allow-download")
    wrong = init_backbone(tmp_path / "wrong", seed=0, **{**TINY, "n_bins": 128}, num_downsamples=6)
    fails(base + ["--backbone", str(wrong)], "(enformer) has 64-bp bins", "bin_size is 128",
          "rebuild the dataset with --bin-size 64 --seq-length 14080 --n-bins 128")
    (tmp_path / "nodata").mkdir()
    fails(["embed", str(tmp_path / "nodata"), "--backbone", str(backbone)], "no finished dataset stage")
    fails(base + ["--backbone", str(backbone), "--splits", "test,holdout"], "no split holdout")
    assert not (fresh_run / "embeddings").exists() and not (fresh_run / "embeddings.partial").exists()


def test_full_disk_is_refused_early(fresh_run, backbone):
    config = Run(fresh_run).config
    config.run_dir = fresh_run
    config.embed.backbone = str(backbone)
    config.dataset.free_space_limit = 1000
    with pytest.raises(InputError, match="not enough disk space for the embeddings store"):
        embed_run(config, progress=False)
    assert not (fresh_run / "embeddings.partial").exists()


def test_float16_overflow_is_an_error(fresh_run, backbone, tmp_path):
    from enformer_pytorch import Enformer

    model = Enformer.from_pretrained(str(backbone))
    with torch.no_grad():
        for p in model.final_pointwise.parameters():
            p.mul_(1e4)
    model.save_pretrained(str(tmp_path / "huge"), safe_serialization=False)
    with pytest.raises(EnformerTransferError, match="outside the float16 range.*--storage-dtype float32"):
        _embed(fresh_run, tmp_path / "huge", splits=["test"])
    _embed(fresh_run, tmp_path / "huge", splits=["test"], storage_dtype="float32")
    assert Run(fresh_run).embeddings("test").dtype == np.float32
