"""Command line: thin wrappers, one library call per command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from ._version import __version__
from .config import (
    DatasetConfig,
    EmbedConfig,
    Geometry,
    RunConfig,
    TrainConfig,
    load_config,
    tomllib,
)
from .errors import EnformerTransferError

log = logging.getLogger("enformer_transfer")

# config sections whose keys are command-line flags (flag = key with '-' for '_')
FLAG_SECTIONS: dict[str, type[BaseModel]] = {"geometry": Geometry, "dataset": DatasetConfig, "embed": EmbedConfig, "train": TrainConfig}


def _comma_list(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def _add_config_flags(parser: argparse.ArgumentParser, sections: list[str]) -> None:
    for section in sections:
        group = parser.add_argument_group(f"{section} settings (also [{section}] in the config)")
        for name, field in FLAG_SECTIONS[section].model_fields.items():
            flag = "--" + name.replace("_", "-")
            kwargs: dict = {"dest": f"{section}.{name}", "default": argparse.SUPPRESS, "help": field.description}
            annotation = field.annotation
            args = typing.get_args(annotation)
            optional = typing.get_origin(annotation) in (typing.Union, types.UnionType)
            base = next((a for a in args if a is not type(None)), annotation) if optional else annotation
            if typing.get_origin(annotation) is typing.Literal:
                kwargs["choices"] = list(args)
            elif typing.get_origin(base) is list:
                kwargs["type"] = _comma_list
                kwargs["metavar"] = "A,B,..."
            elif base is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif base in (int, float, str):
                kwargs["type"] = base
                kwargs["metavar"] = name.upper()
            elif base is Path:
                kwargs["type"] = Path
                kwargs["metavar"] = "PATH"
            group.add_argument(flag, **kwargs)
    parser.add_argument("--seed", type=int, default=argparse.SUPPRESS, help="random seed")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="set any config key, e.g. --set train.batch_size=8 (TOML value syntax)")


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    config = load_config(args.config) if getattr(args, "config", None) else RunConfig()
    data = config.model_dump()
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".", 1)
            data[section][name] = value
    if "seed" in vars(args):
        data["seed"] = args.seed
    for item in getattr(args, "overrides", []):
        key, sep, text = item.partition("=")
        section, _, name = key.strip().rpartition(".")
        if not sep or not name or (section and section not in data):
            raise EnformerTransferError(f"--set {item!r}: expected SECTION.KEY=VALUE with a section of the config")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # a bare word: a string
        (data[section] if section else data)[name] = value
    if getattr(args, "out", None) is not None:
        data["run_dir"] = args.out
    try:
        return RunConfig.model_validate(data)
    except ValueError as err:
        from .config import _first_error

        raise EnformerTransferError(f"invalid settings: {_first_error(err)}") from None


def cmd_dataset(args) -> int:
    from .data.build import build_dataset

    config = _config_from_args(args)
    if config.run_dir is None:
        raise EnformerTransferError("dataset: pass --out RUN_DIR")
    folder = build_dataset(config, force=args.force, progress=not args.quiet)
    print(f"dataset: {folder}")
    return 0


def _run_dir_config(args) -> RunConfig:
    """Config of a stage command on an existing run: RUN_DIR/config.toml, then the flags."""
    snapshot = Path(args.run_dir) / "config.toml"
    if getattr(args, "config", None) is None and snapshot.is_file():
        args.config = snapshot
    args.out = args.run_dir
    return _config_from_args(args)


def cmd_embed(args) -> int:
    from .backbone.embed import embed_run

    embed_run(_run_dir_config(args), force=args.force, progress=not args.quiet)
    return 0


def cmd_train(args) -> int:
    from .heads.train import train_head

    train_head(_run_dir_config(args), force=args.force, progress=not args.quiet)
    return 0


def cmd_evaluate(args) -> int:
    from .evaluation.evaluate import evaluate_head

    evaluate_head(args.run_dir, args.head, args.splits, force=args.force, progress=not args.quiet,
                  compare_run=args.compare_run, enformer_targets=args.enformer_targets,
                  plot_regions=args.plot_regions)
    return 0


def cmd_report(args) -> int:
    from .report.html import write_report

    print(f"report: {write_report(args.run_dir, args.head, args.out)}")
    return 0


def cmd_predict(args) -> int:
    from .evaluation.predict import predict_fasta, predict_regions, read_regions
    from .run import Run

    run = Run(args.run_dir)
    if args.fasta:
        print(f"predict: {predict_fasta(run, args.head, args.fasta, args.out, args.batch_size)}")
        return 0
    from .config import RunConfig
    from .genome.sequence import Genome

    dataset = RunConfig.model_validate(run.stage_record("dataset")["config"]).dataset
    regions = read_regions(args.regions, args.chrom, Genome(dataset.genome, dataset.chrom_aliases).sizes)
    paths = predict_regions(run, args.head, args.out, regions, args.stride, args.batch_size)
    print(f"predict: {len(paths)} BigWigs -> {args.out}")
    return 0


def cmd_weights(args) -> int:
    from .evaluation.weights import weight_similarity
    from .run import Run

    print(f"weights: {weight_similarity(Run(args.run_dir), args.head, args.enformer_targets, args.top)}")
    return 0


def cmd_fetch(args) -> int:
    from .data.fetch import fetch

    path = fetch(args.out, args.urls, args.trackdb, args.metadata, args.clip, args.scale, args.sum_stat)
    print(f"fetch: BigWigs in {args.out / 'bigwigs'}, targets table {path}")
    return 0


def cmd_dar(args) -> int:
    from .evaluation.dar import dar_analysis
    from .run import Run

    out = dar_analysis(Run(args.run_dir), args.head, args.regions, args.label_column, args.splits,
                       args.tracks_where, args.bin_rule, args.min_overlap)
    summary = json.loads((out / "summary.json").read_text())
    print(f"dar: {summary['regions']} regions, median Pearson across cell types "
          f"{summary['pearson_across_cell_types_median']:.3f}, most open cell type agrees in "
          f"{100 * summary['top_agreement_observed_predicted']:.1f}% (chance {100 * summary['chance_agreement']:.1f}%) -> {out}")
    return 0


def cmd_tfrecords_export(args) -> int:
    from .data.tfrecords import export_run
    from .run import Run

    out = export_run(Run(args.run_dir), args.out, args.windows_per_file, one_hot=not args.base_indices)
    print(f"tfrecords: {out}")
    return 0


def cmd_tfrecords_import(args) -> int:
    from .data.tfrecords import import_tfrecords

    out = import_tfrecords(args.folder, args.out, args.genome, args.seq_length, args.chrom_aliases, args.force)
    print(f"tfrecords: imported into {out}")
    return 0


def cmd_backbone_init(args) -> int:
    from .backbone.load import init_backbone

    out = init_backbone(args.out, dim=args.dim, depth=args.depth, heads=args.heads, attn_dim_key=args.attn_dim_key,
                        num_downsamples=args.num_downsamples, target_length=args.target_length,
                        human_tracks=args.human_tracks, seed=args.seed, calibrate_batches=args.calibrate_batches)
    print(f"backbone: random Enformer (dim {args.dim}, depth {args.depth}, heads {args.heads}) -> {out}")
    return 0


def cmd_run(args) -> int:
    from .pipeline import run_pipeline

    config = _config_from_args(args)
    print(f"run: {run_pipeline(config, force=args.force, progress=not args.quiet)}")
    return 0


def cmd_demo(args) -> int:
    import pandas as pd

    from .pipeline import run_demo
    from .run import Run

    run_dir = run_demo(args.out, force=args.force, progress=not args.quiet)
    run = Run(run_dir)
    shapes = ", ".join(f"{s} {tuple(run.targets(s).shape)}" for s in run.splits)
    print(f"demo: {len(run.tracks)} tracks; targets (windows, bins, tracks): {shapes}")
    shapes = ", ".join(f"{s} {tuple(run.embeddings(s).shape)}" for s in run.splits)
    print(f"demo: embeddings (windows, bins, dim): {shapes}")
    for split in ("valid", "test"):
        per_level = pd.read_csv(run_dir / "evaluation" / "default" / "per_level.csv")
        levels = per_level[(per_level["split"] == split) & (per_level["grouping"] == "level")]
        print(f"demo: {split} mean Pearson per level (default head | ridge): " + ", ".join(
            f"{r.group} {r.pearson_mean:.3f} | {r.ridge_pearson_mean:.3f}" for r in levels.itertuples()))
    dar = json.loads((run_dir / "dar" / "default" / "summary.json").read_text())
    print(f"demo: DAR analysis, {dar['regions']} subclass-specific regions: median Pearson across subclasses "
          f"{dar['pearson_across_cell_types_median']:.3f}; most open subclass predicted = observed in "
          f"{100 * dar['top_agreement_observed_predicted']:.1f}% (chance {100 * dar['chance_agreement']:.1f}%)")
    print(f"demo: run directory {run_dir}")
    print(f"demo: report {run_dir / 'report.html'}")
    return 0


def cmd_targets(args) -> int:

    from .data.targets_table import (
        build_targets_table,
        read_metadata_table,
        read_targets_table,
        save_targets_table,
    )

    if args.validate:
        df = read_targets_table(args.validate)
        print(f"{args.validate}: {len(df)} tracks, valid")
        return 0
    bigwigs = [Path(p) for p in args.bigwigs or []]
    for folder in args.bigwig_dir or []:
        found = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".bw", ".bigwig"))
        if not found:
            raise EnformerTransferError(f"{folder}: no .bw / .bigWig files")
        bigwigs += found
    metadata = read_metadata_table(args.metadata) if args.metadata else None
    df = build_targets_table(bigwigs, metadata, clip=args.clip, scale=args.scale,
                             sum_stat=args.sum_stat, clip_soft=args.clip_soft)
    out = save_targets_table(df, args.out)
    print(f"targets: {len(df)} tracks -> {out}")
    return 0


def cmd_windows(args) -> int:
    from .genome.intervals import IntervalSet
    from .genome.sequence import Genome
    from .genome.windows import generate_windows, write_bed

    config = _config_from_args(args)
    genome = Genome(args.genome)
    blacklist = IntervalSet.from_bed(args.blacklist_bed) if args.blacklist_bed else None
    df = generate_windows(genome, config.geometry, args.valid_chroms, args.test_chroms,
                          crop=args.crop, blacklist=blacklist, seed=config.seed)
    write_bed(df, args.out)
    counts = df["split"].value_counts().to_dict()
    print(f"windows: {len(df)} -> {args.out} ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="enformer-transfer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"enformer-transfer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("dataset", help="BigWigs + genome + windows -> binned targets in RUN_DIR")
    p.add_argument("--config", type=Path, help="TOML run config (flags override it)")
    p.add_argument("--out", type=Path, help="run directory")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    _add_config_flags(p, ["geometry", "dataset"])
    p.set_defaults(func=cmd_dataset)

    p = sub.add_parser("run", help="run every stage of a TOML config, in order, resuming")
    p.add_argument("config", type=Path)
    p.add_argument("--out", type=Path, help="run directory (overrides run_dir)")
    p.add_argument("--force", action="store_true")
    p.add_argument("--quiet", action="store_true")
    _add_config_flags(p, ["geometry", "dataset", "embed"])
    p.set_defaults(func=cmd_run)

    for name, section, func, text in (
        ("embed", "embed", cmd_embed, "Enformer's trunk over every window -> RUN_DIR/embeddings"),
        ("train", "train", cmd_train, "train a head on the stored embeddings -> RUN_DIR/heads/NAME"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
        p.add_argument("--config", type=Path, help="TOML run config (default: RUN_DIR/config.toml)")
        p.add_argument("--force", action="store_true", help="redo even if up to date")
        p.add_argument("--quiet", action="store_true")
        _add_config_flags(p, [section])
        p.set_defaults(func=func)

    p = sub.add_parser("evaluate", help="predict every window of each split with a head and score it")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--head", required=True, help="head name (RUN_DIR/heads/NAME)")
    p.add_argument("--splits", type=_comma_list, default=None, metavar="A,B", help="default: test,valid")
    p.add_argument("--compare-run", type=Path, help="another run (e.g. a random backbone) evaluated with the same head name")
    p.add_argument("--enformer-targets", type=Path, help="targets_human.txt, to name the backbone's own tracks")
    p.add_argument("--plot-regions", nargs="*", metavar="REGION",
                   help="chrom:start-end or BED files: plot observed vs predicted tracks of the windows there")
    p.add_argument("--force", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="one self-contained HTML report of the run")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--head", nargs="*", default=None, help="evaluated heads to include (default: all)")
    p.add_argument("--out", type=Path, help="default: RUN_DIR/report.html")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("predict", help="predictions of a head as BigWigs (regions, chromosomes) or a table (FASTA)")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--head", required=True)
    p.add_argument("--regions", type=Path, help="BED of regions, tiled into windows")
    p.add_argument("--chrom", nargs="*", help="whole chromosomes")
    p.add_argument("--fasta", type=Path, help="sequences of exactly the model input length: write a table")
    p.add_argument("--out", type=Path, required=True, help="folder for BigWigs (or the table file with --fasta)")
    p.add_argument("--stride", type=int, default=None, help="bp between windows (default: half the target interval)")
    p.add_argument("--batch-size", type=int, default=4)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("weights", help="compare a head's weights with the backbone's own human-head tracks")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--head", required=True)
    p.add_argument("--enformer-targets", type=Path, help="targets_human.txt naming the backbone's tracks")
    p.add_argument("--top", type=int, default=5)
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("dar", help="do predictions recover differentially accessible regions between cell types?")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--head", required=True, help="an evaluated head")
    p.add_argument("--regions", type=Path, required=True, help="DAR table: region (chr:start-end) + cell-type label")
    p.add_argument("--label-column", required=True, help="column of both tables naming the cell type, e.g. subclass")
    p.add_argument("--tracks-where", help="which tracks form the level, e.g. \"level == 'Subclass'\"")
    p.add_argument("--splits", type=_comma_list, default=None, metavar="A,B", help="default: the evaluated splits")
    p.add_argument("--bin-rule", choices=["contained", "study"], default="contained",
                   help="study = the reference study's rule (contained bins shifted one bin downstream)")
    p.add_argument("--min-overlap", type=int, default=256, help="bp of a region inside a target interval")
    p.set_defaults(func=cmd_dar)

    p = sub.add_parser("tfrecords", help="Basenji TFRecords")
    tsub = p.add_subparsers(dest="tfrecords_command", required=True)
    t = tsub.add_parser("export", help="write a run's dataset as Basenji TFRecords (+ sequences.bed, statistics.json)")
    t.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--windows-per-file", type=int, default=256)
    t.add_argument("--base-indices", action="store_true", help="sequence as uint8 base indices, not bool one-hot")
    t.set_defaults(func=cmd_tfrecords_export)
    t = tsub.add_parser("import", help="a run's dataset from Basenji TFRecords (statistics.json, sequences.bed, targets.txt)")
    t.add_argument("folder", type=Path, metavar="BASENJI_DIR")
    t.add_argument("--genome", type=Path, required=True, help="the genome the records were made from")
    t.add_argument("--out", type=Path, required=True, help="run directory")
    t.add_argument("--seq-length", type=int, default=None, help="model input length (default 196,608)")
    t.add_argument("--chrom-aliases", choices=["none", "auto"], default="none")
    t.add_argument("--force", action="store_true")
    t.set_defaults(func=cmd_tfrecords_import)

    p = sub.add_parser("backbone", help="backbone utilities")
    bsub = p.add_subparsers(dest="backbone_command", required=True)
    b = bsub.add_parser("init", help="write a randomly initialised Enformer (any size) in the real weights' format")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--dim", type=int, default=1536)
    b.add_argument("--depth", type=int, default=11)
    b.add_argument("--heads", type=int, default=8)
    b.add_argument("--attn-dim-key", type=int, default=64)
    b.add_argument("--num-downsamples", type=int, default=7, help="bin size = 2 ** this")
    b.add_argument("--target-length", type=int, default=896)
    b.add_argument("--human-tracks", type=int, default=5313)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--calibrate-batches", type=int, default=2,
                   help="batches of random DNA that set the BatchNorm statistics (0: none)")
    b.set_defaults(func=cmd_backbone_init)

    p = sub.add_parser("demo", help="generate synthetic data and run every stage on it")
    p.add_argument("--out", type=Path, default=Path("demo-run"))
    p.add_argument("--force", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("fetch", help="download BigWigs (URL list or UCSC trackDb) and write a targets table")
    p.add_argument("--urls", type=Path, help="a list of URLs, or a CSV/TSV with url, identifier and metadata columns")
    p.add_argument("--trackdb", help="a UCSC hub trackDb.txt (path or URL): bigDataUrl, labels, subGroups")
    p.add_argument("--metadata", type=Path, help="extra metadata keyed by identifier")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--clip", type=float, default=32)
    p.add_argument("--scale", type=float, default=2)
    p.add_argument("--sum-stat", default="mean")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("targets", help="build (or --validate) a Basenji targets table")
    p.add_argument("--bigwigs", nargs="+", metavar="BW")
    p.add_argument("--bigwig-dir", nargs="+", metavar="DIR")
    p.add_argument("--metadata", type=Path, help="CSV/TSV keyed by identifier (file stem) or file")
    p.add_argument("--clip", type=float, default=32)
    p.add_argument("--clip-soft", type=float, default=None)
    p.add_argument("--scale", type=float, default=2)
    p.add_argument("--sum-stat", default="mean")
    p.add_argument("--out", type=Path)
    p.add_argument("--validate", type=Path, metavar="TABLE")
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser("windows", help="tile a genome into windows with whole-chromosome splits")
    p.add_argument("--genome", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--valid-chroms", nargs="*", default=[])
    p.add_argument("--test-chroms", nargs="*", default=[])
    p.add_argument("--crop", type=int, default=None, help="bp kept on each side of the target interval in each row")
    p.add_argument("--blacklist-bed", type=Path)
    _add_config_flags(p, ["geometry"])
    p.set_defaults(func=cmd_windows, config=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "targets" and not args.validate and not args.out:
        parser.error("targets: pass --out TABLE (or --validate TABLE)")
    try:
        return args.func(args)
    except EnformerTransferError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
