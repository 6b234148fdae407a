"""The command line explains itself: every option's help and default, commands grouped in
pipeline order, and "did you mean" for near misses."""

import argparse

import pandas as pd
import pytest

from enformer_transfer.cli import COMMAND_GROUPS, build_parser, main
from enformer_transfer.data.targets_table import select_tracks
from enformer_transfer.errors import InputError, did_you_mean
from enformer_transfer.evaluation.dar import read_dar_table


def _parsers(parser: argparse.ArgumentParser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def test_every_option_says_what_it_does():
    missing = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            if not action.help:
                missing.append(f"{' '.join(path)} {action.option_strings or action.dest}")
    assert missing == []


def test_help_shows_defaults(capsys):
    for argv, expected in ((["train", "--help"], ["(default: default)", "(default: auto)", "(default: linear)"]),
                           (["backbone", "init", "--help"], ["(default: full)", "(default: enformer)", "full: 1536", "full: 896"]),
                           (["tfrecords", "export", "--help"], ["(default: 256)"]),
                           (["demo", "--help"], ["(default: demo-run)"]),
                           (["embed", "--help"], ["(default: "])):
        with pytest.raises(SystemExit):
            main(argv)
        text = " ".join(capsys.readouterr().out.split())
        for piece in expected:
            assert piece in text, (argv, piece)


def test_top_level_help_lists_commands_grouped_in_pipeline_order(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "thin" not in text and "one library call" not in text
    present = [name for _, names in COMMAND_GROUPS for name in names if f"\n    {name} " in text]
    positions = [text.index(f"\n    {name} ") for name in present]
    assert positions == sorted(positions)
    for required in ("fetch", "targets", "windows", "dataset", "tfrecords", "backbone", "embed", "train",
                     "finetune", "evaluate", "report", "predict", "weights", "dar", "variants", "run", "demo"):
        assert required in present
    for title in ("data:", "model:", "results:", "all at once:"):
        assert f"  {title}" in text


def test_quiet_and_verbose_before_or_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["--quiet", "check", "x"]).quiet
    assert parser.parse_args(["check", "x", "--quiet"]).quiet
    assert parser.parse_args(["-v", "check", "x"]).verbose and not parser.parse_args(["check", "x"]).quiet


def test_did_you_mean():
    assert did_you_mean("defualt", ["default", "ridge"]) == " (did you mean 'default'?)"
    assert did_you_mean("class", ["Class", "level"]) == " (did you mean 'Class'?)"
    assert did_you_mean("zzz", ["default"]) == ""


def test_config_key_near_miss(tmp_path, capsys):
    assert main(["train", str(tmp_path), "--set", "train.batch_sise=8"]) == 2
    assert "did you mean 'batch_size'?" in capsys.readouterr().err
    assert main(["train", str(tmp_path), "--set", "trian.batch_size=8"]) == 2
    assert "did you mean 'train'?" in capsys.readouterr().err
    config = tmp_path / "run.toml"
    config.write_text("[embed]\nbatch_sizee = 2\n")
    assert main(["embed", str(tmp_path), "--config", str(config)]) == 2
    assert "did you mean 'batch_size'?" in capsys.readouterr().err


def test_tracks_where_column_near_miss():
    tracks = pd.DataFrame({"identifier": ["a", "b"], "level": ["Class", "Subclass"]})
    with pytest.raises(InputError, match=r"did you mean 'level'\?"):
        select_tracks(tracks, "levle == 'Class'")


def test_label_column_near_miss(tmp_path):
    table = tmp_path / "dar.tsv"
    table.write_text("region\tsubclass\nchr1:100-200\tL2\n")
    with pytest.raises(InputError, match=r"did you mean 'subclass'\?"):
        read_dar_table(table, "subclas")


def test_head_name_near_miss(demo_run, tmp_path, capsys):
    assert main(["evaluate", str(demo_run), "--head", "defualt", "--quiet"]) == 2
    assert "did you mean 'default'?" in capsys.readouterr().err
    assert main(["dar", str(demo_run), "--head", "default", "--regions", str(tmp_path / "x.tsv"),
                 "--label-column", "subclas", "--quiet"]) == 2
    assert "did you mean 'subclass'?" in capsys.readouterr().err
    assert main(["report", str(demo_run), "--heads", "defualt", "--quiet"]) == 2
    assert "did you mean 'default'?" in capsys.readouterr().err
