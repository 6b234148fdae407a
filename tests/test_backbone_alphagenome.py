"""AlphaGenome family (alphagenome-pt): a tiny random backbone, on real files, against the package."""

from __future__ import annotations

import json

import pytest
import torch

from enformer_transfer.backbone.alphagenome import AlphaGenomeFamily, preset_config
from enformer_transfer.errors import InputError, IntegrityError

FAMILY = AlphaGenomeFamily()
LENGTH = 16_384  # the tiny preset's input: 128 bins of 128 bp
SHORT = 8192  # AlphaGenome embeds any multiple of 2,048 bp up to its input length: quicker tests


def _onehot(batch: int = 1, length: int = SHORT, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.one_hot(torch.randint(0, 4, (batch, length), generator=generator), 4).float()


def _relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return FAMILY.init(tmp_path_factory.mktemp("alphagenome") / "tiny", preset="tiny", seed=0)


def test_init_writes_a_folder_both_loaders_read(tiny):
    from alphagenome_pt import AlphaGenome
    from safetensors.torch import load_file

    config = json.loads((tiny / "config.json").read_text())
    assert config["model_type"] == "alphagenome" and config["model_name"] == "AlphaGenome"
    assert (config["seq_length"], config["resolution"], config["organism"]) == (LENGTH, 128, "human")
    assert (tiny / "metadata.json").is_file() and AlphaGenomeFamily.detects(tiny)
    model = FAMILY.load(str(tiny))
    assert not model.training
    saved = load_file(str(tiny / "model.safetensors"))
    assert saved.keys() == model.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    theirs = AlphaGenome.load(tiny)  # the package's own loader reads the same folder
    assert all(torch.equal(saved[k], v) for k, v in theirs.state_dict().items())
    g = FAMILY.geometry(model)
    assert (g.seq_length, g.bin_size, g.target_bins, g.embedding_dim) == (LENGTH, 128, 128, 192)
    assert FAMILY.describe(model)["own_tracks"] == {"dnase": 4, "rna_seq": 3, "chip_histone": 2}


def test_trunk_equals_the_package_embed_and_own_tracks_its_predictions(tiny):
    model = FAMILY.load(str(tiny))
    x = _onehot(1, LENGTH)
    with torch.no_grad():
        ours = FAMILY.trunk(model, 96)(x)
        predictions, theirs = model.predict(x, organism_index=0, return_embeddings=True)
        tracks = FAMILY.output_head(model)(ours)
    assert ours.dtype == torch.float32 and ours.shape == (1, 96, 192)
    error = _relative_error(ours, theirs.embeddings_128bp[:, 16:112])
    assert error < 2e-3, error  # measured: 0.0 (the same operations in the same order)
    expected = torch.cat([predictions["dnase"]["predictions_128bp"][..., :4],
                          predictions["rna_seq"]["predictions_128bp"][..., :3],
                          predictions["chip_histone"]["predictions_128bp"][..., :2]], dim=-1)[:, 16:112]
    assert _relative_error(tracks, expected) < 2e-3 and (tracks >= 0).all()
    assert FAMILY.output_weights(model).shape == (9, 192) and len(FAMILY.output_track_names(model)) == 9
    mouse = FAMILY.load(str(tiny), organism="mouse")
    short = _onehot()
    with torch.no_grad():
        assert _relative_error(FAMILY.trunk(mouse, 64)(short), mouse.embed(short, organism_index=1).embeddings_128bp) < 2e-3
        assert FAMILY.output_head(mouse)(ours).shape[-1] == 3 + 2 + 2


def test_segments_and_split_rebuild_the_trunk(tiny):
    from torch.utils.checkpoint import checkpoint

    model = FAMILY.load(str(tiny))
    trunk = FAMILY.trunk(model, 64)
    x = _onehot()
    with torch.no_grad():
        whole = trunk(x)
        split = FAMILY.split(trunk)
        assert (split.stride, split.half_width) == (128, 640)
        assert torch.equal(split.rest(split.local(x)), whole)
        # a base change moves local outputs only within half_width of it
        mutated = x.clone()
        mutated[0, 4000] = torch.roll(mutated[0, 4000], 1)
        changed = (split.local(mutated) - split.local(x)).abs().amax(dim=(0, 1)).nonzero().flatten()
        assert changed.min() * 128 >= 4000 - 640 - 127 and changed.max() * 128 <= 4000 + 640
    segments = FAMILY.checkpoint_segments(trunk)
    assert len(segments) == 2 + len(FAMILY.blocks(model))
    model.requires_grad_(True)
    state = x
    trunk.train()
    for segment in segments:
        state = checkpoint(segment, state, use_reentrant=False)
    state.square().mean().backward()
    assert model.transformer_tower.blocks[0].mha.q_layer.weight.grad is not None
    assert torch.allclose(state.detach(), whole, rtol=1e-5, atol=1e-6)


def test_the_trunk_follows_the_callers_autocast(tiny):
    model = FAMILY.load(str(tiny))
    trunk = FAMILY.trunk(model, 64)
    x = _onehot()
    with torch.no_grad():
        full = trunk(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = trunk(x)
    assert 0 < _relative_error(low.float(), full) < 0.1  # bfloat16 compute, not float32


def test_batchnorm_statistics_stay_frozen_in_training(tiny):
    model = FAMILY.load(str(tiny))
    before = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("var_EMA")}
    trunk = FAMILY.trunk(model, 64).train()
    trunk(_onehot()).sum().backward()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if k.endswith("var_EMA"))


def test_lora_targets_adapt_and_an_adapted_model_saves_and_loads(tiny, tmp_path):
    from peft import LoraConfig, inject_adapter_in_model

    model = FAMILY.load(str(tiny))
    targets = FAMILY.lora_targets(model)
    assert targets and not any(name.startswith(tuple(FAMILY.head_modules(model))) for name in targets)
    assert any(name.endswith("mha.q_layer") for name in targets) and any(name.endswith("conv1_d") for name in targets)
    trunk = FAMILY.trunk(model, 64)  # built before the adapters: it shares the modules they wrap
    x = _onehot()
    with torch.no_grad():
        before = trunk(x)
    model = inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, target_modules=targets), model)
    lora = [p for name, p in model.named_parameters() if "lora_" in name]
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    assert len(lora) == 2 * len(targets)
    optimiser = torch.optim.Adam(lora, lr=1e-2)
    trunk.train()
    trunk(x).square().mean().backward()
    optimiser.step()
    trunk.eval()
    with torch.no_grad():
        adapted = trunk(x)
    assert not torch.allclose(adapted, before)
    FAMILY.save(model, tmp_path / "adapted")
    reloaded = FAMILY.load(str(tmp_path / "adapted"))
    assert not any("lora_" in k or "base_layer" in k for k in reloaded.state_dict())
    with torch.no_grad():
        assert _relative_error(FAMILY.trunk(reloaded, 64)(x), adapted) < 1e-5


def test_geometry_mismatch_is_one_line_naming_the_dataset_flags(tiny):
    model = FAMILY.load(str(tiny))
    FAMILY.check_geometry(model, LENGTH, 128, 128, "tiny")
    FAMILY.check_geometry(model, 8192, 128, 32, "tiny")  # shorter windows: any multiple of 2,048 bp
    for seq_length, bin_size, n_bins in [(LENGTH, 32, 512), (20_000, 128, 128), (2 * LENGTH, 128, 256),
                                         (LENGTH, 128, 127)]:
        with pytest.raises(InputError) as err:
            FAMILY.check_geometry(model, seq_length, bin_size, n_bins, "tiny")
        message = str(err.value)
        assert "\n" not in message and "--seq-length 16384" in message and "--n-bins 128" in message, message


def test_one_bp_embeddings_by_option(tiny, tmp_path):
    model = FAMILY.load(str(tiny), resolution=1)
    g = FAMILY.geometry(model)
    assert (g.seq_length, g.bin_size, g.target_bins, g.embedding_dim) == (LENGTH, 1, LENGTH, 96)
    trunk = FAMILY.trunk(model, 2048)
    x = _onehot(1, 4096)
    with torch.no_grad():
        ours = trunk(x)
        theirs = model.embed(x, organism_index=0).embeddings_1bp[:, 1024:3072]
        tracks = FAMILY.output_head(model)(ours)
    assert ours.shape == (1, 2048, 96) and _relative_error(ours, theirs) < 2e-3
    assert tracks.shape == (1, 2048, 4 + 3)  # the heads with 1-bp outputs (dnase, rna_seq)
    assert FAMILY.checkpoint_segments(trunk) is None and FAMILY.split(trunk) is None
    assert any(name.startswith("sequence_decoder.") for name in FAMILY.lora_targets(model))
    one_bp = FAMILY.init(tmp_path / "one-bp", preset="tiny", resolution=1)
    assert json.loads((one_bp / "config.json").read_text())["resolution"] == 1
    assert FAMILY.geometry(FAMILY.load(str(one_bp))).bin_size == 1


def test_unreadable_folders_and_code_running_weights_are_refused(tiny, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="unreadable weights"):
        FAMILY.load(str(broken))
    (broken / "config.json").write_text("{")
    with pytest.raises(InputError, match="config.json"):
        FAMILY.load(str(broken))
    with pytest.raises(InputError, match="no config.json"):
        FAMILY.load(str(tmp_path))
    with pytest.raises(InputError, match="not found"):
        FAMILY.load(str(tmp_path / "absent"))
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save({"payload": _Payload()}, pickled / "model.pt")
    with pytest.raises(IntegrityError, match="run code"):
        FAMILY.load(str(pickled))
    with pytest.raises(InputError, match="organism"):
        FAMILY.load(str(tiny), organism="dragon")


def test_a_folder_the_package_saved_loads_in_float32(tmp_path):
    from alphagenome_pt import AlphaGenome, AlphaGenomeConfig, HeadName, synthetic_metadata

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        theirs = AlphaGenome(AlphaGenomeConfig(
            max_seq_len=4096, num_channels=24, transformer_layers=2, num_q_heads=2, pair_heads=2, pos_channels=8,
            dtype_policy="bfloat16", metadata=synthetic_metadata(heads=[HeadName.DNASE], num_tracks=2)))
    theirs.save(tmp_path / "theirs")
    assert AlphaGenomeFamily.detects(tmp_path / "theirs")
    model = FAMILY.load(str(tmp_path / "theirs"))
    assert FAMILY.describe(model)["organism"] == "organism_0"
    assert next(model.parameters()).dtype == torch.float32 and FAMILY.geometry(model).seq_length == 4096
    x = _onehot(1, 4096)
    with torch.no_grad():
        assert _relative_error(FAMILY.trunk(model, 32)(x), model.embed(x).embeddings_128bp) < 2e-3


def test_a_download_folder_is_detected_and_a_missing_fold_named(tmp_path):
    (tmp_path / "alphagenome_metadata.json").write_text("{}")
    assert not AlphaGenomeFamily.detects(tmp_path)
    (tmp_path / "alphagenome_fold_0.safetensors").write_bytes(b"")
    assert AlphaGenomeFamily.detects(tmp_path)
    with pytest.raises(InputError, match="alphagenome_all_folds.safetensors.*--fold all_folds"):
        FAMILY.load(str(tmp_path))


class _Payload:
    """An object a weights_only load refuses to build."""


def test_full_preset_is_the_published_architecture():
    from alphagenome_pt import AlphaGenomeConfig, deepmind_config

    from enformer_transfer.backbone.alphagenome import _metadata

    ours = AlphaGenomeConfig(**preset_config("full"), metadata=_metadata("full")).to_dict()
    published = deepmind_config(metadata=_metadata("full"), dtype_policy="float32").to_dict()
    assert {k: v for k, v in ours.items() if k != "metadata"} == {k: v for k, v in published.items() if k != "metadata"}
    channels_128bp = 2 * (ours["num_channels"] + 6 * ours["channel_increment"])
    assert (ours["max_seq_len"], ours["max_seq_len"] // 128, channels_128bp) == (1_048_576, 8192, 3072)
