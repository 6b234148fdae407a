"""Variant scoring speed: variants/s of the ``variants`` stage end to end (inputs from the genome,
reference and alternative passes through trunk + head, scores, tables), on a random backbone.

Sets up a small run (random genome, one flat track, a random Enformer, embeddings, a ridge head),
writes random SNVs, and times the stage once with the model warm (a first small run loads it and,
with --compile, compiles it). The full-size architecture by default (on a GPU); on CPU use a tiny
one:

    CPU:  python benchmarks/variants_speed.py --device cpu --dim 48 --depth 1 --heads 2 --attn-dim-key 16 \\
              --seq-length 16384 --n-bins 64 --variants 32
    GPU:  python benchmarks/variants_speed.py --variants 512 --batch-size 16 --compile
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _device import allow_missing_polars  # noqa: E402

allow_missing_polars()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=256)
    parser.add_argument("--windows", type=int, default=10, help="windows of the run (embedded to train the head)")
    parser.add_argument("--seq-length", type=int, default=196_608)
    parser.add_argument("--n-bins", type=int, default=896)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--depth", type=int, default=11)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--attn-dim-key", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--rc", action="store_true", help="both strands (twice the sequences)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tmp", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()

    import numpy as np
    import torch
    from _embed_data import make_embed_inputs

    from enformer_transfer import (
        Geometry,
        RunConfig,
        build_dataset,
        embed_run,
        train_head,
        variants,
    )
    from enformer_transfer.backbone.load import init_backbone
    from enformer_transfer.devices import resolve_device
    from enformer_transfer.genome.sequence import Genome
    from enformer_transfer.rundir.layout import VariantsFolder
    from enformer_transfer.rundir.run import VariantEffects

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(dir=args.tmp) as name:
        tmp = Path(name)
        started = time.time()
        genome_path, targets, windows = make_embed_inputs(tmp / "data", args.windows, args.seq_length, args.n_bins)
        import pybigtools

        size = Genome(genome_path).sizes["chrB"]  # a track that varies (ridge needs a valid Pearson)
        values = np.random.default_rng(1).gamma(1.0, 1.0, size // 128)
        pybigtools.open(str(tmp / "data" / "flat.bw"), "w").write(
            {"chrB": size}, iter(("chrB", i * 128, (i + 1) * 128, float(v)) for i, v in enumerate(values)))
        rows = windows.read_text().splitlines()
        splits = ["valid" if i == 1 else "test" if i == 2 else "train" for i in range(len(rows))]
        windows.write_text("".join("\t".join(r.split()[:3] + [s]) + "\n" for r, s in zip(rows, splits, strict=True)))
        config = RunConfig(run_dir=tmp / "run", geometry=Geometry(seq_length=args.seq_length, n_bins=args.n_bins))
        config.dataset.genome, config.dataset.targets, config.dataset.windows = genome_path, targets, windows
        build_dataset(config, progress=False)
        backbone = init_backbone(tmp / "bb", dim=args.dim, depth=args.depth, heads=args.heads,
                                 attn_dim_key=args.attn_dim_key, n_bins=args.n_bins, human_tracks=8,
                                 calibrate_batches=1)
        config.embed.backbone, config.embed.loader_workers, config.embed.device = str(backbone), 0, str(device)
        embed_run(config, progress=False)
        config.train.model = "ridge"
        train_head(config, progress=False)
        print(f"setup (data, random backbone, embeddings, ridge head): {time.time() - started:.1f} s", flush=True)

        genome = Genome(genome_path)
        rng = np.random.default_rng(0)
        positions = np.sort(rng.choice(np.arange(1000, size - 1000), size=args.variants + 4, replace=False))
        lines = ["chrom\tpos\tref\talt\tid"]
        for i, pos in enumerate(positions):
            ref = genome.fetch("chrB", int(pos) - 1, int(pos))
            lines.append(f"chrB\t{pos}\t{ref}\t{'ACGT'[('ACGT'.index(ref) + 1 + i % 3) % 4]}\tv{i}")
        (tmp / "warm.tsv").write_text("\n".join(lines[:5]) + "\n")  # warm-up: load (and compile) the model
        (tmp / "variants.tsv").write_text("\n".join(lines[:1] + lines[5:]) + "\n")
        settings = dict(batch_size=args.batch_size, precision=args.precision, compile=args.compile,
                        device=str(device), rc=args.rc, plot_top=0, chunk_variants=64)
        for label, vcf in (("warm-up", tmp / "warm.tsv"), ("timed", tmp / "variants.tsv")):
            config.variants = config.variants.model_validate({**settings, "vcf": vcf, "out": tmp / label})
            start = time.time()
            folder = variants(config, progress=label == "timed")
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.time() - start
        effects = VariantEffects(VariantsFolder(folder))
        stats, precision = effects.record.stats, effects.summary["precision"]

    card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {card}; torch {torch.__version__}; precision {precision}; "
          f"backbone dim {args.dim} depth {args.depth} heads {args.heads}; input {args.seq_length} bp, "
          f"{args.n_bins} bins; batch {args.batch_size}; compile {args.compile}; rc {args.rc}")
    print(f"variants: {args.variants} SNVs in {seconds:.1f} s end to end (stage start to finish): "
          f"{args.variants / seconds:.2f} variants/s; scoring loop alone {stats['variants_per_second']:.2f} "
          f"variants/s, {stats['sequences_this_run'] / stats['seconds']:.2f} sequences/s")


if __name__ == "__main__":
    main()
