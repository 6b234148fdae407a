"""Variant effects: every score equals a direct computation (backbone and head run by hand), the
inputs follow the documented window and indel rules, baskerville's conventions (placement,
untransform, strand merge, REF flip, scores.h5) each computed by hand, bad inputs are early
errors that write nothing, VCF / bgzip / TSV reading, the null, resume after a kill, ranks,
fine-tuned heads, the report, and the demo's planted motifs."""

import gzip
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from _kill import free_port, kill_when

import enformer_transfer as et
from enformer_transfer import Run
from enformer_transfer.cli import main
from enformer_transfer.config import VariantsConfig
from enformer_transfer.genome.onehot import one_hot
from enformer_transfer.genome.sequence import Genome
from enformer_transfer.interpret.alleles import (
    allele_inputs,
    dinucleotide_shuffle,
    shuffled_context,
)
from enformer_transfer.interpret.scores import (
    JS_CAP,
    StrandMerge,
    empirical_p,
    specificity,
    variant_scores,
)
from enformer_transfer.interpret.untransform import Untransform
from enformer_transfer.interpret.vcf import match_genome, read_variants

HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
ALL_STATS = ["SUM", "logSUM", "logSED", "SAX", "D1", "D2", "JS"]


def _genome(run_dir) -> Genome:
    return Genome(run_dir.parent / "data" / "genome.fa")


def _base(genome, chrom, pos, length=1) -> str:
    return genome.fetch(chrom, pos - 1, pos - 1 + length)


def _other(base: str) -> str:
    return "ACGT"[("ACGT".index(base) + 1) % 4]


def _vcf(path, records: list[tuple]) -> str:
    path.write_text(HEADER + "".join("\t".join(map(str, r)) + "\t.\t.\t.\n" for r in records))
    return str(path)


def _variants(run_dir, tmp_path, vcf, *extra) -> et.run.VariantEffects:
    out = tmp_path / "variants"
    assert main(["variants", str(run_dir), "--head", "default", "--vcf", str(vcf), "--out", str(out), "--quiet",
                 *extra]) == 0
    return et.run.VariantEffects(et.layout.VariantsFolder(out))


# --- the model run by hand ---------------------------------------------------------------

def _inputs_by_hand(genome, geometry, chrom, pos, ref, alt, shift, pad=0.25) -> tuple[np.ndarray, np.ndarray]:
    """docs/variants.md, written with strings: the window starts at POS - 1 - L // 2; a deletion of
    D bases fetches D more; the alternative replaces REF; longer sequences lose (excess // 2) bases
    on the left and the rest on the right; a shift k takes the window k bases further left."""
    L = geometry.seq_length
    deletion = max(0, len(ref) - len(alt))
    start = pos - 1 - L // 2 - shift
    seq, left, right = genome.fetch_padded(chrom, start, start + L + deletion + 2 * abs(shift) + 1)
    text = "#" * left + seq + "#" * right  # '#': past the chromosome end
    centre = L // 2 + shift
    alt_text = text[:centre] + alt + text[centre + len(ref):]

    def cut(s: str) -> str:
        full = s[: L + deletion] if s is text else s[: L + max(0, len(alt) - len(ref))]
        excess = len(full) - L
        return full[excess // 2 : excess // 2 + L]

    def encode(s: str) -> np.ndarray:
        x = one_hot(s.replace("#", "N"))
        x[np.frombuffer(s.encode(), dtype=np.uint8) == ord("#")] = pad
        return x

    return encode(cut(text)), encode(cut(alt_text))


def _predict_by_hand(trunk_model, head, x: np.ndarray, rc: bool, partners=None) -> np.ndarray:
    """The head's (transformed) output, averaged with the reverse complement's (bins reversed, the
    strands of a stranded pair swapped), clipped at 0."""
    with torch.no_grad():
        def forward(inputs):
            emb = trunk_model(torch.from_numpy(np.ascontiguousarray(inputs)), return_only_embeddings=True)
            return head.module(emb).numpy().astype(np.float64)

        pred = forward(x)
        if rc:
            back = forward(x[:, ::-1, ::-1])[:, ::-1]
            pred = (pred + (back if partners is None else back[..., partners])) / 2
    return np.maximum(pred, 0)


def _untransform_by_hand(pred: np.ndarray, tracks: pd.DataFrame, order: str, unscale: bool = True) -> np.ndarray:
    """baskerville's dataset.untransform_preds1 (old order) and untransform_preds (new order), one
    track at a time: unscale=True (our --scale coverage) divides by the scale, False keeps it
    (baskerville's default, our --scale scaled)."""
    out = np.array(pred, dtype=np.float64)
    for t, track in enumerate(tracks.itertuples()):
        p, cs, scale = out[..., t], track.clip_soft, track.scale
        soft = cs is not None and not pd.isna(cs)
        sqrt = track.sum_stat in ("mean_sqrt", "sum_sqrt")
        if order == "old":
            p = p / scale
            if soft:
                p = np.where(p > cs, cs + (p - cs) ** 2, p)
            if sqrt:
                p = p ** (4 / 3)
            if not unscale:
                p = p * scale
        else:
            if soft:
                p = np.where(p > cs, cs - 1 + (p - cs + 1) ** 2, p)
            if sqrt:
                p = -1 + (p + 1) ** 2
            if unscale:
                p = p / scale
        out[..., t] = p
    return out


def _scores_by_hand(ref: np.ndarray, alt: np.ndarray) -> dict[str, np.ndarray]:
    """Per shift (bins, tracks) -> scores averaged over shifts, one formula at a time."""
    out = {k: [] for k in ["ref_sum", "alt_sum", *ALL_STATS]}
    for r, a in zip(ref, alt, strict=True):
        d = a - r
        out["ref_sum"].append(r.sum(0))
        out["alt_sum"].append(a.sum(0))
        out["SUM"].append(a.sum(0) - r.sum(0))
        out["logSUM"].append(np.log2(a + 1).sum(0) - np.log2(r + 1).sum(0))
        out["logSED"].append(np.log2(a.sum(0) + 1) - np.log2(r.sum(0) + 1))
        out["SAX"].append(np.array([d[np.argmax(np.abs(d[:, t])), t] for t in range(d.shape[1])]))
        out["D1"].append(np.abs(d).sum(0))
        out["D2"].append(np.sqrt((d**2).sum(0)))
        c = np.percentile(r, 25, axis=0)
        rn, an = (r + c) / (r + c).sum(0), (a + c) / (a + c).sum(0)
        out["JS"].append(((rn * np.log(rn / an)).sum(0) + (an * np.log(an / rn)).sum(0)) / 2)
    return {k: np.mean(v, axis=0) for k, v in out.items()}


def _check_against_hand(run_dir, head_name, effects, variants, shifts, rc, trunk_model=None):
    """Scores on the coverage scale (the default): the predictions untransformed by hand."""
    run = Run(run_dir)
    genome, geometry = run.genome(), run.geometry
    head = run.head(head_name)
    trunk_model = trunk_model or run.backbone().model
    table = effects.scores
    tracks = list(head.tracks["identifier"])
    subclass = np.array([t in set(run.tracks.query("level == 'Subclass'")["identifier"]) for t in tracks])
    inputs = [_inputs_by_hand(genome, geometry, chrom, pos, ref, alt, k) for chrom, pos, ref, alt in variants
              for k in shifts]
    pred = _predict_by_hand(trunk_model, head, np.stack([x for pair in inputs for x in pair]), rc)
    pred = _untransform_by_hand(pred, head.tracks, run.dataset_config.transform_order)
    pred = pred.reshape((len(variants), len(shifts), 2) + pred.shape[1:])
    for (chrom, pos, ref, alt), p in zip(variants, pred, strict=True):
        expected = _scores_by_hand(p[:, 0], p[:, 1])
        rows = table[table["variant"] == f"{chrom}:{pos}:{ref}:{alt}"].set_index("identifier").loc[tracks]
        for name in [n for n in expected if n in rows.columns]:
            np.testing.assert_allclose(rows[name].to_numpy(), expected[name], rtol=2e-3, atol=2e-4, err_msg=name)
        z = (expected["logSED"][subclass] - expected["logSED"][subclass].mean()) / expected["logSED"][subclass].std()
        np.testing.assert_allclose(rows["logSED_z"].to_numpy()[subclass], z, rtol=2e-3, atol=2e-3)


def _matrices(effects) -> dict[str, np.ndarray]:
    h5py = pytest.importorskip("h5py")
    with h5py.File(effects.folder.scores_h5, "r") as h5:
        return {name: h5[name][()] for name in h5}


def _check_matrix_equals_table(effects) -> dict[str, np.ndarray]:
    """scores.h5 (baskerville's layout) holds the long table's values: per score a variants x tracks
    matrix, rows in variant order, columns in track order, with their names."""
    table, h5 = effects.scores, _matrices(effects)
    variants = table.drop_duplicates("variant")
    tracks = list(dict.fromkeys(table["identifier"]))
    assert [b.decode() for b in h5["variant"]] == list(variants["variant"])
    assert [b.decode() for b in h5["snp"]] == [i or v for i, v in zip(variants["id"], variants["variant"],
                                                                          strict=True)]
    assert [b.decode() for b in h5["chr"]] == list(variants["chrom"]) and list(h5["pos"]) == list(variants["pos"])
    assert [b.decode() for b in h5["ref_allele"]] == list(variants["ref"])
    assert [b.decode() for b in h5["alt_allele"]] == list(variants["alt"])
    assert [b.decode() for b in h5["target_ids"]] == tracks and len(h5["target_labels"]) == len(tracks)
    scores = [c for c in table.columns if c in h5 and c not in ("variant", "chr", "pos")]
    assert {"ref_sum", "alt_sum", "SUM", "logSED", "SUM_z"} <= set(scores)
    for name in scores:
        wide = table.pivot(index="variant", columns="identifier", values=name).loc[variants["variant"], tracks]
        np.testing.assert_allclose(h5[name], wide.to_numpy(), rtol=1e-5, atol=1e-6, err_msg=name)  # TSV: 6 digits
        if not name.endswith(("_z", "_p")) and name not in ("ref_sum", "alt_sum"):
            assert h5[f"{name}_pct"].shape == (len(tracks), len(h5["percentiles"]))
    return h5


def _assert_no_inf(effects) -> None:
    for table in (effects.scores, effects.top_variants, effects.most_affected):
        numbers = table.select_dtypes("number").to_numpy(dtype=np.float64)
        assert not np.isinf(numbers).any()
    assert not any(np.isinf(v).any() for v in _matrices(effects).values() if v.dtype.kind == "f")


def test_every_score_equals_the_model_run_by_hand(demo_run, tmp_path):
    """SNVs sharing a site (one reference pass), a deletion, an insertion; both strands and two
    shifts: every score of the table equals the backbone and head run by hand."""
    genome = _genome(demo_run)
    snv = 120_000
    base = _base(genome, "chr4", snv)
    deletion, insertion = 60_000, 150_001
    d_ref, i_ref = _base(genome, "chr4", deletion, 4), _base(genome, "chr4", insertion)
    records = [("chr4", snv, "rs1", base, f"{_other(base)},{_other(_other(base))}"),
               ("chr4", deletion, "del3", d_ref, d_ref[0]), ("chr4", insertion, "ins5", i_ref, i_ref + "GATTA")]
    vcf = _vcf(tmp_path / "v.vcf", records)
    effects = _variants(demo_run, tmp_path, vcf, "--rc", "--shifts=0,1", "--stats", ",".join(ALL_STATS),
                        "--batch-size", "16", "--plot-top", "0")
    variants = [("chr4", snv, base, _other(base)), ("chr4", snv, base, _other(_other(base))),
                ("chr4", deletion, d_ref, d_ref[0]), ("chr4", insertion, i_ref, i_ref + "GATTA")]
    _check_against_hand(demo_run, "default", effects, variants, [0, 1], rc=True)
    # the two alleles of the site share one reference pass: 3 references + 4 alternatives, x 2 shifts x 2 strands
    assert effects.record.stats["sequences_this_run"] == (3 + 4) * 2 * 2
    table = effects.scores
    assert len(table) == 4 * 12 and list(table.columns[:8]) == ["variant", "id", "chrom", "pos", "ref", "alt", "kind",
                                                               "identifier"]
    assert {"level", "class", "subclass", "cluster"} <= set(table.columns)
    assert set(table["kind"]) == {"SNV", "deletion", "insertion"} and set(table["id"]) == {"rs1", "del3", "ins5"}
    parquet = pd.read_parquet(effects.folder.scores_parquet)
    np.testing.assert_allclose(parquet["logSED"], table["logSED"], rtol=1e-5)
    _check_matrix_equals_table(effects)
    _assert_no_inf(effects)
    assert effects.summary["scale"] == "coverage" and effects.summary["placement"] == "center"


def test_window_past_the_chromosome_start_and_an_mnv(demo_run, tmp_path):
    genome = _genome(demo_run)
    near, mnv = 100, 80_000
    near_ref, mnv_ref = _base(genome, "chr4", near), _base(genome, "chr4", mnv, 3)
    mnv_alt = "".join(_other(b) for b in mnv_ref)
    vcf = _vcf(tmp_path / "v.vcf", [("chr4", near, ".", near_ref, _other(near_ref)), ("chr4", mnv, ".", mnv_ref, mnv_alt)])
    effects = _variants(demo_run, tmp_path, vcf, "--plot-top", "0")
    _check_against_hand(demo_run, "default", effects, [("chr4", near, near_ref, _other(near_ref)),
                                                       ("chr4", mnv, mnv_ref, mnv_alt)], [0], rc=False)
    assert set(effects.scores["kind"]) == {"SNV", "MNV"}


def _scorer(run, stats=ALL_STATS, **kwargs):
    """The stage's scorer on the demo's default head, built directly (conventions passed by hand)."""
    from enformer_transfer.backbone.model import load_sequence_model
    from enformer_transfer.interpret.scorer import VariantScorer

    model, head = load_sequence_model(run, "default", "cpu")
    scorer = VariantScorer(model, run.genome(), run.geometry, run.embed_config.pad_value, stats, [0],
                           batch_size=16, **kwargs)
    return scorer, head


def _rows(variants: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame([{"index": i, "genome_chrom": c, "pos": p, "ref": r, "alt": a, "flipped": False}
                         for i, (c, p, r, a) in enumerate(variants)])


@pytest.mark.parametrize("order", ["old", "new"])
def test_untransform_of_soft_clipped_and_sqrt_tracks_by_hand(demo_run, order):
    """Tracks with a soft clip inside the predictions' range and sqrt statistics (the demo's have
    neither): the scores equal baskerville's untransform written out by hand on the head's output,
    scale divided out (coverage) or kept (scaled)."""
    from enformer_transfer.data.transform import TrackParams

    run, genome = Run(demo_run), _genome(demo_run)
    base = _base(genome, "chr4", 120_000)
    variant = ("chr4", 120_000, base, _other(base))
    scorer, head = _scorer(run)
    pred = _predict_by_hand(run.backbone().model, head, np.stack(_inputs_by_hand(genome, run.geometry, *variant, 0)),
                            rc=False)
    n = pred.shape[-1]
    tracks = head.tracks.assign(sum_stat=["mean_sqrt" if t % 2 else "mean" for t in range(n)],
                                clip_soft=[float(np.median(pred[..., t])) if t % 3 else None for t in range(n)],
                                scale=[0.5 + t / 4 for t in range(n)])
    assert (pred > tracks["clip_soft"].to_numpy(dtype=float)).any()  # the soft clip is undone somewhere
    for unscale in (True, False):
        scorer.untransform = Untransform(TrackParams.from_table(tracks), order, keep_scale=not unscale)
        got = scorer.score(_rows([variant]))
        coverage = _untransform_by_hand(pred, tracks, order, unscale)
        expected = _scores_by_hand(coverage[:1], coverage[1:])
        for name, values in expected.items():
            np.testing.assert_allclose(got[name][0], values, rtol=2e-3, atol=2e-4, err_msg=f"{name} {unscale}")


def test_strand_merge_of_both_strands_by_hand(demo_run):
    """Tracks paired as strands (the demo's are not): with --rc the reverse strand's predictions
    swap the pair, and the merged column is the pair's scores added, D2 in quadrature."""
    run, genome = Run(demo_run), _genome(demo_run)
    base = _base(genome, "chr4", 90_000)
    variant = ("chr4", 90_000, base, _other(base))
    n = len(Run(demo_run).head("default").tracks)
    partners = np.array([1, 0, 3, 2] + list(range(4, n)))
    merge = StrandMerge.from_partners(partners, [f"t{t}" for t in range(n)])
    scorer, head = _scorer(run, rc=True, partners=partners, merge=merge)
    got = scorer.score(_rows([variant]))
    pred = _predict_by_hand(run.backbone().model, head, np.stack(_inputs_by_hand(genome, run.geometry, *variant, 0)),
                            rc=True, partners=partners)
    for name, values in _scores_by_hand(pred[:1], pred[1:]).items():
        pair = np.hypot if name == "D2" else np.add
        expected = np.concatenate([[pair(values[0], values[1]), pair(values[2], values[3])], values[4:]])
        np.testing.assert_allclose(got[name][0], expected, rtol=2e-3, atol=2e-4, err_msg=name)


def _baskerville_inputs(genome, seq_length: int, chrom: str, pos: int, genome_allele: str, other: str):
    """baskerville's SNPCluster.delimit / get_1hots for one SNV: the window starts at POS - L // 2
    (0-based), so the variant sits at index L // 2 - 1; the other allele set in place."""
    start = pos - seq_length // 2
    seq = genome.fetch(chrom, start, start + seq_length).upper()
    at = pos - 1 - start
    assert at == seq_length // 2 - 1 and seq[at] == genome_allele
    return one_hot(seq), one_hot(seq[:at] + other + seq[at + 1 :])


def test_baskerville_conventions_by_name(demo_run, tmp_path, capsys):
    """--placement baskerville --scale scaled --ref-mismatch flip gives baskerville's numbers, each
    convention written out by hand: its window, its untransform (scale kept), a REF mismatch whose
    ALT is the genome's flipped and scored ALT - REF as the VCF states; --shifts=-1 reproduces the
    placement; a variant whose REF and ALT both differ is still refused."""
    run, genome = Run(demo_run), _genome(demo_run)
    plain, flip = 120_000, 140_000
    a, b = _base(genome, "chr4", plain), _base(genome, "chr4", flip)
    records = [("chr4", plain, "plain", a, _other(a)), ("chr4", flip, "flip", _other(b), b)]
    vcf = _vcf(tmp_path / "v.vcf", records)
    common = ["--ref-mismatch", "flip", "--scale", "scaled", "--stats", ",".join(ALL_STATS), "--plot-top", "0"]
    named = _variants(demo_run, tmp_path / "named", vcf, "--placement", "baskerville", *common)
    assert "variants: 1 REF mismatch(es) flipped" in capsys.readouterr().out
    assert named.summary["flipped"] == 1 and named.summary["placement"] == "baskerville"
    mismatches = pd.read_csv(named.folder.ref_mismatches, sep="\t")
    assert list(mismatches["id"]) == ["flip"] and list(mismatches["action"]) == ["flipped"]
    head = run.head("default")
    L = run.geometry.seq_length
    plain_ref, plain_alt = _baskerville_inputs(genome, L, "chr4", plain, a, _other(a))
    flip_genome, flip_vcf_ref = _baskerville_inputs(genome, L, "chr4", flip, b, _other(b))
    pred = _predict_by_hand(run.backbone().model, head, np.stack([plain_ref, plain_alt, flip_vcf_ref, flip_genome]),
                            rc=False)
    pred = _untransform_by_hand(pred, head.tracks, run.dataset_config.transform_order, unscale=False)
    tracks = list(head.tracks["identifier"])
    for variant, (ref, alt) in ((f"chr4:{plain}:{a}:{_other(a)}", pred[0:2]), (f"chr4:{flip}:{_other(b)}:{b}",
                                                                             pred[2:4])):
        rows = named.scores[named.scores["variant"] == variant].set_index("identifier").loc[tracks]
        for name, values in _scores_by_hand(ref[None], alt[None]).items():
            np.testing.assert_allclose(rows[name].to_numpy(), values, rtol=2e-3, atol=2e-4, err_msg=name)
    _check_matrix_equals_table(named)  # the flipped variant's alleles as its VCF states them
    _assert_no_inf(named)
    shifted = _variants(demo_run, tmp_path / "shifted", vcf, "--shifts=-1", *common)
    pd.testing.assert_frame_equal(shifted.scores, named.scores)
    both = _vcf(tmp_path / "both.vcf", records + [("chr4", 150_000, "neither", _other(_base(genome, "chr4", 150_000)),
                                                   _other(_other(_base(genome, "chr4", 150_000))))])
    with pytest.raises(et.InputError, match=r"1 variant\(s\) whose REF and ALT both differ from the genome: line 5"):
        match_genome(read_variants(both).variants, genome, both, "flip")


def test_allele_inputs_follow_the_documented_rules():
    rng = np.random.default_rng(0)
    L, margin = 16, 2
    text = "".join(rng.choice(list("ACGT"), size=L + 3 + 2 * margin))
    context = one_hot(text)
    c = L // 2 + margin
    for ref_len, alt in ((1, "T"), (3, "A"), (1, "ACGTA"), (2, "GG")):
        ref = text[c : c + ref_len]
        ref_in, alt_in = allele_inputs(context[: L + 2 * margin + max(0, ref_len - len(alt))], ref, alt, L, margin,
                                       [0, 2, -1])
        deletion, insertion = max(0, ref_len - len(alt)), max(0, len(alt) - ref_len)
        for s, k in enumerate([0, 2, -1]):
            assert (ref_in[s] == one_hot(text[margin + deletion // 2 - k :][:L])).all()
            alt_text = text[:c] + alt + text[c + ref_len :]
            assert (alt_in[s] == one_hot(alt_text[margin + insertion // 2 - k :][:L])).all()
    codes = rng.integers(0, 5, 3000)
    order = dinucleotide_shuffle(codes, rng)
    shuffled = codes[order]
    assert sorted(order) == list(range(3000)) and (shuffled != codes).mean() > 0.5
    assert sorted(zip(codes[:-1], codes[1:], strict=True)) == sorted(zip(shuffled[:-1], shuffled[1:], strict=True))
    padded = np.concatenate([np.full((5, 4), 0.25, np.float32), one_hot(text)])
    kept = slice(12, 14)
    out = shuffled_context(padded, kept, np.random.default_rng(1))
    assert (out[:5] == 0.25).all() and (out[kept] == padded[kept]).all() and not (out == padded).all()


def test_score_helpers():
    rng = np.random.default_rng(3)
    ref, alt = rng.gamma(1, 1, (4, 2, 32, 5)), rng.gamma(1, 1, (4, 2, 32, 5))
    scores = variant_scores(ref, alt, ALL_STATS)
    for i in range(4):
        expected = _scores_by_hand(ref[i], alt[i])
        for name, values in expected.items():
            np.testing.assert_allclose(scores[name][i], values, rtol=1e-10, err_msg=name)
    scipy = pytest.importorskip("scipy.special")
    r, a = ref[0, 0], alt[0, 0]
    c = np.percentile(r, 25, axis=0)
    rn, an = (r + c) / (r + c).sum(0), (a + c) / (a + c).sum(0)
    one_shift = variant_scores(ref[:1, :1], alt[:1, :1], ["JS"])["JS"][0]
    np.testing.assert_allclose(one_shift, (scipy.rel_entr(rn, an).sum(0) + scipy.rel_entr(an, rn).sum(0)) / 2)
    values = np.array([[1.0, 2.0, 3.0, 10.0, 10.0]])
    z = specificity(values, np.array(["a", "a", "a", "b", "c"]))
    np.testing.assert_allclose(z[0, :3], (values[0, :3] - 2) / np.std([1, 2, 3]))
    assert np.isnan(z[0, 3:]).all()  # a level of one track has no specificity
    p = empirical_p(np.array([[0.5, -2.0]]), np.array([[[0.1, 3.0], [-0.6, 1.0], [0.2, -2.0]]]))
    np.testing.assert_allclose(p, [[(1 + 1) / 4, (1 + 2) / 4]])


def test_js_is_finite_where_a_zero_pseudocount_makes_it_infinite():
    """ref 0 in most bins (so its 25th percentile, the pseudocount, is 0) where alt is not: KL(a || r)
    is infinite; written as baskerville caps it, at the float16 maximum, also after a strand merge."""
    ref = np.zeros((1, 8, 2))
    ref[0, :2] = 1.0
    alt = np.ones((1, 8, 2))
    js = variant_scores(ref, alt, ["JS"])["JS"]
    assert (js == JS_CAP).all()
    merged = StrandMerge.from_partners(np.array([1, 0]), ["t+", "t-"]).scores({"JS": js})["JS"]
    assert merged.shape == (1,) and merged[0] == JS_CAP


def test_strand_merge_sums_pairs_and_d2_in_quadrature():
    """baskerville's strand_transform: one column per pair (where its first strand is), named by the
    '+' strand; every score added, D2 as sqrt(a^2 + b^2); unstranded tracks unchanged."""
    merge = StrandMerge.from_partners(np.array([1, 0, 3, 2, 4]), ["a+", "a-", "b-", "b+", "c"])
    assert list(merge.first) == [0, 2, 4] and list(merge.second) == [1, 3, 4] and list(merge.named) == [0, 3, 4]
    tracks = pd.DataFrame({"identifier": ["a+", "a-", "b-", "b+", "c"]})
    assert list(merge.tracks(tracks)["identifier"]) == ["a+", "b+", "c"]
    values = {"SUM": np.array([[1.0, 2, 3, 4, 5]]), "D2": np.array([[3.0, 4, 6, 8, 7]]),
              "SAX": np.array([[-1.0, 2, 0.5, 0.25, 9]])}
    out = merge.scores(values)
    np.testing.assert_allclose(out["SUM"], [[3, 7, 5]])
    np.testing.assert_allclose(out["D2"], [[5, 10, 7]])
    np.testing.assert_allclose(out["SAX"], [[1, 0.75, 9]])
    np.testing.assert_allclose(merge.profiles(np.arange(10.0).reshape(2, 5)), [[1, 5, 4], [11, 15, 9]])


def test_untransform_inverts_the_targets_transform():
    """data/transform.py forward (bin statistic, soft clip, scale; both orders), then Untransform:
    the bin statistic of the coverage again (float16 targets: ~1e-3 relative, more where an inverse
    squares), the scale kept on request as baskerville keeps it."""
    from enformer_transfer.data.transform import TrackParams, _binned_targets

    rng = np.random.default_rng(5)
    n_bins, bin_size = 16, 32
    stats = ("mean", "sum", "mean_sqrt", "sum_sqrt", "max", "peak", "mean")
    coverage = rng.gamma(0.7, 8.0, (len(stats), n_bins * bin_size))
    coverage[5] *= 0.004  # peak saturates at a mean of 0.25: keep it below
    coverage = coverage.astype(np.float16).astype(np.float32)
    params = TrackParams(stats, clip=np.full(len(stats), np.nan),
                         clip_soft=np.array([6.0, np.nan, 3.0, 40.0, 12.0, np.nan, 2.0]),
                         scale=np.array([2.0, 0.5, 1.0, 0.25, 3.0, 1.0, 0.3]))
    binned = coverage.reshape(len(stats), n_bins, bin_size)
    expected = np.stack([binned[0].mean(1), binned[1].sum(1), binned[2].mean(1), binned[3].sum(1),
                         binned[4].max(1), binned[5].mean(1), binned[6].mean(1)], axis=1)
    for order in ("old", "new"):
        targets = _binned_targets(coverage.copy(), n_bins, bin_size, params, order, False)
        assert (targets.astype(np.float32) > np.nan_to_num(params.clip_soft, nan=np.inf)).any()  # soft clip used
        back = Untransform(params, order)(targets.astype(np.float32))
        np.testing.assert_allclose(back, expected, rtol=5e-3, atol=1e-3, err_msg=order)
        scaled = Untransform(params, order, keep_scale=True)(targets.astype(np.float32))
        np.testing.assert_allclose(scaled, back * params.scale, rtol=1e-12, err_msg=order)


def test_earlier_configs_with_skip_ref_mismatch_still_load():
    assert VariantsConfig.model_validate({"skip_ref_mismatch": True}).ref_mismatch == "skip"
    assert VariantsConfig.model_validate({"skip_ref_mismatch": False}).ref_mismatch == "error"


def test_reading_vcf_bgzip_and_tsv(tmp_path):
    from Bio import bgzf

    text = HEADER + ("chr1\t10\trs1\tA\tG,T\t.\t.\t.\n"
                     "chr1\t20\t.\tac\ta\t.\t.\t.\n"
                     "chr1\t30\tsv\tA\t<DEL>\t.\t.\t.\n"
                     "chr1\t40\t.\tA\t*\t.\t.\t.\n"
                     "chr1\t10\trs1\tA\tG\t.\t.\t.\n")
    plain = tmp_path / "a.vcf"
    plain.write_text(text)
    with bgzf.BgzfWriter(str(tmp_path / "a.vcf.gz"), "wb") as handle:
        handle.write(text.encode())
    gzip_plain = tmp_path / "b.vcf.gz"  # plain gzip: htslib reads it as well
    gzip_plain.write_bytes(gzip.compress(text.encode()))
    for path in (plain, tmp_path / "a.vcf.gz", gzip_plain):
        read = read_variants(path)
        assert list(read.variants["variant"]) == ["chr1:10:A:G", "chr1:10:A:T", "chr1:20:AC:A"]
        assert list(read.variants["row"]) == [3, 3, 4] and list(read.variants["kind"]) == ["SNV", "SNV", "deletion"]
        assert list(read.skipped["row"]) == [5, 6, 7] and "repeats line 3" in read.skipped["reason"].iloc[2]
    tsv = tmp_path / "a.tsv"
    tsv.write_text("chrom\tpos\tref\talt\tid\nchr1\t10\tA\tG\trs1\n\nchr1\t20\tAC\tA\t.\n")
    read = read_variants(tsv)
    assert list(read.variants["variant"]) == ["chr1:10:A:G", "chr1:20:AC:A"] and list(read.variants["row"]) == [2, 4]
    assert list(read.variants["id"]) == ["rs1", ""]
    headless = tmp_path / "b.tsv"
    headless.write_text("chr1\t10\tA\tG\n")
    assert list(read_variants(headless).variants["variant"]) == ["chr1:10:A:G"]


def test_chromosome_aliases_follow_the_dataset_rule(tmp_path):
    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\n" + "ACGT" * 50 + "\n")
    tsv = tmp_path / "v.tsv"
    tsv.write_text("1\t2\tC\tA\n")
    read = read_variants(tsv)
    ok, _ = match_genome(read.variants, Genome(fasta, "auto"), tsv)
    assert list(ok["genome_chrom"]) == ["chr1"] and list(ok["chrom"]) == ["1"]
    with pytest.raises(et.InputError, match="differ only by a prefix"):
        match_genome(read.variants, Genome(fasta, "none"), tsv)


@pytest.mark.parametrize("case, message", [
    ("malformed", "line 5: malformed VCF record (Could not parse the position 'x30')"),
    ("unknown chromosome", "line 3: the genome has no chromosome chrZ"),
    ("past the end", "line 4: chr4:200001:A:G ends past the end of chr4 (200,000 bp)"),
    ("ref mismatch", "2 variant(s) whose REF differs from the genome: line 3 chr4:120000"),
    ("no such head", "has no trained head 'nope' (has: default, finetuned, ridge)"),
    ("tsv row", "v.tsv line 1: position 'x' is not a whole number"),
    ("not dna", "line 3: REF 'XY' is not a DNA sequence"),
])
def test_bad_inputs_are_early_errors_that_write_nothing(demo_run, tmp_path, capsys, case, message):
    genome = _genome(demo_run)
    base = _base(genome, "chr4", 120_000)
    good = ("chr4", 120_000, ".", base, _other(base))
    records = {"malformed": [good, good[:1] + (130_000,) + good[2:], ("chr4", "x30", ".", "A", "G")],
               "unknown chromosome": [("chrZ", 10, ".", "A", "G"), good],
               "past the end": [good, ("chr4", 200_001, ".", "A", "G")],
               "ref mismatch": [("chr4", 120_000, ".", _other(base), base), good,
                                ("chr4", 120_010, ".", _other(_other(_base(genome, "chr4", 120_010))), "A")],
               "no such head": [good], "not dna": [("chr4", 120_000, ".", "XY", "A")]}.get(case)
    if case == "tsv row":
        vcf = tmp_path / "v.tsv"
        vcf.write_text("chr4\tx\tA\tG\n")
    else:
        vcf = _vcf(tmp_path / "v.vcf", records)
    out = tmp_path / "out"
    head = "nope" if case == "no such head" else "default"
    assert main(["variants", str(demo_run), "--head", head, "--vcf", str(vcf), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not out.with_name("out.partial").exists()


def test_skip_ref_mismatch_lists_them_and_the_null_gives_p_values(demo_run, tmp_path):
    genome = _genome(demo_run)
    base = _base(genome, "chr4", 120_000)
    vcf = _vcf(tmp_path / "v.vcf", [("chr4", 120_000, "good", base, _other(base)),
                                    ("chr4", 120_000, "bad", _other(base), base)])
    effects = _variants(demo_run, tmp_path, vcf, "--ref-mismatch", "skip", "--null-shuffles", "3", "--plot-top", "0",
                        "--stats", "SUM,logSED")
    mismatches = pd.read_csv(effects.folder.ref_mismatches, sep="\t")
    assert list(mismatches["id"]) == ["bad"] and mismatches["genome_ref"].iloc[0] == base
    assert list(mismatches["action"]) == ["dropped"]
    table = effects.scores
    assert set(table["id"]) == {"good"} and effects.summary["ref_mismatches"] == 1
    assert set(np.round(table["SUM_p"] * 4).astype(int)) <= {1, 2, 3, 4}
    assert {"SUM_p", "logSED_p", "SUM_z"} <= set(table.columns) and "SAX" not in table.columns
    assert effects.record.stats["sequences_this_run"] == 2 + 3 * 2


@pytest.mark.slow
def test_outputs_summaries_api_and_report(demo_run, tmp_path):
    run_dir = shutil.copytree(demo_run, tmp_path / "run", ignore=shutil.ignore_patterns("dar", "report"))
    genome = _genome(demo_run)
    records = [("chr4", p, f"v{p}", _base(genome, "chr4", p), _other(_base(genome, "chr4", p)))
               for p in (30_000, 90_000, 140_000)]
    vcf = _vcf(tmp_path / "v.vcf", records)
    config = et.as_config(run_dir)
    config.variants = VariantsConfig(vcf=vcf, plot_variants=["v90000"], plot_top=1, bigwig=True)
    table = et.score_variants(config, progress=False)  # the API: the long table
    assert len(table) == 3 * 12
    effects = Run(run_dir).variants("default")
    assert Run(run_dir).variant_analyses() == ["default"]
    top = effects.top_variants
    assert len(top) == 12 * 3 and set(top["rank"]) == {1, 2, 3}
    first = top[(top["identifier"] == "07_Astro") & (top["rank"] == 1)].iloc[0]
    astro = table[table["identifier"] == "07_Astro"]
    assert first["variant"] == astro.loc[astro["logSED"].abs().idxmax(), "variant"]
    affected = effects.most_affected
    assert len(affected) == 3 * 3 and set(affected["level"]) == {"Class", "Subclass", "cluster"}
    drawn = effects.summary["drawn"]
    assert drawn[0].startswith("chr4:90000:") and len(drawn) == 2
    assert {f["kind"] for f in effects.figures} == {"variant"} and len(effects.figures) == 4
    assert all(f["path"].stat().st_size > 1000 for f in effects.figures)
    import pybigtools

    bigwigs = sorted(effects.folder.bigwigs.rglob("*.bw"))
    assert len(bigwigs) == 2 * 12
    reader = pybigtools.open(str(next(b for b in bigwigs if "_chr4_90000_" in b.parent.name)))
    values = reader.values("chr4", 90_000 - 4096, 90_000 + 4096 - 128)
    assert np.isfinite(values).all() and np.abs(values).max() > 0
    assert main(["report", str(run_dir), "--quiet"]) == 0
    html = (run_dir / "report" / "report.html").read_text()
    assert "Variant effects" in html and "chr4:90000" in html
    # up to date, then refused when a setting changes
    assert main(["variants", str(run_dir), "--vcf", str(vcf), "--plot-variants", "v90000", "--plot-top", "1",
                 "--bigwig", "--quiet"]) == 0
    assert main(["variants", str(run_dir), "--vcf", str(vcf), "--quiet", "--rc"]) == 2


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_scores(demo_run, tmp_path):
    genome = _genome(demo_run)
    positions = range(20_000, 20_000 + 16 * 7_000, 7_000)
    vcf = _vcf(tmp_path / "v.vcf", [("chr4", p, ".", _base(genome, "chr4", p), _other(_base(genome, "chr4", p)))
                                    for p in positions])
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "enformer_transfer.cli", "variants", str(demo_run), "--vcf", vcf, "--out", str(out),
           "--chunk-variants", "2", "--batch-size", "2", "--plot-top", "0", "--quiet"]
    log = tmp_path / "killed.partial" / "progress" / "chunks.rank0.txt"
    # killed at an event, however long a loaded machine takes to reach it (the loop also ends when
    # the process does, so no deadline is needed)
    kill_when(cmd, lambda: log.exists() and log.read_text().count(";") >= 2)
    assert not out.exists()
    done = log.read_text().count(";")
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "killed.partial" / "chunks").glob("??????.npz")}
    result = subprocess.run(cmd[:-1] + ["--chunk-variants", "5"], capture_output=True, text=True)
    assert result.returncode == 0 and "resuming" in result.stderr, result.stderr
    assert f"({16 - 2 * done} scored" in result.stdout  # the chunks kept their size; none was redone
    kept = [p for p in stamps if int(p.stem) < done]  # logged before the kill: not written again
    assert kept and all((out / "chunks" / p.name).stat().st_mtime_ns == stamps[p] for p in kept)
    # batches of 2 = one variant's reference and alternative, whatever the chunks: bit-identical
    reference = _variants(demo_run, tmp_path / "ref", vcf, "--plot-top", "0", "--batch-size", "2")
    resumed = et.run.VariantEffects(et.layout.VariantsFolder(out))
    pd.testing.assert_frame_equal(resumed.scores, reference.scores, check_exact=True)


@pytest.mark.slow
def test_two_processes_gloo_equal_one(demo_run, tmp_path):
    genome = _genome(demo_run)
    vcf = _vcf(tmp_path / "v.vcf", [("chr4", p, ".", _base(genome, "chr4", p), _other(_base(genome, "chr4", p)))
                                    for p in range(30_000, 30_000 + 6 * 9_000, 9_000)])
    out = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "enformer_transfer.cli", "variants", str(demo_run), "--vcf", vcf, "--out", str(out),
           "--chunk-variants", "2", "--plot-top", "0", "--quiet"]
    # no wall-clock limit: a loaded machine is slow, not wrong
    result = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (out / "progress").glob("*.txt")) == ["chunks.rank0.txt", "chunks.rank1.txt"]
    assert json.loads((out / "stage.json").read_text())["stats"]["world_size"] == 2
    single = _variants(demo_run, tmp_path / "one", vcf, "--plot-top", "0", "--chunk-variants", "2")
    two = et.run.VariantEffects(et.layout.VariantsFolder(out))
    levels = {level: set(ids) for level, ids in single.summary["levels"].items()}
    _assert_equal_up_to_float32_rounding(_matrices(two), _matrices(single), single.summary["stats"], levels)


# The two runs compute the same float32 predictions with other thread counts and batch shapes, so
# the reduction order inside the trunk's matrix products differs and each prediction moves by a
# few float32 units in the last place (2^-23 = 1.2e-7 relative) per layer: PREDICTION_RTOL bounds
# that drift with a wide margin, and every score's tolerance follows from it.
PREDICTION_RTOL = 1e-5
FLOAT32_STORAGE = 2.0**-23  # the scores are stored as float32: half an ulp each, in both runs


def _score_tolerances(h5: dict[str, np.ndarray], stats: list[str], rtol: float) -> dict[str, np.ndarray]:
    """How far each score (variants x tracks) can move when every prediction moves by at most
    ``rtol`` of itself (predictions >= 0; r, a: ref and alt profiles, R, A their sums):
    SUM, D1, D2, SAX move by at most sum(|dr| + |da|) <= rtol (R + A); logSUM by at most
    rtol (R + A) / ln 2 (d log2(x + 1) = dx / ((x + 1) ln 2) <= rtol x / ln 2); logSED by at most
    rtol (R / (R + 1) + A / (A + 1)) / ln 2. Plus the float32 rounding of the stored value."""
    ref, alt = h5["ref_sum"].astype(np.float64), h5["alt_sum"].astype(np.float64)
    mass = rtol * (ref + alt)
    bounds = {"ref_sum": rtol * ref, "alt_sum": rtol * alt, "SUM": mass, "D1": mass, "D2": mass, "SAX": mass,
              "logSUM": mass / np.log(2), "logSED": rtol * (ref / (ref + 1) + alt / (alt + 1)) / np.log(2)}
    return {name: bounds[name] + FLOAT32_STORAGE * np.abs(h5[name]) for name in ["ref_sum", "alt_sum", *stats]}


def _assert_equal_up_to_float32_rounding(got: dict, expected: dict, stats: list[str], levels: dict[str, set]) -> None:
    """Every score within its derived tolerance, and every z-score within what those tolerances allow.

    A z-score z = (s - m) / sd over the E-accurate scores of one level moves by at most
    (2 + |z|) E / (sd - E) (the mean moves by at most E, the population sd by at most E): the
    tolerance grows as the level's spread shrinks. A near-cancelling effect (alt - ref of nearly
    equal sums, every track near 0) has a spread close to the rounding itself, and its z-scores
    carry no information at float32 precision (sd <= 2 E): those are not compared. A fixed
    tolerance on z (the test's old atol 2e-3) failed on exactly such a variant."""
    tolerances = _score_tolerances(expected, stats, PREDICTION_RTOL)
    for name, tol in tolerances.items():
        difference = np.abs(got[name].astype(np.float64) - expected[name])
        assert (difference <= tol).all(), f"{name}: {difference.max():.3g} over a tolerance of {tol.max():.3g}"
    track_ids = [b.decode() for b in expected["target_ids"]]
    for stat in stats:
        z, z_got, tol = expected[f"{stat}_z"], got[f"{stat}_z"], tolerances[stat]
        for members in levels.values():
            if len(members) < 2:
                continue
            columns = [t for t, identifier in enumerate(track_ids) if identifier in members]
            spread = expected[stat][:, columns].astype(np.float64).std(axis=1, keepdims=True)
            error = tol[:, columns].max(axis=1, keepdims=True)
            allowed = (2 + np.abs(z[:, columns])) * error / np.maximum(spread - error, 1e-300)
            informative = np.broadcast_to(spread > 2 * error, allowed.shape)
            difference = np.abs(z_got[:, columns].astype(np.float64) - z[:, columns])
            assert (difference[informative] <= allowed[informative]).all(), f"{stat}_z"


@pytest.mark.slow
def test_a_finetuned_model_scores_with_its_own_trunk(demo_run, tmp_path):
    run_dir = shutil.copytree(demo_run, tmp_path / "run", ignore=shutil.ignore_patterns("dar", "report", "weights"))
    assert main(["finetune", str(run_dir), "--head", "ft", "--from-head", "default", "--steps", "2",
                 "--loader-workers", "0", "--quiet"]) == 0
    genome = _genome(demo_run)
    base = _base(genome, "chr4", 120_000)
    vcf = _vcf(tmp_path / "v.vcf", [("chr4", 120_000, ".", base, _other(base))])
    out = tmp_path / "ft"
    assert main(["variants", str(run_dir), "--head", "ft", "--vcf", vcf, "--out", str(out), "--plot-top", "0",
                 "--quiet"]) == 0
    effects = et.run.VariantEffects(et.layout.VariantsFolder(out))
    assert effects.summary["finetuned"] is True
    head = Run(run_dir).head("ft")
    _check_against_hand(run_dir, "ft", effects, [("chr4", 120_000, base, _other(base))], [0], rc=False,
                        trunk_model=head.load_trunk())


def planted_motif_variants(genome: Genome, chroms: list[str], seed: int = 0) -> pd.DataFrame:
    """Every planted cell-type-specific motif (a motif one subclass responds to most) on ``chroms``,
    replaced by a shuffle of its own bases: chrom, pos, id, ref, alt, and the subclass it was
    planted for."""
    from enformer_transfer.synthetic import MOTIFS, SUBCLASSES

    rng = np.random.default_rng(seed)
    rows = []
    for chrom in chroms:
        seq = genome.fetch(chrom, 0, genome.sizes[chrom])
        for name, motif in MOTIFS.items():
            weights = {sub: w.get(name, 0.0) for sub, (_, w) in SUBCLASSES.items()}
            best, second = sorted(weights.values(), reverse=True)[:2]
            if best == second:
                continue  # not specific (CTCF: every cell type)
            start = seq.find(motif)
            while start >= 0:
                rows.append((chrom, start + 1, f"{name}_{start}", motif, "".join(rng.permutation(list(motif))),
                             max(weights, key=weights.get)))
                start = seq.find(motif, start + 1)
    return pd.DataFrame(rows, columns=["chrom", "pos", "id", "ref", "alt", "planted_for"])


@pytest.mark.slow
def test_demo_planted_motifs_affect_the_cell_types_they_were_planted_for(demo_run, tmp_path):
    """Destroying each planted cell-type-specific motif of the held-out chromosomes: the subclass
    with the largest |logSED| is the one the motif was planted for far above chance (1 in 6)."""
    planted = planted_motif_variants(_genome(demo_run), ["chr3", "chr4"])
    tsv = tmp_path / "motifs.tsv"
    planted.drop(columns="planted_for").to_csv(tsv, sep="\t", index=False)
    effects = _variants(demo_run, tmp_path, tsv, "--batch-size", "16", "--plot-top", "2")
    affected = effects.most_affected.query("level == 'Subclass'").merge(planted[["id", "planted_for"]], on="id")
    subclass = Run(demo_run).tracks.set_index("identifier")["subclass"]
    hit = (affected["most_affected"].map(subclass) == affected["planted_for"]).mean()
    print(f"planted motif variants: {len(affected)}; most affected subclass = planted for in {100 * hit:.1f}%")
    assert len(affected) > 100 and hit > 0.4
    assert (effects.scores.query("level == 'Subclass'").groupby("variant")["logSED"].min() < 0).mean() > 0.9
