"""Fine-tuning the trunk: it learns what a frozen trunk cannot; the model it writes describes
itself, loads without the tool, and evaluates from sequence as from embeddings of its own
trunk; backbones pretrained with the same machinery; resume after kill."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from _kill import kill_when, without_quiet, written_twice

from enformer_transfer import InputError, Run, as_config, embed_run, evaluate_head
from enformer_transfer.backbone.enformer import EnformerFamily
from enformer_transfer.cli import main
from enformer_transfer.finetune.adapt import parse_trainable


@pytest.fixture(scope="module")
def finetuned(demo_run, tmp_path_factory):
    """A copy of the demo with a LoRA fine-tune of its default head (a few steps; the fine-tuned
    weights kept even where they do not beat the frozen head, so the trunk really changed), evaluated."""
    run_dir = shutil.copytree(demo_run, tmp_path_factory.mktemp("ft") / "run",
                              ignore=shutil.ignore_patterns("dar", "report", "weights"))
    assert main(["finetune", str(run_dir), "--head", "ft", "--from-head", "default", "--steps", "23", "--lr", "2e-3",
                 "--keep", "finetuned", "--loader-workers", "0", "--quiet"]) == 0
    assert Run(run_dir).head("ft").metadata["finetune"]["kept"] == "lora"
    assert main(["evaluate", str(run_dir), "--head", "ft", "--quiet"]) == 0
    return run_dir


def test_trainable_modes_and_lora_targets(demo_run):
    assert parse_trainable("lora") == ("lora", 0) and parse_trainable("last:2") == ("last", 2)
    for bad in ("last", "last:0", "some", "all:2"):
        with pytest.raises(InputError, match="use lora, all or last:K"):
            parse_trainable(bad)
    from enformer_pytorch import Enformer

    names = EnformerFamily().lora_targets(Enformer.from_pretrained(str(demo_run.parent / "backbone")))
    assert {"transformer.0.0.fn.1.to_q", "transformer.0.0.fn.1.to_v", "transformer.0.1.fn.1",
            "transformer.0.1.fn.4", "stem.0", "final_pointwise.1.2"} <= set(names)
    assert not any(n.endswith((".to_k", ".to_out")) or n.startswith("_heads") for n in names)


@pytest.mark.slow
def test_the_finetuned_model_describes_itself_and_loads_without_the_tool(finetuned):
    from enformer_pytorch import Enformer
    from safetensors.torch import load_file

    run = Run(finetuned)
    head = run.head("ft")
    assert head.finetuned and head.metadata["finetune"]["from_head"] == "default"
    assert head.metadata["finetune"]["trainable"] == "lora" and head.metadata["geometry"]["n_bins"] == 64
    folder = run.layout.head("ft")
    assert (folder.trunk / "config.json").is_file() and folder.adapters.is_file()
    assert any("lora_A" in k for k in load_file(str(folder.adapters)))
    with pytest.raises(InputError, match="stale"):
        head.predict(np.asarray(run.embeddings("test")[:1]))
    # without the tool: enformer-pytorch for the trunk, safetensors for the head
    trunk = Enformer.from_pretrained(str(folder.trunk)).eval()
    weights = load_file(str(folder.safetensors))
    window = run.windows("test").iloc[3]
    x = torch.from_numpy(run.genome().one_hot(window.chrom, int(window.input_start), int(window.input_end)))
    with torch.no_grad():
        emb = trunk(x[None], return_only_embeddings=True)
        direct = torch.nn.functional.softplus(emb @ weights["weight"].T + weights["bias"])[0].numpy()
    stored = np.asarray(run.predictions("ft", "test")[3])
    # float32 both ways, batched differently (one window here, several in evaluate): summation order only
    np.testing.assert_allclose(stored, direct, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_evaluation_from_sequence_equals_embeddings_of_the_finetuned_trunk(finetuned, tmp_path):
    """The fine-tuned model evaluated from sequence = its head on freshly computed embeddings of
    its trunk (embedded as a backbone of its own, float32)."""
    run = Run(finetuned)
    other = shutil.copytree(finetuned, tmp_path / "run", ignore=shutil.ignore_patterns("embeddings", "heads",
                                                                                     "evaluation"))
    config = as_config(other)
    config.embed.backbone = str(run.layout.head("ft").trunk)
    config.embed.storage_dtype, config.embed.splits, config.embed.loader_workers = "float32", ["test"], 0
    config.embed.store_backbone_outputs = False
    embed_run(config, progress=False)
    emb = torch.from_numpy(np.asarray(Run(other).embeddings("test")))
    with torch.no_grad():
        from_embeddings = run.head("ft").module(emb).numpy()
    # float32 embeddings stored and read back vs computed in one pass: summation order only
    np.testing.assert_allclose(np.asarray(run.predictions("ft", "test")), from_embeddings, rtol=1e-4, atol=1e-5)
    summary = run.evaluation("ft").summary["splits"]["test"]
    assert summary["pearson_mean"] == pytest.approx(np.nanmean(run.head("ft").metadata["metrics"]["pearson"]["test"]),
                                                    abs=1e-6)


def test_finetune_refuses_what_it_cannot_start_from(demo_run, capsys):
    assert main(["finetune", str(demo_run), "--head", "x", "--from-head", "ridge", "--quiet"]) == 2
    assert "start from a trained linear head" in capsys.readouterr().err
    assert main(["finetune", str(demo_run), "--head", "x", "--from-head", "finetuned", "--quiet"]) == 2
    assert "a fine-tuned model" in capsys.readouterr().err
    assert main(["finetune", str(demo_run), "--head", "x", "--trainable", "some", "--quiet"]) == 2
    assert "use lora, all or last:K" in capsys.readouterr().err
    assert not (demo_run / "heads" / "x").exists() and not (demo_run / "heads" / "x.partial").exists()


def test_the_demo_shows_its_finetuned_model_and_the_gate(demo_run):
    """The demo's fine-tuned model: a self-describing model whose per-track change is recorded,
    no track more than 0.01 below its frozen head (kept frozen when fine-tuning did not help)."""
    head = Run(demo_run).head("finetuned")
    record = head.metadata["finetune"]
    assert head.finetuned and record["kept"] in ("lora", "frozen") and record["trainable"] == "lora"
    change = record["track_change_test"]
    assert len(change) == 12 and min(row["change"] for row in change) >= -0.01


@pytest.mark.slow
def test_finetuning_learns_a_motif_the_frozen_trunk_does_not_represent(tmp_path):
    """New tracks driven by a motif the backbone's stem was not built to see: the frozen head
    cannot fit them, the fine-tuned model does."""
    from enformer_transfer import RunConfig, build_dataset, init_backbone, train_head
    from enformer_transfer.synthetic import DEMO_GEOMETRY, MOTIFS, make_synthetic

    motifs = {**MOTIFS, "NOVEL": "GTCCGGACATTG" * 5}
    cell_types = {"A": ("X", {"NOVEL": 6.0}), "B": ("X", {"NOVEL": 3.0, "CTCF": 2.0}),
                  "C": ("Y", {"NOVEL": 4.0, "SOX": 2.0}), "D": ("Y", {"NOVEL": 5.0, "DLX": 1.0})}
    data = make_synthetic(tmp_path / "data", seed=1, motifs=motifs, subclasses=cell_types, clusters={})
    backbone = init_backbone(tmp_path / "bb", dim=48, depth=1, heads=2, attn_dim_key=16, n_bins=64, human_tracks=8,
                             seed=1, stem_motifs=list(MOTIFS.values()))
    config = RunConfig(run_dir=tmp_path / "run", geometry=DEMO_GEOMETRY)
    config.dataset.genome, config.dataset.targets, config.dataset.windows = data.genome, data.targets, data.windows
    config.embed.backbone, config.embed.loader_workers, config.train.loader_workers = str(backbone), 0, 0
    build_dataset(config, progress=False)
    embed_run(config, progress=False)
    train_head(config, progress=False)
    config.finetune.head, config.finetune.steps, config.finetune.lr, config.finetune.loader_workers = "ft", 200, 3e-3, 0
    from enformer_transfer.stages.finetune import finetune

    finetune(config, progress=False)
    config.evaluate.head = "ft"
    evaluate_head(config, progress=False)
    run = Run(config.run_dir)
    frozen = run.head("default").metadata["metrics"]["pearson_mean"]["test"]
    tuned = run.evaluation("ft").summary["splits"]["test"]["pearson_mean"]
    change = run.head("ft").metadata["finetune"]["track_change_test"]
    assert frozen < 0.3 and tuned > frozen + 0.4, (frozen, tuned)
    assert all(row["change"] > 0 for row in change)


@pytest.mark.slow
def test_pretrained_backbone_is_a_backbone(synthetic, tmp_path):
    """`backbone pretrain` on tracks of a run -> a folder `embed` takes; its head predicts them."""
    from enformer_transfer import RunConfig, build_dataset
    from enformer_transfer.synthetic import PRETRAINING_TRACKS, make_synthetic

    data = make_synthetic(tmp_path / "data", seed=0, pretraining_tracks=PRETRAINING_TRACKS)
    config = RunConfig(run_dir=tmp_path / "pre", geometry=synthetic.geometry)
    config.dataset.genome, config.dataset.targets, config.dataset.windows = data.genome, data.pretrain_targets, data.windows
    build_dataset(config, progress=False)
    assert main(["backbone", "pretrain", str(tmp_path / "pre"), "--out", str(tmp_path / "bb"), "--steps", "50",
                 "--loader-workers", "0", "--quiet"]) == 0
    info = (tmp_path / "bb" / "pretrain.json").read_text()
    assert '"valid_pearson"' in info and (tmp_path / "bb" / "stage.json").is_file()
    assert json.loads(info)["steps"] == 50  # exactly --steps: 46 windows / batch 4 = 12 an epoch, 50 is not whole epochs
    config.embed.backbone, config.embed.loader_workers, config.embed.splits = str(tmp_path / "bb"), 0, ["valid"]
    embed_run(config, progress=False)
    assert Run(tmp_path / "pre").embeddings("valid").shape == (23, 64, 96)


@pytest.mark.slow
def test_finetune_resumes_after_kill_with_the_same_weights(demo_run, tmp_path):
    run_dir = shutil.copytree(demo_run, tmp_path / "run", ignore=shutil.ignore_patterns("dar", "report", "weights",
                                                                                     "evaluation"))
    reference = shutil.copytree(run_dir, tmp_path / "reference")
    args = ["--head", "ft", "--steps", "69", "--patience", "100", "--lr", "3e-3", "--loader-workers", "0", "--quiet"]
    cmd = [sys.executable, "-m", "enformer_transfer.cli", "finetune", str(run_dir), *args]
    last = run_dir / "heads" / "ft.partial" / "checkpoints" / "last.ckpt"
    kill_when(cmd, written_twice(last), poll=0.01)
    result = subprocess.run(without_quiet(cmd), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming from" in result.stderr
    subprocess.run([sys.executable, "-m", "enformer_transfer.cli", "finetune", str(reference), *args], check=True,
                   capture_output=True)
    resumed = torch.load(run_dir / "heads" / "ft" / "trunk" / "pytorch_model.bin", weights_only=True)
    fresh = torch.load(reference / "heads" / "ft" / "trunk" / "pytorch_model.bin", weights_only=True)
    for key in fresh:
        assert torch.equal(resumed[key], fresh[key]), key
