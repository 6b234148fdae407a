"""Heads at every data size: the default recipe against its ridge baseline and the study's recipe,
and the loss question (rate-form Poisson vs the study's log-input quirk vs mse vs
poisson-multinomial), several seeds each, test mean Pearson per track pooled over bins.

``--versus``: the default head against the ridge head of the same run (valid and test, the
ratio, which start training began from and which was kept), on the demo's data with its pretrained
and a random backbone, the real-data example (examples/tiny-hg38.toml), and the 74 real tracks of
basenji-tiny-hg38 all together and by assay (CAGE, DNase, RNA: subsets of few windows and tracks).

    python benchmarks/head_recipes.py --tmp /tmp/heads --versus demo-pretrained,example,real-cage --seeds 0,1

Datasets (built once into --tmp, reused):
  demo       the demo's synthetic data and tiny motif-seeded backbone (46 train windows, 12 tracks)
  real       basenji-tiny-hg38: real hg38 DNA, the 74 real tracks, central 65,536 bp of each contig
             (45 / 10 / 10 windows, 512 bins of 128 bp), a random Enformer of dim 192
  synthetic  4 x 800-kb synthetic chromosomes (190 train windows), the demo's backbone

    python benchmarks/head_recipes.py --tmp /tmp/heads [--datasets demo,real,synthetic] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

LOSSES = ("poisson", "poisson-log-input", "mse", "poisson-multinomial")
TINY = Path(__file__).resolve().parents[2] / "shared" / "data" / "basenji-tiny-hg38"


def build(name: str, root: Path) -> Path:
    """A run with embeddings of dataset ``name`` (cached)."""
    from enformer_transfer import Geometry, RunConfig, build_dataset, embed_run, init_backbone
    from enformer_transfer.synthetic import DEMO_GEOMETRY, MOTIFS, make_synthetic

    run_dir = root / name / "run"
    if (run_dir / "embeddings" / "stage.json").is_file():
        return run_dir
    folder = root / name
    if name in ("demo-pretrained", "demo-random"):
        from enformer_transfer.pipeline import DEMO_BACKBONE, demo_data, shipped_demo_backbone

        data = demo_data(root / "demo-data")
        config = RunConfig(run_dir=run_dir, geometry=DEMO_GEOMETRY)
        config.dataset.genome, config.dataset.targets = data / "genome.fa", data / "targets.tsv"
        config.dataset.windows, config.dataset.blacklist = data / "windows.bed", data / "blacklist.bed"
        backbone = shipped_demo_backbone() if name == "demo-pretrained" else init_backbone(
            folder / "bb", n_bins=DEMO_GEOMETRY.n_bins, human_tracks=10, seed=0, **DEMO_BACKBONE)
    elif name == "example":
        import tomllib

        example = Path(__file__).resolve().parents[1] / "examples"
        settings = tomllib.loads((example / "tiny-hg38.toml").read_text())
        config = RunConfig(run_dir=run_dir, geometry=Geometry(**settings["geometry"]))
        config.dataset.genome = TINY / "windows.fa"
        config.dataset.targets, config.dataset.windows = example / "tiny-hg38" / "targets.tsv", example / "tiny-hg38" / "windows.bed"
        backbone = init_backbone(folder / "bb", dim=48, depth=1, heads=2, attn_dim_key=16, n_bins=512,
                                 human_tracks=16)
    elif name in ("demo", "synthetic"):
        data = make_synthetic(folder / "data", seed=0, chrom_length=200_000 if name == "demo" else 800_000)
        config = RunConfig(run_dir=run_dir, geometry=DEMO_GEOMETRY)
        config.dataset.genome, config.dataset.targets, config.dataset.windows = data.genome, data.targets, data.windows
        backbone = init_backbone(folder / "bb", dim=48, depth=1, heads=2, attn_dim_key=16, n_bins=64,
                                 human_tracks=32, stem_motifs=list(MOTIFS.values()))
    else:
        import pandas as pd

        from enformer_transfer.targets.table import build_targets_table, write_targets_table

        folder.mkdir(parents=True, exist_ok=True)
        table = build_targets_table(sorted((TINY / "bigwig_contig").glob("*.bw")), clip=None, scale=1.0)
        write_targets_table(table, folder / "targets.tsv")
        bed = pd.read_csv(TINY / "windows.bed", sep="\t", header=None, names=["chrom", "start", "end", "name", "split"])
        pd.DataFrame({"c": bed["name"], "s": 32768, "e": 98304, "split": bed["split"]}).to_csv(
            folder / "windows.bed", sep="\t", header=False, index=False)
        config = RunConfig(run_dir=run_dir, geometry=Geometry(seq_length=131072, n_bins=512))
        config.dataset.genome, config.dataset.targets = TINY / "windows.fa", folder / "targets.tsv"
        config.dataset.windows = folder / "windows.bed"
        backbone = init_backbone(folder / "bb", dim=192, depth=1, heads=4, attn_dim_key=16, n_bins=512,
                                 human_tracks=16)
    build_dataset(config, progress=False)
    config.embed.backbone, config.embed.loader_workers, config.embed.batch_size = str(backbone), 1, 2
    embed_run(config, progress=False)
    return run_dir


def test_scores(run_dir: Path, head: str) -> tuple[float, int]:
    """Test mean Pearson and the number of flat tracks (constant predictions) of a head."""
    from enformer_transfer import Run
    from enformer_transfer.metrics import SplitMetrics

    run = Run(run_dir)
    model = run.head(head)
    index = model.check_compatible(run)
    emb, targets, masks = run.embeddings("test"), run.targets("test"), run.masks("test")
    metrics = SplitMetrics(len(index), run.geometry.n_bins, emb.shape[0])
    for start in range(0, emb.shape[0], 8):
        pred = model.predict(np.asarray(emb[start : start + 8]))
        obs = np.asarray(targets[start : start + 8])[..., index]
        mask = None if masks is None else np.asarray(masks[start : start + 8])[..., index]
        metrics.update(pred, obs, mask)
    per_track = metrics.per_track()
    return float(np.nanmean(per_track["pearson"])), int((per_track["predicted_std"] <= 1e-6).sum())


def train(run_dir: Path, head: str, seed: int, **settings) -> dict:
    from enformer_transfer import Run, as_config, train_head

    config = as_config(run_dir)
    config.seed = seed
    config.train = type(config.train)(head=head, loader_workers=0, **settings)
    start = time.time()
    train_head(config, progress=False)
    pearson, flat = test_scores(run_dir, head)
    meta = Run(run_dir).head(head).metadata
    training = meta["training"]
    return {"test_pearson": pearson, "flat_tracks": flat, "seconds": round(time.time() - start, 1),
            "valid_pearson": meta["metrics"]["pearson_mean"].get("valid"),
            "steps": training.get("steps"), "trained_from": training.get("trained_from"),
            "kept": (training.get("kept") or {}).get("start") or (training.get("kept") or {}).get("epoch"),
            "starts": {k: v["valid_pearson"] for k, v in training.get("starts", {}).items()}}


# the datasets of the default-vs-ridge table: (name, run built by build(), tracks_where)
VERSUS = {
    "demo-pretrained": ("demo-pretrained", None),
    "demo-random": ("demo-random", None),
    "example": ("example", None),
    "real": ("real", None),
    "real-cage": ("real", "index < 24"),  # the tracks' file order: 24 CAGE, 10 DNase, 40 RNA
    "real-dnase": ("real", "24 <= index < 34"),
    "real-rna": ("real", "index >= 34"),
}


def versus(names: list[str], seeds: list[int], root: Path) -> dict:
    """The default head against the ridge head of the same run, valid and test mean Pearson."""
    results = {}
    for name in names:
        build_name, where = VERSUS[name]
        if build_name in ("real", "example") and not (TINY / "windows.fa").is_file():
            print(f"{name}: skipped ({TINY} not found)")
            continue
        run_dir = build(build_name, root)
        tag = name.replace("real-", "")
        ridge = train(run_dir, f"ridge-{tag}", 0, model="ridge", tracks_where=where)
        default = [train(run_dir, f"default-{tag}-{s}", s, tracks_where=where) for s in seeds]
        results[name] = {"ridge": ridge, "default": default}
        dv, dt = (np.mean([r[k] for r in default]) for k in ("valid_pearson", "test_pearson"))
        print(f"{name:16s} valid: default {dv:.3f} ridge {ridge['valid_pearson']:.3f} "
              f"(ratio {dv / ridge['valid_pearson']:.2f}); test: default {dt:.3f} ridge {ridge['test_pearson']:.3f} "
              f"(ratio {dt / ridge['test_pearson']:.2f}); trained from "
              f"{', '.join(str(r['trained_from']) for r in default)}; kept {', '.join(str(r['kept']) for r in default)}; "
              f"starts {default[0]['starts']}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tmp", type=Path, default=Path("/tmp/head-recipes"))
    parser.add_argument("--datasets", default="demo,real,synthetic")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--versus", help="instead: the default head against the ridge head, valid and test, on "
                        f"these datasets ({', '.join(VERSUS)})")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    import logging

    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.versus:
        results = versus(args.versus.split(","), seeds, args.tmp)
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))
        return
    results: dict = {}
    for name in args.datasets.split(","):
        if name == "real" and not (TINY / "windows.fa").is_file():
            print(f"real: skipped ({TINY} not found)")
            continue
        run_dir = build(name, args.tmp)
        rows = results[name] = {}
        rows["ridge"] = [train(run_dir, "ridge", 0, model="ridge")]
        rows["study recipe"] = [train(run_dir, f"study-{s}", s, recipe="study") for s in seeds]
        for loss in LOSSES:
            rows[f"default, {loss}"] = [train(run_dir, f"{loss}-{s}", s, loss=loss) for s in seeds]
        print(f"\n{name} ({run_dir}): test mean Pearson over tracks, mean (min-max) over seeds {seeds}")
        for label, runs in rows.items():
            values = [r["test_pearson"] for r in runs]
            flat = max(r["flat_tracks"] for r in runs)
            print(f"  {label:32s} {np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})  "
                  f"flat tracks {flat}  {np.mean([r['seconds'] for r in runs]):.0f} s")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
