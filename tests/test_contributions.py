"""Contributions: input gradients against autograd by hand, ISM against explicit mutant predictions,
batched over tracks = a loop over tracks, DeepLIFT/SHAP's summation to delta, and the stage
(store, BigWigs, logos, resume, bad inputs) on the demo."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from enformer_transfer import Run
from enformer_transfer.backbone.model import SequenceModel, load_sequence_model
from enformer_transfer.cli import main
from enformer_transfer.interpret.attribution import (
    actual_from_hypothetical,
    hypothetical_from_gradients,
    in_silico_mutagenesis,
    input_gradients,
    mutants,
    trunk_split,
)


@pytest.fixture(scope="module")
def model_and_inputs(demo_run):
    """The demo's end-to-end model (tiny backbone + linear head) and two inputs from its genome."""
    run = Run(demo_run)
    model, head = load_sequence_model(run, "default", "cpu")
    g = run.geometry
    genome = run.genome()
    x = np.stack([genome.one_hot("chr1", 20_000 + 3_000 * i, 20_000 + 3_000 * i + g.seq_length) for i in range(2)])
    x[1, 40:90] = 0.25  # padding past a chromosome end, as the loader writes it
    x[1, g.seq_length // 2 + 3] = 0.0  # an N inside the window
    bins = np.zeros((2, g.n_bins), dtype=np.float32)
    bins[0, 30:34] = 1.0
    bins[1, 29:35] = 1.0
    n_tracks = len(head.metadata["tracks"])
    weights = np.eye(n_tracks, dtype=np.float32)[[3, 5, 7]]
    weights = np.concatenate([weights, (np.eye(n_tracks)[5] - np.eye(n_tracks)[6])[None].astype(np.float32)])
    return model, x, bins, weights, g


def _by_hand(model, x, bins, weights):
    """The attributed scalars and their input gradients with plain autograd through model(x)."""
    inputs = torch.from_numpy(x).requires_grad_()
    outputs = model(inputs)  # (B, bins, tracks)
    grads, scalars = [], []
    for w in weights:
        scalar = (outputs * torch.from_numpy(bins)[:, :, None] * torch.from_numpy(w)[None, None, :]).sum(dim=(1, 2))
        grads.append(torch.autograd.grad(scalar.sum(), inputs, retain_graph=True)[0].numpy())
        scalars.append(scalar.detach().numpy())
    return np.stack(grads, axis=1), np.stack(scalars, axis=1)


def test_input_gradients_equal_autograd_by_hand(model_and_inputs):
    model, x, bins, weights, g = model_and_inputs
    assert trunk_split(model) is not None  # the fast path is the one tested
    window = (g.seq_length // 2 - 150, g.seq_length // 2 + 150)
    grads, scalars = input_gradients(model, x, bins, weights, window)
    expected, expected_scalars = _by_hand(model, x, bins, weights)
    assert grads.shape == (2, 4, 300, 4)
    np.testing.assert_allclose(scalars, expected_scalars, rtol=1e-5, atol=1e-6)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(grads, expected[:, :, window[0] : window[1]], rtol=1e-4, atol=1e-5 * scale)
    # hypothetical: mean-centred over the bases; actual: hypothetical at the base present
    hypothetical = hypothetical_from_gradients(grads)
    np.testing.assert_allclose(hypothetical.sum(-1), 0, atol=1e-6)
    actual = actual_from_hypothetical(hypothetical, x[:, window[0] : window[1]])
    present = x[0, window[0] : window[1]].argmax(-1)
    np.testing.assert_allclose(actual[0, 1].sum(-1), hypothetical[0, 1, np.arange(300), present], rtol=1e-6)
    # a window at the input's edge: the crop meets the input boundary
    edge, _ = input_gradients(model, x, bins, weights, (0, 200))
    np.testing.assert_allclose(edge, expected[:, :, :200], rtol=1e-4, atol=1e-5 * scale)


def test_batched_over_tracks_equals_a_loop_over_tracks(model_and_inputs):
    model, x, bins, weights, g = model_and_inputs
    window = (g.seq_length // 2 - 64, g.seq_length // 2 + 64)
    batched, _ = input_gradients(model, x, bins, weights, window)
    loop = np.concatenate([input_gradients(model, x, bins, weights[k : k + 1], window)[0] for k in range(len(weights))],
                          axis=1)
    np.testing.assert_allclose(batched, loop, rtol=1e-6, atol=1e-7 * np.abs(loop).max())
    assert all(p.requires_grad for p in model.parameters())  # frozen only while attributing


@pytest.mark.slow
def test_a_trunk_of_another_shape_falls_back_to_direct_autograd(model_and_inputs):
    model, x, bins, weights, g = model_and_inputs
    other = SequenceModel(torch.nn.Sequential(torch.nn.Identity(), *model.trunk), model.head)  # not the 7-part layout
    assert trunk_split(other) is None
    window = (g.seq_length // 2 - 20, g.seq_length // 2 + 20)
    direct, _ = input_gradients(other, x, bins, weights, window)
    split, _ = input_gradients(model, x, bins, weights, window)
    np.testing.assert_allclose(direct, split, rtol=1e-4, atol=1e-6 * np.abs(split).max())


def test_ism_equals_explicit_mutant_predictions(model_and_inputs):
    model, x, bins, weights, g = model_and_inputs
    start = g.seq_length // 2
    window = (start, start + 5)  # holds the N of input 1 (at +3)
    deltas, scalars = in_silico_mutagenesis(model, x, bins, weights, window, batch_size=7)
    assert deltas.shape == (2, 4, 5, 4)
    positions, bases = mutants(x[0], *window)
    assert len(positions) == 3 * 5  # one-hot: 3 mutants per position
    positions1, _ = mutants(x[1], *window)
    assert len(positions1) == 3 * 5 + 1  # the N position: all 4 bases
    with torch.no_grad():
        reference = (model(torch.from_numpy(x)).numpy()[:, :, None, :] * bins[:, :, None, None]
                     * weights[None, None]).sum(axis=(1, 3))
        np.testing.assert_allclose(scalars, reference, rtol=1e-5, atol=1e-6)
        for r in range(2):
            for p in range(*window):
                mutated = np.repeat(x[r : r + 1], 4, axis=0)
                mutated[:, p] = np.eye(4, dtype=np.float32)
                out = model(torch.from_numpy(mutated)).numpy()
                expected = (out[:, :, None, :] * bins[r][None, :, None, None] * weights[None, None]).sum(axis=(1, 3))
                expected = expected - reference[r]
                if x[r, p].max() == 1:
                    expected[x[r, p].argmax()] = 0.0  # the base present: no change
                np.testing.assert_allclose(deltas[r, :, p - start].T, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_ism_without_the_split_gives_the_same_deltas(model_and_inputs):
    model, x, bins, weights, g = model_and_inputs
    other = SequenceModel(torch.nn.Sequential(torch.nn.Identity(), *model.trunk), model.head)
    window = (g.seq_length // 2, g.seq_length // 2 + 3)
    direct, _ = in_silico_mutagenesis(other, x[:1], bins[:1], weights, window)
    split, _ = in_silico_mutagenesis(model, x[:1], bins[:1], weights, window)
    np.testing.assert_allclose(direct, split, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # DeepLIFT/SHAP runs the model on every reference: ~10 s per head on the CPU
@pytest.mark.parametrize("head_kind", ["linear", "mlp"])
def test_deeplift_shap_sums_to_the_output_difference(model_and_inputs, head_kind):
    """DeepLIFT/SHAP with the Enformer rules: the actual contributions of each region sum to its
    scalar minus the references' mean (within 1e-3 relative), for the linear + softplus head and
    an MLP head (torch GELU); without the rules they do not."""
    from enformer_transfer.backbone.enformer import enformer_rules
    from enformer_transfer.heads.models import MLPHead
    from enformer_transfer.interpret.deeplift import deep_lift_shap

    model, x, bins, weights, g = model_and_inputs
    if head_kind == "mlp":
        torch.manual_seed(0)
        model = SequenceModel(model.trunk, MLPHead(model.head.weight.shape[1], model.head.weight.shape[0], 16),
                              family=model.family).eval()
    with torch.no_grad(), enformer_rules(model):
        swapped = model(torch.from_numpy(x[:1]))
    np.testing.assert_allclose(swapped.numpy(), model(torch.from_numpy(x[:1])).detach().numpy(), rtol=1e-6)
    window = (g.seq_length // 2 - 60, g.seq_length // 2 + 60)
    result = deep_lift_shap(model, x[:1], bins[:1], weights[:3], window, n_shuffles=3, seed=1)
    delta = result.scalars - result.reference_scalars
    measured = np.abs(delta) > 1e-3  # a relative error needs a difference to be relative to
    assert measured.sum() >= 2, delta
    relative = result.summation_error[measured] / np.abs(delta[measured])
    print(f"DeepLIFT/SHAP summation to delta ({head_kind} head): max relative error {relative.max():.2g}")
    assert relative.max() < 1e-3
    assert result.summation_error.max() < 1e-3 * np.abs(delta).max()
    assert result.hypothetical.shape == (1, 3, 120, 4)


@pytest.mark.slow
def test_attributed_scalars_without_rules_break_the_summation(model_and_inputs):
    """The reason for the rules: tangermeme alone treats Enformer's attention pooling, attention
    and GELU as linear and its contributions miss the difference by far."""
    from tangermeme.deep_lift_shap import deep_lift_shap as plain

    from enformer_transfer.interpret.deeplift import _ScalarModel, references_for

    model, x, bins, weights, g = model_and_inputs
    window = (g.seq_length // 2 - 60, g.seq_length // 2 + 60)
    references = references_for(x[:1], window, 2, 0)
    scalar_model = _ScalarModel(model, torch.from_numpy(weights[:1])).eval()
    X = torch.from_numpy(x[:1].transpose(0, 2, 1).copy())
    with pytest.warns(RuntimeWarning):
        attributions = plain(scalar_model, X, args=(torch.from_numpy(bins[:1]),),
                             references=torch.from_numpy(references.transpose(0, 1, 3, 2).copy()),
                             device="cpu", only_warn=True, hypothetical=False)
    with torch.no_grad():
        fx = scalar_model(X, torch.from_numpy(bins[:1]))[0, 0]
        fr = scalar_model(torch.from_numpy(references[0].transpose(0, 2, 1).copy()),
                          torch.from_numpy(bins[:1]).expand(2, -1))[:, 0].mean()
    assert abs(float(attributions.sum()) - float(fx - fr)) > 10 * 1e-3 * abs(float(fx - fr))


# --- the stage ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def contrib_run(demo_run, tmp_path_factory):
    """A copy of the demo with a small regions table of planted subclass-specific sites."""
    run_dir = shutil.copytree(demo_run, tmp_path_factory.mktemp("contrib") / "run",
                              ignore=shutil.ignore_patterns("report"))
    table = pd.read_csv(demo_run.parent / "data" / "dar_subclass.csv")
    picked = pd.concat([table[table["subclass"] == s].head(2) for s in ("L23_IT", "Pvalb", "Astro")])
    picked.to_csv(run_dir.parent / "regions.csv", index=False)
    return run_dir


def test_contributions_stage_writes_store_bigwigs_and_logos(contrib_run, capsys):
    import pybigtools

    regions = contrib_run.parent / "regions.csv"
    args = ["contributions", str(contrib_run), "--regions", str(regions), "--label-column", "subclass",
            "--tracks-where", "level == 'Subclass'", "--contrast", "Pvalb,Sst", "--width", "200", "--plot-width", "12", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "contributions: 6 regions x 7 scalars (grad-input, 200 bp" in out
    result = Run(contrib_run).contributions("default-grad-input")
    targets = result.targets
    assert list(targets["kind"]) == ["track"] * 6 + ["contrast"]
    assert targets["display"].iloc[-1] == "Pvalb-Sst" and targets["label"].iloc[-1] == "Pvalb"
    hyp, actual, onehot = (np.asarray(result.array(k)) for k in ("hypothetical", "actual", "onehot"))
    assert hyp.shape == (6, 7, 200, 4) and onehot.shape == (6, 200, 4)
    np.testing.assert_allclose(actual, hyp * onehot[:, None], rtol=1e-6)
    # the contrast is the difference of its tracks (gradients are linear in the scalar)
    np.testing.assert_allclose(hyp[:, 6], hyp[:, 2] - hyp[:, 3], rtol=1e-4, atol=1e-6 * np.abs(hyp).max())
    # one region by hand: input centred on the region, the bins it overlaps summed
    run = Run(contrib_run)
    model, _ = load_sequence_model(run, "default", "cpu")
    region = result.regions.iloc[0]
    g = run.geometry
    x = run.genome().one_hot(region["chrom"], int(region["input_start"]), int(region["input_start"]) + g.seq_length)
    assert region["input_start"] == (region["start"] + region["end"]) // 2 - g.seq_length // 2
    bins = np.zeros((1, g.n_bins), dtype=np.float32)
    target_start = region["input_start"] + g.context
    bins[0, (region["start"] - target_start) // 128 : -(-(region["end"] - target_start) // 128)] = 1.0
    assert bins.sum() == region["last_bin"] - region["first_bin"] + 1 == 6  # 600 bp centred: 6 bins overlap
    grads, scalars = _by_hand(model, x[None], bins, np.eye(12, dtype=np.float32)[[3]])
    w0 = g.seq_length // 2 - 100
    np.testing.assert_allclose(hyp[0, 0], hypothetical_from_gradients(grads[0, 0, w0 : w0 + 200]), rtol=1e-4,
                               atol=1e-5 * np.abs(grads).max())
    np.testing.assert_allclose(np.asarray(result.array("scalars"))[0, 0], scalars[0, 0], rtol=1e-5)
    # BigWigs: the actual contribution of each base
    bigwig = pybigtools.open(str(result.folder.bigwig("03_L23_IT")))
    a = int(region["window_start"])
    values = np.asarray(bigwig.values(region["chrom"], a, a + 200, fillna=0))
    np.testing.assert_allclose(values, actual[0, 0].sum(-1), rtol=1e-5, atol=1e-7)
    figures = result.figures
    assert len(figures) == 3 and all(f["path"].is_file() for f in figures)
    assert result.record.stats["regions"] == 6
    assert main(args) == 0  # up to date


def test_contributions_resume_an_interrupted_run(contrib_run, monkeypatch):
    from enformer_transfer import as_config, contributions
    from enformer_transfer.config import ContributionsConfig
    from enformer_transfer.interpret import contributions as stage

    config = as_config(contrib_run)
    first_pvalb = pd.read_csv(contrib_run.parent / "regions.csv").query("subclass == 'Pvalb'")["region"].iloc[0]
    config.contributions = ContributionsConfig(
        regions=contrib_run.parent / "regions.csv", tracks_where="level == 'Subclass'", label_column="subclass",
        name="ism", method="ism", width=6, bigwigs=False, plot_regions=[first_pvalb])
    real, calls = stage.compute_chunk, []

    def dies_after_first(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "CHUNK_REGIONS", 4)
    monkeypatch.setattr(stage, "compute_chunk", dies_after_first)
    with pytest.raises(KeyboardInterrupt):
        contributions(config, progress=False)
    partial = contrib_run / "contributions" / "ism.partial"
    assert (partial / "progress" / "chunks.txt").read_text().count(";") == 1
    computed = []
    monkeypatch.setattr(stage, "compute_chunk", lambda *a, **k: computed.append(a[-1]) or real(*a, **k))
    contributions(config, progress=False)
    assert len(computed) == 1 and list(computed[0]) == [4, 5]  # only the unfinished chunk
    result = Run(contrib_run).contributions("ism")
    ism, hyp = np.asarray(result.array("ism")), np.asarray(result.array("hypothetical"))
    np.testing.assert_allclose(hyp, ism - ism.mean(-1, keepdims=True), rtol=1e-6)
    present = np.asarray(result.array("onehot")).argmax(-1)  # (regions, width)
    at_present = np.take_along_axis(ism, np.repeat(present[:, None, :, None], ism.shape[1], axis=1), axis=-1)
    assert ism.shape == (6, 6, 6, 4) and np.all(at_present == 0)  # the base present: no change
    assert [f["region"] for f in result.figures] == [first_pvalb]
    assert json.loads(result.folder.summary.read_text())["regions_computed"] == 2


@pytest.mark.parametrize("extra, message", [
    (["--contrast", "Pvalb"], "give two tracks"),
    (["--contrast", "Pvalb,Microglia"], "'Microglia' matches 0"),
    (["--method", "ism", "--width", "20000"], "longer than the model input"),
    (["--method", "ism", "--width", "12000"], "--method grad-input"),
    (["--target-bins", "100"], "exceeds the model's 64"),
    (["--plot-regions", "chr9:1-2"], "no such region"),
    (["--tracks-where", "level == 'Nope'"], "matches no track"),
    (["--head", "nope"], "no trained head 'nope'"),
])
def test_contributions_refuse_bad_input_before_any_work(contrib_run, capsys, extra, message):
    args = ["contributions", str(contrib_run), "--regions", str(contrib_run.parent / "regions.csv"),
            "--label-column", "subclass", "--tracks-where", "level == 'Subclass'", "--name", "bad", "--quiet"]
    assert main(args + extra) == 2
    assert message in capsys.readouterr().err
    assert not (contrib_run / "contributions" / "bad.partial").exists()


def test_contributions_regions_files(contrib_run, tmp_path, capsys):
    from enformer_transfer.interpret.regions import read_regions

    bed = tmp_path / "r.bed"
    bed.write_text("track name=x\nchr1\t100\t700\tsite_a\nchr2\t5000\t5600\n")
    regions = read_regions(bed)
    assert list(regions["name"]) == ["site_a", "chr2:5000-5600"] and list(regions["label"]) == ["", ""]
    tsv = tmp_path / "r.tsv"
    pd.DataFrame({"chrom": ["chr1"], "start": [100], "end": [700], "cell": ["Astro"]}).to_csv(tsv, sep="\t", index=False)
    assert read_regions(tsv, "cell")["label"].tolist() == ["Astro"]
    bad = tmp_path / "bad.bed"
    bad.write_text("chr1\t700\t100\n")
    args = ["contributions", str(contrib_run), "--name", "bad", "--quiet"]
    assert main(args + ["--regions", str(bad)]) == 2
    assert "end 100 is not after start 700" in capsys.readouterr().err
    bad.write_text("chrZ\t100\t700\n")
    assert main(args + ["--regions", str(bad)]) == 2
    assert "bad.bed row 1: the genome has no chromosome chrZ (it has: chr1" in capsys.readouterr().err
    bad.write_text("chr1\t100\t90000\n")
    assert main(args + ["--regions", str(bad)]) == 2
    assert "longer than the model's output" in capsys.readouterr().err
