"""Nothing loaded from a run directory or a backbone folder runs code: heads load from
head.safetensors + head.json, trunks and checkpoints with ``weights_only=True``; a pickle
payload is refused with one line naming the file, never executed."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest
import torch

from enformer_transfer import Run
from enformer_transfer.cli import main
from enformer_transfer.errors import IntegrityError
from enformer_transfer.heads.checkpoint import load_head, load_training_checkpoint, save_head
from enformer_transfer.heads.models import make_head
from enformer_transfer.layout import HeadFolder


class Payload:
    """Unpickling this creates ``marker``: proof that a loader ran code from the file."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _plant(path: pathlib.Path, marker: pathlib.Path, **contents) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**contents, "payload": Payload(marker)}, path)


def _error(capsys) -> str:
    return capsys.readouterr().err.strip()


def _copy(demo_run, tmp_path) -> pathlib.Path:
    return shutil.copytree(demo_run, tmp_path / "run", ignore=shutil.ignore_patterns(
        "dar", "report", "weights", "predictions", "variants", "contributions", "motifs"))


@pytest.mark.slow
def test_a_pickle_payload_as_head_pt_is_never_run(demo_run, tmp_path, capsys):
    run_dir = _copy(demo_run, tmp_path)
    marker = tmp_path / "MARKER"
    for name in ("default", "finetuned"):  # head.pt of older versions: now never read
        _plant(run_dir / "heads" / name / "head.pt", marker, state_dict={}, metadata={})
    run = Run(run_dir)
    assert run.head("default").predict(run.embeddings("test")[:1]).shape == (1, 64, 12)
    run.head("finetuned").load_trunk()
    assert main(["check", str(run_dir), "--quiet"]) == 0
    assert main(["evaluate", str(run_dir), "--head", "default", "--splits", "test", "--force", "--quiet"]) == 0
    assert not marker.exists()


def test_a_pickle_in_place_of_the_head_weights_is_refused_not_run(demo_run, tmp_path, capsys):
    run_dir = _copy(demo_run, tmp_path)
    marker = tmp_path / "MARKER"
    weights = run_dir / "heads" / "default" / "head.safetensors"
    _plant(weights, marker, weight=torch.zeros(12, 96), bias=torch.zeros(12))
    with pytest.raises(IntegrityError, match="head.safetensors: weights unreadable"):
        Run(run_dir).head("default")
    capsys.readouterr()
    assert main(["check", str(run_dir), "--quiet"]) != 0
    printed = capsys.readouterr()
    assert "--head default --force" in printed.out + printed.err
    assert main(["evaluate", str(run_dir), "--head", "default", "--splits", "test", "--force", "--quiet"]) == 2
    err = _error(capsys)
    assert "head.safetensors" in err and len(err.splitlines()) == 1
    assert not marker.exists()


def test_a_pickle_payload_in_a_finetuned_trunk_or_a_backbone_is_refused_not_run(demo_run, tmp_path):
    from enformer_transfer.backbone.enformer import EnformerFamily
    from enformer_transfer.backbone.load import load_backbone

    marker = tmp_path / "MARKER"
    backbone = tmp_path / "backbone"
    backbone.mkdir()
    shutil.copy(demo_run.parent / "backbone" / "config.json", backbone)
    _plant(backbone / "pytorch_model.bin", marker, weight=torch.zeros(1))
    with pytest.raises(IntegrityError, match="backbone: refused, loading its weights would run code"):
        load_backbone(backbone, Run(demo_run).geometry)
    run_dir = _copy(demo_run, tmp_path)
    trunk = run_dir / "heads" / "finetuned" / "trunk" / "pytorch_model.bin"
    _plant(trunk, marker, weight=torch.zeros(1))
    with pytest.raises(Exception, match="pytorch_model.bin"):  # its recorded fingerprint refuses it first
        Run(run_dir).head("finetuned").load_trunk()
    with pytest.raises(IntegrityError, match="trunk: refused"):  # and the loader itself, without a fingerprint
        EnformerFamily().load(str(trunk.parent))
    assert not marker.exists()


def test_training_checkpoints_load_as_tensors_and_a_payload_stops_the_resume(demo_run, tmp_path, capsys):
    run_dir = _copy(demo_run, tmp_path)
    marker = tmp_path / "MARKER"
    args = ["train", str(run_dir), "--head", "probe", "--max-epochs", "1", "--loader-workers", "0", "--quiet"]
    assert main(args) == 0
    final = run_dir / "heads" / "probe"
    checkpoints = sorted((final / "checkpoints").glob("*.ckpt"))
    assert checkpoints
    for path in checkpoints:  # what Lightning and our callbacks save: plain data only
        assert "state_dict" in torch.load(path, map_location="cpu", weights_only=True)

    def interrupted() -> pathlib.Path:
        """The finished head turned back into an interrupted build of the same key."""
        record = json.loads((final / "stage.json").read_text())
        partial = final.with_name("probe.partial")
        final.rename(partial)
        (partial / "stage.json").unlink()
        (partial / "key.json").write_text(json.dumps({"key_digest": record["key_digest"]}))
        return partial

    partial = interrupted()
    capsys.readouterr()
    assert main(args) == 0  # a real checkpoint resumes through Trainer.fit(weights_only=True)
    partial = interrupted()
    last = partial / "checkpoints" / "last.ckpt"
    good = torch.load(last, map_location="cpu", weights_only=True)
    _plant(last, marker, **good)
    with pytest.raises(IntegrityError, match="last.ckpt: refused, loading it would run code"):
        load_training_checkpoint(last)
    capsys.readouterr()
    assert main(args) == 2
    err = _error(capsys)
    assert "last.ckpt" in err and "--force" in err and len(err.splitlines()) == 1
    assert last.is_file()  # refused, not set aside as damaged and silently skipped
    assert not marker.exists()


@pytest.mark.parametrize("model", ["linear", "ridge", "mlp"])
def test_a_saved_head_loads_and_predicts_as_the_module_it_was(model, tmp_path):
    torch.manual_seed(0)
    module = make_head(model, 16, 3, hidden=8).eval()
    metadata = {"name": "h", "model": model, "dim": 16, "n_tracks": 3, "hidden": 8, "loss": "poisson",
                "tracks": [{"identifier": f"t{i}", "lambda": np.float32(0.5)} for i in range(3)],
                "geometry": {"seq_length": 1024, "bin_size": 128, "n_bins": 8}}
    save_head(tmp_path / "h", module, metadata)
    folder = HeadFolder(tmp_path / "h")
    assert sorted(p.name for p in folder.path.iterdir()) == ["head.json", "head.safetensors"]
    head = load_head(folder)
    x = torch.randn(2, 8, 16)
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_array_equal(head.predict(x.numpy()), expected)
    for key, value in module.state_dict().items():
        assert torch.equal(head.module.state_dict()[key], value), key
    assert head.metadata["tracks"][0]["lambda"] == 0.5  # NumPy numbers written as JSON numbers


def test_no_loader_in_the_package_may_run_pickled_code():
    """Every torch.load in the package says weights_only=True; nothing says False."""
    import re

    src = pathlib.Path(__file__).resolve().parents[1] / "src" / "enformer_transfer"
    for path in src.rglob("*.py"):
        text = path.read_text()
        assert "weights_only=False" not in text, path
        for call in re.finditer(r"torch\.load\(", text):
            assert "weights_only=True" in text[call.start(): text.index("\n", call.start()) + 200], path
