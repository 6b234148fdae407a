"""Every stage with each backbone family beyond Enformer (tiny random Borzoi and AlphaGenome):
backbone init / info -> dataset at the family's geometry -> embed (the stored embeddings equal
the package's own forward) -> train -> evaluate (zero-shot from the backbone's own tracks, a
compare run of the other family) -> report -> finetune (LoRA) -> predict -> variants ->
contributions (grad-input, ISM; DeepLIFT/SHAP refused in one line); from the CLI, and one stage
through the API."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import enformer_transfer as et
from enformer_transfer.cli import main
from enformer_transfer.genome.sequence import Genome

pytestmark = pytest.mark.slow

# the dataset flags of each family's tiny preset on the synthetic genome (16,384-bp windows)
GEOMETRY = {"borzoi": ["--seq-length", "8192", "--bin-size", "32", "--n-bins", "96"],
            "alphagenome": ["--seq-length", "16384", "--bin-size", "128", "--n-bins", "64"]}


def _package_embeddings(kind: str, model, onehot: torch.Tensor, n_bins: int) -> torch.Tensor:
    """The package's own forward (not our trunk) on a one-hot (1, L, 4), centre-cropped to n_bins."""
    with torch.no_grad():
        if kind == "borzoi":
            embeddings = model(onehot.transpose(1, 2), return_embeddings=True)[1].transpose(1, 2)
        else:
            embeddings = model.predict(onehot, organism_index=0, return_embeddings=True)[1].embeddings_128bp
    crop = (embeddings.shape[1] - n_bins) // 2
    return embeddings[:, crop:crop + n_bins]


def _subset(windows, out, per_split={"train": 6, "valid": 2, "test": 2}):  # noqa: B006 (read only)
    table = pd.read_csv(windows, sep="\t", header=None)
    rows = pd.concat([table[table[3] == split].iloc[::3].head(n) for split, n in per_split.items()])
    rows.to_csv(out, sep="\t", header=False, index=False)
    return out


def _run(*args) -> None:
    assert main([*map(str, args), "--quiet"]) == 0, args


@pytest.fixture(scope="module")
def runs(synthetic, tmp_path_factory):
    """One run directory per family, embedded (float32 store) with its tiny random backbone."""
    root = tmp_path_factory.mktemp("chain")
    windows = _subset(synthetic.windows, root / "windows.bed")
    out = {}
    for kind in GEOMETRY:
        backbone, run = root / f"{kind}-backbone", root / f"{kind}-run"
        _run("backbone", "init", "--kind", kind, "--preset", "tiny", "--out", backbone)
        _run("dataset", "--out", run, "--genome", synthetic.genome, "--targets", synthetic.targets,
             "--windows", windows, "--blacklist", synthetic.blacklist, "--workers", "1", *GEOMETRY[kind])
        _run("embed", run, "--backbone", backbone, "--store-backbone-outputs", "--storage-dtype", "float32",
             "--loader-workers", "0", "--batch-size", "2")
        _run("train", run, "--head", "default", "--loader-workers", "0", "--max-epochs", "2")
        _run("train", run, "--head", "ridge", "--model", "ridge")
        _run("evaluate", run, "--head", "default")
        out[kind] = (backbone, run)
    return out


@pytest.mark.parametrize("kind", list(GEOMETRY))
def test_every_stage_with_the_family(kind, runs, synthetic, tmp_path, capsys):
    backbone, run_dir = runs[kind]
    _run("backbone", "info", backbone, "--json")
    info = json.loads(capsys.readouterr().out)
    run = et.Run(run_dir)
    g = run.geometry
    assert info["kind"] == kind and info["bin_size"] == g.bin_size == int(GEOMETRY[kind][3])
    assert run.backbone_kind == kind and run.embedding_dim == info["embedding_dim"]

    # the stored embeddings are the package's own forward on the window's one-hot input
    family = et.get_family(kind)
    model = family.load(str(backbone))
    window = run.windows("test").iloc[0]
    onehot = Genome(str(synthetic.genome)).one_hot(window["chrom"], int(window["input_start"]),
                                                      int(window["input_end"]), 0.25)
    theirs = _package_embeddings(kind, model, torch.from_numpy(onehot[None]).float(), g.n_bins)[0].numpy()
    stored = np.asarray(run.embeddings("test")[0], dtype=np.float32)
    error = np.abs(stored - theirs).max() / np.abs(theirs).max()
    assert error < 2e-3, error  # measured: 0.0 for both families (the same modules, in the same order)

    # evaluate: ridge and the zero-shot baseline (the backbone's own tracks), the other family as compare run
    other = runs[next(k for k in GEOMETRY if k != kind)][1]
    _run("evaluate", run_dir, "--head", "default", "--compare-run", other, "--force")
    per_track = run.evaluation("default").per_track
    test = per_track[per_track["split"] == "test"]
    assert test[["pearson", "ridge_pearson", "zero_shot_pearson", "compare_run_pearson"]].notna().all().all()
    assert test["zero_shot_track"].str.startswith("backbone_track_").all()

    # fine-tune with LoRA on the family's modules, then everything that runs from sequence
    _run("finetune", run_dir, "--head", "ft", "--steps", "2", "--loader-workers", "0", "--batch-size", "2")
    assert et.Run(run_dir).head("ft").finetuned
    # last:K opens the family's last block; neither mode moves a BatchNorm statistic (every buffer
    # of the saved, fine-tuned backbone equals the original's)
    _run("finetune", run_dir, "--head", "ft-last", "--trainable", "last:1", "--steps", "2", "--loader-workers", "0",
         "--batch-size", "2")
    original = dict(model.named_buffers())
    for name in ("ft", "ft-last"):
        tuned = dict(et.Run(run_dir).head(name).load_trunk().named_buffers())
        assert original and tuned.keys() == original.keys()
        assert all(torch.equal(tuned[k].cpu(), original[k]) for k in original), name
    config = et.as_config(run_dir)  # the API: the same stage, called as a function of the run's config
    config.evaluate.head, config.evaluate.compare_run = "ft", None
    et.evaluate(config, progress=False)
    assert et.Run(run_dir).evaluation("ft").summary["splits"]["test"]["pearson_mean"] is not None
    _run("report", run_dir)
    report = (run_dir / "report" / "report.html").read_text()
    assert f"({'borzoi' if kind == 'alphagenome' else 'alphagenome'} backbone" in report  # heads side by side

    target = run.windows("test").iloc[1]
    centre = (int(target["start"]) + int(target["end"])) // 2
    ref = Genome(str(synthetic.genome)).fetch(target["chrom"], centre - 1, centre).upper()
    vcf = tmp_path / "variants.tsv"
    vcf.write_text(f"chrom\tpos\tref\talt\tid\n{target['chrom']}\t{centre}\t{ref}\t{'C' if ref == 'A' else 'A'}\tv1\n")
    _run("variants", run_dir, "--head", "ft", "--vcf", vcf, "--out", tmp_path / "variants")
    scores = et.run.VariantEffects(et.layout.VariantsFolder(tmp_path / "variants")).scores
    assert set(scores["id"]) == {"v1"} and scores["logSED"].notna().all()
    regions = tmp_path / "regions.bed"
    regions.write_text(f"{target['chrom']}\t{centre - 4}\t{centre + 4}\tr1\n")
    for method in ("grad-input", "ism"):
        _run("contributions", run_dir, "--head", "ft", "--regions", regions, "--method", method,
             "--tracks-where", "level == 'Class'")
    wider = tmp_path / "wider.bed"
    wider.write_text(f"{target['chrom']}\t{centre - 4 * g.bin_size}\t{centre + 4 * g.bin_size}\tr1\n")
    _run("predict", run_dir, "--head", "ft", "--regions", wider, "--out", tmp_path / "predict")
    assert len(list((tmp_path / "predict").glob("*.bw"))) == len(run.tracks)
    assert main(["contributions", str(run_dir), "--head", "default", "--regions", str(regions),
                 "--method", "deepliftshap", "--quiet"]) == 2
    assert "has no exact DeepLIFT rules; use --method grad-input or --method ism" in capsys.readouterr().err
