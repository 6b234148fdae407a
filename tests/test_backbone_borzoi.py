"""The Borzoi and Flashzoi families on a tiny random backbone: folders, exactness against the
package's own forward, LoRA, checkpointing, the ISM split, geometry errors and Flashzoi on CPU."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
from _borzoi import one_hot, tiny_borzoi
from torch.utils.checkpoint import checkpoint

from enformer_transfer.backbone.borzoi import BorzoiFamily, FlashzoiFamily
from enformer_transfer.errors import InputError, IntegrityError

FAMILY = BorzoiFamily()
TOLERANCE = 2e-3  # max |difference| / max |reference|, float32


def _relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value - reference).abs().max() / reference.abs().max())


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> pathlib.Path:
    return tiny_borzoi(tmp_path_factory.mktemp("borzoi"))


@pytest.fixture
def model(folder):
    return FAMILY.load(str(folder))


@pytest.fixture(scope="module")
def dna() -> torch.Tensor:
    return one_hot(2, 8192, seed=1)


def test_init_writes_a_folder_the_package_and_load_read(folder):
    from borzoi_pytorch import Borzoi

    config = json.loads((folder / "config.json").read_text())
    assert (folder / "model.safetensors").is_file()
    assert config["model_type"] == "borzoi" and config["flashed"] is False
    assert BorzoiFamily.detects(folder) and not FlashzoiFamily.detects(folder)
    ours, theirs = FAMILY.load(str(folder)), Borzoi.from_pretrained(str(folder))
    assert not ours.training
    assert FAMILY.geometry(ours) == FAMILY.geometry(theirs)
    assert (FAMILY.geometry(ours).seq_length, FAMILY.geometry(ours).bin_size, FAMILY.geometry(ours).target_bins,
            FAMILY.geometry(ours).embedding_dim) == (8192, 32, 96, 1920)
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_full_preset_is_the_published_architecture():
    config = FAMILY.preset_config("full").to_dict()
    assert (config["dim"], config["depth"], config["heads"], config["seq_length"], config["bins_to_return"]) == (
        1536, 8, 8, 524_288, 6144)
    with pytest.raises(InputError, match="--preset"):
        FAMILY.preset_config("huge")


def test_trunk_equals_the_package_forward(model, dna):
    """The stored embedding is forward(x, return_embeddings=True)'s second output, cropped."""
    with torch.no_grad():
        _, reference = model(dna.transpose(1, 2), return_embeddings=True)
        reference = reference.transpose(1, 2)  # (B, 96, 1920)
        embeddings = FAMILY.trunk(model, 96)(dna)
        narrower = FAMILY.trunk(model, 64)(dna[:1])
    assert embeddings.shape == (2, 96, 1920)
    error = _relative_error(embeddings, reference)
    assert error < TOLERANCE, error
    assert _relative_error(narrower, reference[:1, 16:80]) < TOLERANCE
    assert float(reference.std(dim=1).mean()) > 1e-2  # calibrated: bins differ, activations not collapsed
    with torch.no_grad():  # another input length on the same model: the package's position cache is renewed
        assert FAMILY.trunk(model, 96)(dna[:1, :4096]).shape == (1, 96, 1920)


def test_output_head_equals_the_package_forward(model, dna):
    head = FAMILY.output_head(model)
    with torch.no_grad():
        reference = model(dna[:1].transpose(1, 2)).transpose(1, 2)  # (1, 96, 7611)
        tracks = head(FAMILY.trunk(model, 96)(dna[:1]))
    assert tracks.shape == (1, 96, 7611) and bool((tracks >= 0).all())
    assert _relative_error(tracks, reference) < TOLERANCE
    assert FAMILY.output_weights(model).shape == (7611, 1920)
    assert FAMILY.head_modules(model) == ["human_head"]


def test_split_is_exact_and_local(model, dna):
    trunk = FAMILY.trunk(model, 96)
    split = FAMILY.split(trunk)
    assert (split.stride, split.half_width) == (32, 162)
    mutant = dna[:1].clone()
    position = 4000
    mutant[0, position] = mutant[0, position].roll(1)
    with torch.no_grad():
        local, changed = split.local(dna[:1]), split.local(mutant)
        assert torch.equal(split.rest(local), trunk(dna[:1]))
    assert local.shape == (1, 1280, 8192 // 32)
    moved = (local - changed).abs().amax(dim=1)[0].nonzero().flatten()
    assert len(moved) and moved.min() * 32 >= position - split.half_width - 32
    assert moved.max() * 32 <= position + split.half_width


def test_checkpoint_segments_give_the_same_outputs_and_gradients(model, dna):
    trunk = FAMILY.trunk(model, 96)
    segments = FAMILY.checkpoint_segments(trunk)
    assert len(segments) == 1 + 9 + 1 + 2 + 1 + 1  # stem, tower layers, down, 2 blocks, up, final
    x = dna[:1, 2048:6144]  # 4,096 bp: 128 positions, cropped to 96
    plain = trunk(x)
    plain.square().mean().backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    state = x
    for segment in segments:
        has_parameters = any(True for _ in segment.parameters())
        state = checkpoint(segment, state, use_reentrant=False) if has_parameters else segment(state)
    state.square().mean().backward()
    assert torch.allclose(state, plain, rtol=0, atol=1e-6)
    for name, grad in expected.items():
        got = dict(model.named_parameters())[name].grad
        assert torch.allclose(got, grad, rtol=1e-4, atol=1e-7 * float(grad.abs().max()) + 1e-12), name


def test_lora_targets_adapt_the_trunk_and_the_merged_model_round_trips(model, dna, tmp_path):
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    from enformer_transfer.finetune.adapt import merge_adapters

    targets = FAMILY.lora_targets(model)
    modules = dict(model.named_modules())
    assert all(name in modules for name in targets)
    assert not any(name.startswith(("human_head", "mouse_head")) for name in targets)
    assert not any(modules[name].groups > 1 for name in targets if isinstance(modules[name], torch.nn.Conv1d))
    assert {"transformer.0.0.fn.1.to_q", "transformer.0.0.fn.1.to_v", "transformer.0.1.fn.1", "transformer.0.1.fn.4",
            "conv_dna.conv_layer", "final_joined_convs.0.conv_layer"} <= set(targets)
    x = dna[:1, 2048:6144]
    with torch.no_grad():
        before = FAMILY.trunk(model, 96)(x)
    for p in model.parameters():
        p.requires_grad_(False)
    model = inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.0), model)
    assert sum(isinstance(m, LoraLayer) for m in model.modules()) == len(targets)
    trunk = FAMILY.trunk(model, 96)  # built after injection: it runs the adapted modules
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in lora:
        p.requires_grad_(True)
    optimizer = torch.optim.SGD(lora, lr=1.0)
    trunk(x).square().mean().backward()
    optimizer.step()
    with torch.no_grad():
        adapted = trunk(x)
    assert _relative_error(adapted, before) > 1e-4
    with pytest.raises(InputError, match="LoRA"):
        FAMILY.save(model, tmp_path / "unmerged")
    merged = merge_adapters(model)
    FAMILY.save(merged, tmp_path / "adapted")
    reloaded = FAMILY.load(str(tmp_path / "adapted"))
    with torch.no_grad():
        again = FAMILY.trunk(reloaded, 96)(x)
    assert _relative_error(again, adapted) < 1e-5
    assert FAMILY.geometry(reloaded) == FAMILY.geometry(merged)


def test_blocks_and_what_follows_them(model):
    blocks = FAMILY.blocks(model)
    assert len(blocks) == 2 and all(b is m for b, m in zip(blocks, model.transformer, strict=True))
    after = {id(p) for m in FAMILY.after_blocks(model) for p in m.parameters()}
    assert all(id(p) in after for p in model.final_joined_convs.parameters())
    assert not any(id(p) in after for p in model.transformer.parameters())
    assert FAMILY.deeplift_rules(model) is None
    facts = FAMILY.describe(model)
    assert facts["depth"] == 2 and facts["own_tracks"] == {"human_head": 7611}


@pytest.mark.parametrize(("seq_length", "bin_size", "n_bins", "says"), [
    (8192, 128, 16, "--bin-size 32"),
    (8192 + 32, 32, 97, "multiple of 128"),
    (8192, 32, 95, "symmetrically"),
    (8192, 32, 300, "symmetrically"),
])
def test_a_geometry_mismatch_is_one_line(model, seq_length, bin_size, n_bins, says):
    with pytest.raises(InputError) as caught:
        FAMILY.check_geometry(model, seq_length, bin_size, n_bins, "tiny")
    assert says in str(caught.value) and "\n" not in str(caught.value)
    FAMILY.check_geometry(model, 16384, 32, 192, "tiny")  # any length on the 128-bp grid embeds


class Payload:
    """Unpickling this creates ``marker``: proof that a loader ran code from the file."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_load_refuses_code_and_unreadable_folders(folder, tmp_path):
    bad = tmp_path / "pickle"
    bad.mkdir()
    (bad / "config.json").write_text((folder / "config.json").read_text())
    marker = tmp_path / "MARKER"
    torch.save({"conv_dna.conv_layer.weight": torch.zeros(1), "payload": Payload(marker)}, bad / "pytorch_model.bin")
    with pytest.raises(IntegrityError, match="run code"):
        FAMILY.load(str(bad))
    assert not marker.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="config.json"):
        FAMILY.load(str(empty))
    (empty / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(InputError, match="cannot load borzoi"):
        FAMILY.load(str(empty))
    with pytest.raises(InputError, match="--allow-download"):
        FAMILY.load("johahi/borzoi-replicate-0")
    with pytest.raises(InputError, match="not found"):
        FAMILY.load(str(tmp_path / "nowhere"))


def test_flashzoi_writes_its_layout_and_says_what_it_needs(folder, tmp_path):
    from safetensors import safe_open

    borzoi = folder
    folder = FlashzoiFamily().init(tmp_path / "flashzoi", calibrate_batches=0)
    config = json.loads((folder / "config.json").read_text())
    assert config["flashed"] is True and FlashzoiFamily.detects(folder) and not BorzoiFamily.detects(folder)
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        keys = set(weights.keys())
        assert weights.get_slice("transformer.0.0.fn.1.mha.Wqkv.weight").get_shape() == [512, 256]
    assert {"transformer.1.0.fn.1.mha.out_proj.weight", "transformer.1.0.fn.1.mha.out_proj.bias"} <= keys
    assert not any(".to_q." in k or "rel_content_bias" in k for k in keys)
    with pytest.raises(InputError, match="not flashzoi"):
        FlashzoiFamily().load(str(borzoi))
    with pytest.raises(InputError, match="not borzoi"):
        FAMILY.load(str(folder))
    if FlashzoiFamily._runs_here():
        pytest.skip("flash-attn and a CUDA GPU are present: loading is checked on the device")
    with pytest.raises(InputError) as caught:
        FlashzoiFamily().load(str(folder))
    assert "flash-attn on a CUDA GPU" in str(caught.value) and "--kind borzoi" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_the_full_preset_has_the_published_size():
    """185,892,699 float32 parameters: the 744 MB of johahi/borzoi-replicate-*'s weights."""
    from borzoi_pytorch import Borzoi

    model = Borzoi(FAMILY.preset_config("full"))
    assert sum(p.numel() for p in model.parameters()) == 185_892_699
    assert FAMILY.geometry(model) == FAMILY.geometry(model).__class__(524_288, 32, 6144, 1920)
