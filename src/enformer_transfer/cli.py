"""enformer-transfer: teach a pretrained Enformer new genomic tracks.

Give it BigWig files of the tracks you care about and a genome; it bins them into targets,
embeds every window with Enformer's trunk, trains small heads that predict the new tracks from
the embeddings (or fine-tunes the whole model), and scores them on held-out chromosomes
against baselines, in one HTML report. Every command works on a run directory and resumes
where it stopped; `enformer-transfer demo` runs it all on synthetic data in a few minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import shlex
import signal
import sys
import threading
import types
import typing
from pathlib import Path

from ._version import __version__
from .console import FILE_ONLY, setup_console, teardown_console
from .devices import is_primary_process
from .errors import EnformerTransferError, Interrupted, did_you_mean
from .fs import disk_full_error
from .rundir.config import (
    SECTIONS,
    RunConfig,
    load_config,
    tomllib,
    validate_config,
)
from .rundir.layout import RunLayout
from .stages import BY_COMMAND, PER_COMMAND_SECTIONS, STAGES, Stage

log = logging.getLogger("enformer_transfer")


TOOL_COMMANDS = (
    # the commands that are no stage of a run (the stages: stages.STAGES), by group
    ("data", ("fetch", "targets", "windows")),
    ("all at once", ("run", "demo")),
)


def _command_groups() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The commands in pipeline order, as the top-level help lists them: per group, its tool
    commands, then its stages in the registry's order (a command of several words by its first)."""
    groups = {"data": [], "model": [], "results": [], "all at once": []}
    for group, names in TOOL_COMMANDS:
        groups[group] += names
    for stage in STAGES:
        name = stage.command.split()[0]
        if name not in groups[stage.group]:
            groups[stage.group].append(name)
    return tuple((group, tuple(names)) for group, names in groups.items())


COMMAND_GROUPS = _command_groups()


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written and appends each option's default to its help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or "(default" in text or not action.option_strings or default is None
                or default is argparse.SUPPRESS or isinstance(default, bool) or default == []):
            return text
        return f"{text} (default: %(default)s)"


def _comma_list(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def _shown_default(field, description: str) -> str:
    """' (default: X)' for a config field; '' when the description already says it or it has none."""
    default = field.get_default(call_default_factory=True)
    if "(default" in description:
        return ""
    if default is None:
        return " (default: auto)" if "auto" in description else ""
    if isinstance(default, bool):
        return f" (default: {'yes' if default else 'no'})"
    if isinstance(default, (list, tuple)):
        return f" (default: {','.join(map(str, default)) or 'none'})"
    return f" (default: {default})"


def _add_section_flags(parser: argparse.ArgumentParser, sections: list[str]) -> None:
    """One flag per key of each config section (``--batch-size`` for ``batch_size``)."""
    for section in sections:
        model = SECTIONS[section]
        group = parser.add_argument_group(f"{section} settings (also [{section}] in a run config)")
        for name, field in model.model_fields.items():
            flags = ["--" + name.replace("_", "-")]
            alias = field.validation_alias
            for extra in getattr(alias, "choices", []):
                if extra != name:
                    flags.append("--" + extra.replace("_", "-"))
            description = field.description or name.replace("_", " ")
            text = (description + _shown_default(field, description)).replace("%", "%%")
            kwargs: dict = {"dest": f"{section}.{name}", "default": argparse.SUPPRESS, "help": text}
            annotation = field.annotation
            args = typing.get_args(annotation)
            optional = typing.get_origin(annotation) in (typing.Union, types.UnionType)
            base = next((a for a in args if a is not type(None)), annotation) if optional else annotation
            if typing.get_origin(base) is typing.Literal:
                kwargs["choices"] = list(typing.get_args(base))
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
            group.add_argument(*flags, **kwargs)


def _add_console(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """--quiet / --verbose, before or after the command name."""
    default = False if top else argparse.SUPPRESS
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="print only errors and each command's final summary")
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="also print debug messages, library warnings and Lightning's own lines")


def _add_common(parser: argparse.ArgumentParser, config_help: str) -> None:
    parser.add_argument("--config", type=Path, help=config_help)
    parser.add_argument("--seed", type=int, default=argparse.SUPPRESS, help="random seed (default: 0)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="set any config key, e.g. --set train.batch_size=8 (TOML value syntax)")
    parser.add_argument("--force", action="store_true", help="redo the stage even if it is up to date")
    _add_console(parser)


def config_from_args(args: argparse.Namespace, snapshot: Path | None = None) -> RunConfig:
    """The config file (or the run's own config.toml, ``snapshot``), then the flags, then
    ``--set`` overrides; paths made absolute. From a snapshot, the sections of per-command
    stages (train, evaluate, ...) start from their defaults."""
    if getattr(args, "config", None):
        data = load_config(args.config).model_dump()
    elif snapshot is not None and snapshot.is_file():
        data = load_config(snapshot).model_dump()
        for section in PER_COMMAND_SECTIONS:
            data[section] = SECTIONS[section]().model_dump()
    else:
        data = RunConfig().model_dump()
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
            hint = did_you_mean(section, SECTIONS) if sep and name and section else ""
            raise EnformerTransferError(f"--set {item!r}: expected SECTION.KEY=VALUE with a section of the config"
                                        f"{hint} ({', '.join(SECTIONS)})")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # a bare word: a string
        (data[section] if section else data)[name] = value
    if getattr(args, "run_dir", None) is not None:
        data["run_dir"] = args.run_dir
    return validate_config(data, "invalid settings: ")


def _stage_handler(stage: Stage):
    """A command that calls the stage's ``function(config, force, progress)``; settings start from
    the run directory's own config.toml when it has one (so ``dataset --out RUN --force`` rebuilds
    with the recorded settings, as the rebuild advice says), then the config file, flags, --set."""

    def handler(args) -> int:
        snapshot = RunLayout(args.run_dir).config if getattr(args, "run_dir", None) is not None else None
        stage.load()(config_from_args(args, snapshot), force=args.force, progress=not args.quiet)
        return 0

    return handler


def _add_stage(sub, stage: Stage, command) -> argparse.ArgumentParser:
    """The command of a stage that works on a run directory: RUN_DIR (``dataset``: --out RUN_DIR,
    which it creates), the common options and a flag per key of its config sections."""
    p = command(sub, stage.command.split()[-1], stage.help)
    if stage.args == "out":
        p.add_argument("--out", dest="run_dir", type=Path, help="run directory to create or resume")
        _add_common(p, "TOML run config (flags override it)")
    else:
        p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help=(
            "a run with a dataset of the pretraining tracks" if stage.name == "pretrain" else "the run directory"))
        _add_common(p, "TOML run config (default: RUN_DIR/config.toml)")
    _add_section_flags(p, list(stage.sections))
    p.set_defaults(func=_stage_handler(stage))
    return p


def cmd_run(args) -> int:
    from .pipeline import run_pipeline

    if args.out is not None:
        args.run_dir = args.out
    run_pipeline(config_from_args(args), force=args.force, progress=not args.quiet)
    return 0


def cmd_demo(args) -> int:
    from .pipeline import demo_summary, run_demo

    run_dir = run_demo(args.out, force=args.force, progress=not args.quiet)
    print("\n".join(demo_summary(run_dir)))
    return 0


def cmd_fetch(args) -> int:
    from .data.fetch import fetch

    config = config_from_args(args)
    path = fetch(args.out, args.urls, args.trackdb, args.metadata, config.targets,
                 allow_local_paths=args.allow_local_paths,
                 allow_private_network=config.fetch.allow_private_network)
    print(f"fetch: BigWigs in {args.out / 'bigwigs'}, targets table {path}")
    return 0


def cmd_pseudobulk(args) -> int:
    config = config_from_args(args)
    path = BY_COMMAND["pseudobulk"].load()(args.out, args.fragments, args.cells, args.chrom_sizes, args.genome, args.blacklist,
                      config.pseudobulk, config.targets, force=args.force, progress=not args.quiet)
    print(f"pseudobulk: BigWigs in {args.out / 'bigwigs'}, targets table {path}, QC {args.out / 'qc.tsv'}")
    return 0


def cmd_targets(args) -> int:
    from .targets.table import make_targets_table, read_targets_table

    if args.validate:
        print(f"{args.validate}: {len(read_targets_table(args.validate))} tracks, valid")
        return 0
    if not args.out:
        raise EnformerTransferError("targets: pass --out TABLE (or --validate TABLE)")
    table = make_targets_table(args.out, args.bigwigs, args.bigwig_dir, args.metadata, config_from_args(args).targets)
    print(f"targets: {len(table)} tracks -> {args.out}")
    return 0


def cmd_windows(args) -> int:
    from .genome.windows import windows_command

    counts = windows_command(args.genome, args.out, config_from_args(args), args.valid_chroms, args.test_chroms,
                             args.crop, args.blacklist_bed)
    print(f"windows: {sum(counts.values())} -> {args.out} ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    return 0


def cmd_check(args) -> int:
    print("\n".join(BY_COMMAND["check"].load()(args.run_dir, progress=not args.quiet)))
    return 0


def cmd_tfrecords_export(args) -> int:
    from .data.tfrecords import export_run
    from .results import Run

    print(f"tfrecords: {export_run(Run(args.run_dir), args.out, args.windows_per_file, not args.base_indices, args.force)}")
    return 0


def cmd_tfrecords_import(args) -> int:
    out = BY_COMMAND["tfrecords import"].load()(args.folder, args.out, args.genome, args.seq_length, args.chrom_aliases, args.force)
    print(f"tfrecords: imported into {out}")
    return 0


INIT_OPTIONS = ("dim", "depth", "heads", "attn_dim_key", "num_downsamples", "n_bins", "human_tracks",
                "calibrate_batches", "seq_length", "resolution", "organism")  # each family refuses, in one line, those it has not


def cmd_backbone_init(args) -> int:
    from .backbone.families import get_family

    family = get_family(args.kind)
    options = {k: getattr(args, k) for k in INIT_OPTIONS if getattr(args, k) is not None}
    out = family.init(args.out, args.preset, args.seed, **options)
    print(f"backbone: random {family.display_name or family.kind} ({args.preset} preset"
          f"{''.join(f', {k} {v}' for k, v in options.items())}) -> {out}")
    return 0


def cmd_backbone_info(args) -> int:
    import json

    from .backbone.info import backbone_info, info_lines

    info = backbone_info(args.folder)
    print(json.dumps(info, indent=2) if args.json else "\n".join(info_lines(info)))
    return 0


def _commands_help(sub) -> str:
    """The commands, grouped and in pipeline order, one line each (those no group names: 'more')."""
    registered = {action.dest: action.help or "" for action in sub._choices_actions}  # add_parser(help=...)
    helps = {name: ((parser.description or registered.get(name, "")).strip().splitlines() or [""])[0]
             for name, parser in sub.choices.items()}
    lines = ["commands (in pipeline order; 'enformer-transfer COMMAND --help' for its options):"]
    groups = [*COMMAND_GROUPS, ("more", tuple(n for n in helps if not any(n in g for _, g in COMMAND_GROUPS)))]
    for title, names in groups:
        present = [n for n in names if n in helps]
        if not present:
            continue
        lines.append(f"\n  {title}:")
        for name in present:
            lines.append(f"    {name:<14}{helps[name]}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="enformer-transfer", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"enformer-transfer {__version__}")
    _add_console(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of the commands below")

    def command(group, name: str, text: str) -> argparse.ArgumentParser:
        # no help= here: the top-level help lists the commands itself, grouped (_commands_help)
        return group.add_parser(name, description=text, formatter_class=HelpFormatter)

    for stage in STAGES:
        if stage.args != "own" and " " not in stage.command:  # the others: their own parsers, below
            _add_stage(sub, stage, command)

    p = command(sub, "check", BY_COMMAND["check"].help)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run directory")
    _add_console(p)
    p.set_defaults(func=cmd_check)

    p = command(sub, "run", "run every stage of a TOML config, in order, resuming")
    p.add_argument("config", type=Path, help="TOML run config (see examples/)")
    p.add_argument("--out", type=Path, help="run directory (default: the config's run_dir)")
    p.add_argument("--seed", type=int, default=argparse.SUPPRESS, help="random seed (default: 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="set any config key, e.g. --set train.batch_size=8 (TOML value syntax)")
    p.add_argument("--force", action="store_true", help="redo every stage")
    _add_console(p)
    _add_section_flags(p, ["geometry", "dataset", "embed"])
    p.set_defaults(func=cmd_run)

    p = command(sub, "demo", "generate synthetic data and run every stage on it (a few minutes on a CPU)")
    p.add_argument("--out", type=Path, default=Path("demo-run"), help="output folder")
    p.add_argument("--force", action="store_true", help="regenerate the data and redo every stage")
    _add_console(p)
    p.set_defaults(func=cmd_demo)

    p = command(sub, "fetch", "download BigWigs (URL list or UCSC trackDb) and write a targets table")
    p.add_argument("--urls", type=Path, help="a list of URLs, or a CSV/TSV with url, identifier and metadata columns")
    p.add_argument("--trackdb", help="a UCSC hub trackDb.txt (path or URL): bigDataUrl, labels, subGroups")
    p.add_argument("--metadata", type=Path, help="extra metadata (CSV/TSV) keyed by identifier, joined to the table")
    p.add_argument("--out", type=Path, required=True, help="output folder: bigwigs/, fetch.json and targets.tsv")
    p.add_argument("--allow-local-paths", action="store_true",
                   help="let a local trackDb or URL list name local BigWigs outside its own folder")
    _add_console(p)
    _add_section_flags(p, ["fetch", "targets"])
    p.set_defaults(func=cmd_fetch)

    p = command(sub, "pseudobulk", BY_COMMAND["pseudobulk"].help)
    p.add_argument("--fragments", nargs="+", required=True, metavar="[SAMPLE=]FILE",
                   help="fragment files (10x fragments.tsv.gz), sorted; SAMPLE=FILE names the sample of a file "
                        "(default: the file name up to its first '.')")
    p.add_argument("--cells", type=Path, required=True,
                   help="cells table (TSV/CSV): barcode, optional sample, one column per level")
    p.add_argument("--chrom-sizes", type=Path, help="chromosome sizes (chrom.sizes or .fai)")
    p.add_argument("--genome", type=Path, help="or the genome FASTA / 2bit, for its chromosome sizes")
    p.add_argument("--blacklist", type=Path, help="BED of regions whose insertions are dropped (and counted)")
    p.add_argument("--out", type=Path, required=True, help="output folder: bigwigs/, targets.tsv, qc.tsv, figures/")
    p.add_argument("--force", action="store_true", help="replace tracks made from other inputs or settings")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="set any config key, e.g. --set pseudobulk.min_cells=50 (TOML value syntax)")
    _add_console(p)
    _add_section_flags(p, ["pseudobulk", "targets"])
    p.set_defaults(func=cmd_pseudobulk)

    p = command(sub, "targets", "build (or --validate) a Basenji targets table from BigWigs and metadata")
    p.add_argument("--bigwigs", nargs="+", metavar="BW", help="BigWig files, one track each")
    p.add_argument("--bigwig-dir", nargs="+", metavar="DIR", help="folders of .bw / .bigWig files, one track each")
    p.add_argument("--metadata", type=Path, help="CSV/TSV keyed by identifier (file stem) or file: extra columns")
    p.add_argument("--out", type=Path, help="the targets table (TSV) to write")
    p.add_argument("--validate", type=Path, metavar="TABLE", help="only check an existing table")
    _add_console(p)
    _add_section_flags(p, ["targets"])
    p.set_defaults(func=cmd_targets)

    p = command(sub, "windows", "tile a genome into windows with whole-chromosome splits -> a windows BED")
    p.add_argument("--genome", type=Path, required=True, help="FASTA or 2bit")
    p.add_argument("--out", type=Path, required=True, help="windows BED to write")
    p.add_argument("--valid-chroms", nargs="*", default=[],
                   help="chromosomes of the valid split (default: drawn at random with --seed)")
    p.add_argument("--test-chroms", nargs="*", default=[],
                   help="chromosomes of the test split (default: drawn at random with --seed)")
    p.add_argument("--crop", type=int, default=None,
                   help="bp kept on each side of the target interval in each row (default: the whole input)")
    p.add_argument("--blacklist-bed", type=Path, help="skip windows mostly in these regions")
    p.add_argument("--seed", type=int, default=argparse.SUPPRESS,
                   help="random seed of the held-out chromosomes (default: 0)")
    _add_console(p)
    _add_section_flags(p, ["geometry"])
    p.set_defaults(func=cmd_windows)

    p = command(sub, "tfrecords", "Basenji TFRecords: export a run's dataset, or import one as a run")
    tsub = p.add_subparsers(dest="tfrecords_command", required=True, metavar="{export,import}")
    t = command(tsub, "export", "write a run's dataset as Basenji TFRecords (+ sequences.bed, statistics.json)")
    t.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run directory")
    t.add_argument("--out", type=Path, required=True, help="output folder")
    t.add_argument("--windows-per-file", type=int, default=256, help="records per .tfr file")
    t.add_argument("--base-indices", action="store_true", help="sequence as uint8 base indices, not bool one-hot")
    t.add_argument("--force", action="store_true", help="replace an existing output folder")
    _add_console(t)
    t.set_defaults(func=cmd_tfrecords_export)
    t = command(tsub, "import", BY_COMMAND["tfrecords import"].help)
    t.add_argument("folder", type=Path, metavar="BASENJI_DIR", help="the folder of the records")
    t.add_argument("--genome", type=Path, required=True, help="the genome the records were made from")
    t.add_argument("--out", type=Path, required=True, help="run directory")
    t.add_argument("--seq-length", type=int, default=None, help="model input length (default: 196,608)")
    t.add_argument("--chrom-aliases", choices=["none", "auto"], default="none",
                   help="auto: match chr1 to 1 and chrM to MT between the records and the genome")
    t.add_argument("--force", action="store_true", help="rebuild even if up to date")
    _add_console(t)
    t.set_defaults(func=cmd_tfrecords_import)

    from .backbone.families import FAMILIES

    p = command(sub, "backbone", "backbones: a random one of any family, what a folder holds, or pretrain a small one")
    bsub = p.add_subparsers(dest="backbone_command", required=True, metavar="{init,info,pretrain}")
    b = command(bsub, "init", "write a randomly initialised backbone in its published weights' format")
    b.add_argument("--kind", choices=list(FAMILIES), default="enformer", help="backbone family")
    b.add_argument("--preset", choices=["tiny", "full"], default="full",
                   help="tiny: small and fast on a CPU (tests, demos); full: the published architecture")
    b.add_argument("--out", type=Path, required=True, help="backbone folder to write")
    b.add_argument("--seed", type=int, default=0, help="random seed of the weights")
    g = b.add_argument_group("geometry (default: the preset's)")
    g.add_argument("--seq-length", type=int, help="input bp the backbone is built for (Borzoi: a multiple of 128; "
                   "AlphaGenome: of 2,048, its bins follow as seq_length / 128; Enformer: follows from --n-bins)")
    g.add_argument("--n-bins", "--target-length", dest="n_bins", type=int,
                   help="output bins per window (Enformer full: 896, tiny: 64; Borzoi full: 6,144, tiny: 96)")
    g.add_argument("--resolution", type=int, choices=[128, 1], help="AlphaGenome: the embeddings stored, 128-bp "
                   "(3,072 channels published) or 1-bp (datasets with --bin-size 1)")
    g.add_argument("--organism", choices=["human", "mouse"], help="AlphaGenome: the organism embedded (default human)")
    e = b.add_argument_group("model options (Enformer; Borzoi takes --dim --depth --heads --attn-dim-key too; "
                             "default: the preset's)")
    e.add_argument("--dim", type=int, help="model width (full: 1536, tiny: 48)")
    e.add_argument("--depth", type=int, help="transformer blocks (full: 11, tiny: 1)")
    e.add_argument("--heads", type=int, help="attention heads (full: 8, tiny: 2)")
    e.add_argument("--attn-dim-key", type=int, help="attention key size (full: 64, tiny: 16)")
    e.add_argument("--num-downsamples", type=int, help="bin size = 2 ** this (7: 128 bp)")
    e.add_argument("--human-tracks", type=int, help="tracks of the human output head (full: 5313, tiny: 8)")
    e.add_argument("--calibrate-batches", type=int,
                   help="batches of random DNA that set the BatchNorm statistics (0: none; default 2)")
    _add_console(b)
    b.set_defaults(func=cmd_backbone_init)
    b = command(bsub, "info", "what a backbone folder holds: kind, package, size, geometry, weights' sha256")
    b.add_argument("folder", type=Path, metavar="DIR", help="the backbone folder")
    b.add_argument("--json", action="store_true", help="print JSON instead of lines")
    _add_console(b)
    b.set_defaults(func=cmd_backbone_info)
    for stage in STAGES:
        if stage.command.startswith("backbone "):
            _add_stage(bsub, stage, command)

    parser.epilog = _commands_help(sub)
    return parser


def _log_file(args: argparse.Namespace) -> Path | None:
    """Where this command's log goes: the run directory it works on, when there is one."""
    run_dir = getattr(args, "run_dir", None)
    if args.command == "demo":
        from .pipeline import demo_run_dir

        run_dir = demo_run_dir(args.out)  # the log of every stage it runs: beside theirs, in its run
    elif args.command == "run":
        run_dir = args.out
        if run_dir is None:
            try:
                run_dir = load_config(args.config).run_dir
            except EnformerTransferError:
                run_dir = None  # the command itself says what is wrong
    elif args.command == "tfrecords" and args.tfrecords_command == "import":
        run_dir = args.out
    if run_dir is None:
        return None
    run_dir = Path(run_dir)
    creates = args.command in ("dataset", "demo", "run") or getattr(args, "tfrecords_command", None) == "import"
    if not run_dir.is_dir() and not creates:
        return None  # not a run directory: the command reports it
    return RunLayout(run_dir).log


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    words = [str(word) for word in (sys.argv[1:] if argv is None else argv)]
    setup_console(quiet=args.quiet and not args.verbose, verbose=args.verbose, log_file=_log_file(args))
    record = logging.getLogger(FILE_ONLY)
    record.info("enformer-transfer %s: %s", __version__, " ".join(words))
    try:
        with _stop_on_signals():
            status = args.func(args)
        record.info("finished: %s", args.command)
        return status
    except EnformerTransferError as err:
        log.debug("error: %s", err)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"error: {disk_full_error(err.filename or Path.cwd())}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        return _interrupted(words, stop.signum)
    except KeyboardInterrupt:  # SIGINT outside the command's main thread
        return _interrupted(words, signal.SIGINT)
    except SystemExit as stop:
        if type(stop).__name__ != "SIGTERMException":  # Lightning's, where our handler did not run
            raise
        return _interrupted(words, signal.SIGTERM)
    finally:
        teardown_console()


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def _stop_on_signals():
    """While a command runs, SIGTERM (a scheduler's time limit or preemption, ``kill``) and
    SIGINT (Ctrl+C) raise ``Interrupted`` in the main thread: stages stop where they are, as
    after any error, keeping their ``.partial`` folder, and the command exits 143 or 130.
    Lightning's own SIGTERM handler calls this one after its own (it then stops other ranks),
    instead of finishing the batch and raising its ``SIGTERMException``, which exits 0."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, _frame):
        for number in STOP_SIGNALS:  # a second signal ends the process at once
            signal.signal(number, signal.SIG_DFL)
        raise Interrupted(signum)

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            if handler is not None:
                signal.signal(number, handler)


def _interrupted(words: list[str], signum: int) -> int:
    """Say how to resume; 128 + the signal's number, as a shell reports a process it killed."""
    name = signal.Signals(signum).name
    logging.getLogger(FILE_ONLY).info("interrupted by %s", name)
    if is_primary_process():
        resume = shlex.join(["enformer-transfer", *(word for word in words if word != "--force")])
        print(f"interrupted by {name}: the work done so far is kept; to resume, run: {resume}",
              file=sys.stderr, flush=True)
    return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
