"""The backbone adapter: `backbone init` / `backbone info` from the command line on real files,
family detection, geometry checks that name the dataset flags, and what the stages ask the
family (trunk, checkpoint segments, fine-tuning modules, DeepLIFT rules)."""

import hashlib
import json
from importlib import metadata

import numpy as np
import pytest
import torch

from enformer_transfer import Geometry, InputError
from enformer_transfer.backbone.enformer import EnformerFamily
from enformer_transfer.backbone.families import FAMILIES, detect_family, get_family
from enformer_transfer.backbone.load import backbone_family, load_backbone
from enformer_transfer.backbone.model import SequenceModel
from enformer_transfer.cli import main
from enformer_transfer.finetune.adapt import adapt


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bb") / "tiny"
    assert main(["backbone", "init", "--kind", "enformer", "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    return out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_init_tiny_and_info_json_from_the_cli(tiny, capsys):
    from enformer_pytorch import Enformer

    capsys.readouterr()
    assert main(["backbone", "info", str(tiny), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    model = Enformer.from_pretrained(str(tiny))  # the package's own loader reads what init wrote
    assert info["kind"] == "enformer" and info["package"] == "enformer-pytorch"
    assert info["package_version"] == metadata.version("enformer-pytorch")
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert (info["seq_length"], info["bin_size"], info["target_bins"], info["embedding_dim"]) == (14_080, 128, 64, 96)
    assert info["output_tracks"] == 8 and info["architecture"]["dim"] == 48
    files = {f["path"]: f for f in info["files"]}
    assert set(files) == {"config.json", "pytorch_model.bin"}
    for name, f in files.items():
        assert f["sha256"] == hashlib.sha256((tiny / name).read_bytes()).hexdigest()
    assert main(["backbone", "info", str(tiny)]) == 0
    text = capsys.readouterr().out
    assert "64 x 96 float16 = 12.3 kB per window" in text and "enformer-pytorch" in text


def test_full_preset_is_the_published_geometry():
    family = get_family("enformer")
    assert isinstance(family, EnformerFamily) and set(FAMILIES) >= {"enformer"}
    from enformer_pytorch import Enformer, EnformerConfig

    with torch.device("meta"):  # the published architecture's numbers without allocating it
        model = Enformer(EnformerConfig(dim=1536, depth=11, heads=8, target_length=896))
    g = family.geometry(model)
    assert (g.seq_length, g.bin_size, g.target_bins, g.embedding_dim) == (196_608, 128, 896, 3_072)


def test_unknown_folders_and_kinds_are_refused_in_one_line(tiny, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "mystery"}))
    (other / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(InputError, match=f"{other}: config.json is no backbone of a known kind \\(enformer"):
        detect_family(other)
    assert main(["backbone", "info", str(other)]) == 2
    assert "no backbone of a known kind" in _one_line_error(capsys)
    with pytest.raises(InputError, match="backbone kind 'mystery' is not known \\(known: enformer"):
        get_family("mystery")
    with pytest.raises(InputError, match="a enformer backbone, not borzoi"):
        backbone_family(tiny, kind="borzoi")
    assert backbone_family("EleutherAI/enformer-official-rough", allow_download=True).kind == "enformer"
    with pytest.raises(SystemExit):
        main(["backbone", "init", "--kind", "enformer", "--preset", "huge", "--out", str(tmp_path / "x")])
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_geometry_mismatch_names_the_numbers_and_the_dataset_flags(tiny):
    family = EnformerFamily()
    model = family.load(str(tiny))
    family.check_geometry(model, 16_384, 128, 64, "bb")  # the demo's geometry: 128 positions, cropped to 64
    with pytest.raises(InputError, match="has 128-bp bins but the dataset's bin_size is 64; rebuild the dataset "
                                         "with --bin-size 128 --seq-length 14080 --n-bins 64"):
        load_backbone(tiny, Geometry(seq_length=16_384, bin_size=64, n_bins=128))
    with pytest.raises(InputError, match="128 output positions cannot be cropped symmetrically to 63 bins.*--n-bins 64"):
        family.check_geometry(model, 16_384, 128, 63, "bb")
    with pytest.raises(InputError, match="tf_gamma needs 1,536 trunk positions"):
        load_backbone(tiny, Geometry(seq_length=16_384, bin_size=128, n_bins=64), tf_gamma=True)


def test_the_family_drives_checkpointing_finetuning_and_deeplift(tiny):
    torch.manual_seed(0)
    family = EnformerFamily()
    model = family.load(str(tiny))
    trunk = family.trunk(model, 32)
    head = torch.nn.Linear(96, 3)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (1, 8_192)), 4).float()
    # activation checkpointing over the family's segments: same values and gradients
    plain, checked = SequenceModel(trunk, head, family=family), SequenceModel(trunk, head, checkpointing=True,
                                                                              family=family)
    assert len(family.checkpoint_segments(trunk)) > len(trunk)
    grads = []
    for m in (plain, checked):
        m.train()
        m.zero_grad()
        torch.manual_seed(1)  # the same dropout masks
        m(x).sum().backward()
        grads.append(model.stem[0].weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    # last:K opens the last block and the final pointwise layers only; heads never train
    adapt(model, family, "last:1")
    trained = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"transformer", "final_pointwise"}
    adapt(model, family, "all")
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("_heads"))
    with pytest.raises(InputError, match="the trunk has 1 transformer blocks"):
        adapt(model, family, "last:2")
    # DeepLIFT: the family's rules swap the attention modules and leave the outputs unchanged;
    # a trunk of no known family is refused in one line naming the methods that work
    from enformer_transfer.interpret.deeplift import deeplift_rules

    model.eval()
    with torch.no_grad():
        before = plain(x).numpy()
        with deeplift_rules(plain):
            np.testing.assert_allclose(plain(x).numpy(), before, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="no exact DeepLIFT rules; use --method grad-input or --method ism"):
        deeplift_rules(SequenceModel(trunk, head))


def test_init_geometry_options_per_family_and_info_without_the_runtime(tmp_path, capsys):
    """--seq-length / --n-bins reach each family's own setting, options a family has not are
    refused in one line, and `backbone info` on a Flashzoi folder without flash-attn still names
    its files and says why the model cannot be loaded here."""
    out = tmp_path / "ag"
    assert main(["backbone", "init", "--kind", "alphagenome", "--preset", "tiny", "--seq-length", "32768",
                 "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["backbone", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["seq_length"], info["bin_size"], info["target_bins"]) == (32768, 128, 256)
    for args, message in ((["--kind", "alphagenome", "--n-bins", "5"], "its bins follow from --seq-length"),
                          (["--kind", "borzoi", "--human-tracks", "3"], "no option human_tracks"),
                          (["--kind", "enformer", "--seq-length", "5"], "the input length follows from --n-bins")):
        assert main(["backbone", "init", "--preset", "tiny", *args, "--out", str(tmp_path / "x")]) == 2
        assert message in _one_line_error(capsys)
    assert not (tmp_path / "x").exists()
    if FAMILIES.get("flashzoi") and not get_family("flashzoi")._runs_here():
        flash = tmp_path / "fz"
        assert main(["backbone", "init", "--kind", "flashzoi", "--preset", "tiny", "--out", str(flash), "--quiet"]) == 0
        capsys.readouterr()
        assert main(["backbone", "info", str(flash), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["kind"] == "flashzoi" and "needs flash-attn" in info["not_loadable"]
        assert {f["path"] for f in info["files"]} == {"config.json", "model.safetensors"}
