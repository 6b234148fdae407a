"""A newcomer's path without dead ends (issue 21): every piece of advice names a flag the command
has and works when followed; header lines, a run one level down, a misspelt head or level and a
missing first stage each get one clear line; every command prints its summary line."""

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from enformer_transfer import Run
from enformer_transfer.cli import build_parser, main
from enformer_transfer.config import Geometry
from enformer_transfer.data.targets_table import select_tracks
from enformer_transfer.errors import InputError
from enformer_transfer.finetune.train import track_change_lines
from enformer_transfer.genome.intervals import IntervalSet
from enformer_transfer.genome.windows import read_windows_bed
from enformer_transfer.interpret.regions import read_regions

ROOT = Path(__file__).resolve().parents[1]
LEVEL = ["--label-column", "subclass", "--tracks-where", "level == 'Subclass'"]
VCF_HEADER = ("##fileformat=VCFv4.2\n##contig=<ID=4>\n"
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")


@pytest.fixture(scope="module")
def run_copy(demo_run, tmp_path_factory):
    """The demo's run, copied: these commands write their stages (and logs) into it."""
    return shutil.copytree(demo_run, tmp_path_factory.mktemp("dead-ends") / "run",
                           ignore=shutil.ignore_patterns("report", "variants", "contributions", "called-dars",
                                                         "predictions"))


def _error(capsys, args) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def _follow_the_advice(capsys, args: list[str], *needles: str) -> str:
    """The command fails with one line whose advice is a flag of that very command; with the flag
    added it succeeds. Returns what it printed then."""
    err = _error(capsys, args)
    for needle in needles:
        assert needle in err, err
    advice = re.search(r"use (--[a-z-]+(?: [a-z]+)?)", err)
    assert advice, err
    fix = advice.group(1).split()
    build_parser().parse_args([*args, *fix])  # a flag the command has (argparse exits otherwise)
    assert main([*args, *fix]) == 0
    return capsys.readouterr().out


def _bare(chrom: str) -> str:
    return chrom.removeprefix("chr")


# --- chromosome names: the run's rule or the command's own --chrom-aliases --------------------------

def test_variants_with_bare_chromosome_names_follow_the_advice(run_copy, tmp_path, capsys):
    genome = Run(run_copy).genome()
    base = genome.fetch("chr4", 119_999, 120_000)
    other = "A" if base != "A" else "C"
    vcf = tmp_path / "bare.vcf"
    vcf.write_text(VCF_HEADER + f"4\t120000\t.\t{base}\t{other}\t.\t.\t.\n")
    out = _follow_the_advice(capsys, ["variants", str(run_copy), "--vcf", str(vcf), "--out", str(tmp_path / "v"),
                                      "--quiet"],
                             "line 4: the genome has no chromosome 4", "chr1", "--chrom-aliases auto")
    assert out.startswith("variants: 1 variants x 12 tracks"), out
    scores = pd.read_csv(tmp_path / "v" / "scores.tsv", sep="\t")
    assert set(scores["chrom"].astype(str)) == {"4"}  # the VCF's name; the sequence is the genome's chr4


def test_predict_names_the_genome_chromosomes_and_its_final_folder(run_copy, tmp_path, capsys):
    bed = tmp_path / "bare.bed"
    bed.write_text("chrom\tstart\tend\n4\t20000\t30000\n")  # a header line, and a bare name
    out_dir = tmp_path / "predictions"
    printed = _follow_the_advice(
        capsys, ["predict", str(run_copy), "--head", "default", "--regions", str(bed), "--out", str(out_dir),
                 "--quiet"],
        "has no chromosome 4 (it has: chr1, chr2, chr3, chr4)", "--chrom-aliases auto")
    lines = printed.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("predict: head 'default', 12 BigWigs"), printed
    assert lines[0].endswith(f"-> {out_dir}") and ".partial" not in lines[0]
    import pybigtools

    bigwig = next(out_dir.glob("*.bw"))
    assert list(pybigtools.open(str(bigwig)).chroms()) == ["chr4"]  # named as the genome names it


def test_call_dars_peaks_with_bare_names(run_copy, tmp_path, capsys):
    windows = Run(run_copy).windows("train")
    peaks = tmp_path / "peaks.bed"
    peaks.write_text("".join(f"{_bare(w.chrom)}\t{w.start + 1000}\t{w.start + 1600}\n"
                             for w in windows.head(8).itertuples()))
    printed = _follow_the_advice(capsys, ["call-dars", str(run_copy), *LEVEL, "--peaks", str(peaks), "--name", "bare",
                                          "--min-log2-fold-change", "0", "--quiet"],
                                 "the run's dataset has no chromosome", "--chrom-aliases auto")
    assert printed.startswith("call-dars:"), printed


def test_dar_table_with_bare_names(run_copy, demo_run, tmp_path, capsys):
    table = pd.read_csv(demo_run.parent / "data" / "dar_subclass.csv")
    table["region"] = table["region"].map(_bare)
    bare = tmp_path / "dar_bare.csv"
    table.to_csv(bare, index=False)
    printed = _follow_the_advice(capsys, ["dar", str(run_copy), "--head", "default", "--regions", str(bare),
                                          *LEVEL, "--permutations", "0", "--bootstrap", "0", "--force", "--quiet"],
                                 "the run's dataset has no chromosome", "--chrom-aliases auto")
    assert printed.startswith("dar:"), printed


def test_contributions_regions_with_bare_names(run_copy, tmp_path, capsys):
    bed = tmp_path / "one.bed"
    bed.write_text("4\t20000\t20200\tsite\n")
    printed = _follow_the_advice(capsys, ["contributions", str(run_copy), "--head", "default", "--regions", str(bed),
                                          "--tracks-where", "level == 'Class'", "--name", "bare", "--no-bigwigs",
                                          "--plot-regions", "site", "--quiet"],
                                 "one.bed row 1: the genome has no chromosome 4", "--chrom-aliases auto")
    assert printed.startswith("contributions:"), printed
    assert Run(run_copy).contributions("bare").regions["chrom"].tolist() == ["chr4"]


# --- header lines -----------------------------------------------------------------------------------

def test_header_lines_are_skipped_in_every_bed_reader(tmp_path):
    bed = tmp_path / "regions.bed"
    bed.write_text("track name=x\nchrom\tstart\tend\nchr1\t10\t20\n")
    assert IntervalSet.from_bed(bed).regions["chr1"].tolist() == [[10, 20]]
    assert read_regions(bed)[["chrom", "start", "end"]].values.tolist() == [["chr1", 10, 20]]
    ucsc = tmp_path / "ucsc.bed"
    ucsc.write_text("#chrom chromStart chromEnd\nchr1 10 20 a\n")
    assert read_regions(ucsc)["name"].tolist() == ["a"]
    geometry = Geometry(seq_length=1024, bin_size=8, n_bins=64)
    windows = tmp_path / "windows.bed"
    windows.write_text("chrom\tstart\tend\tsplit\nchr1\t0\t512\ttrain\n")
    assert read_windows_bed(windows, geometry).table["chrom"].tolist() == ["chr1"]
    late = tmp_path / "late.bed"
    late.write_text("chr1\t10\t20\nchrom\tstart\tend\n")
    with pytest.raises(InputError, match=r"row 2: .*\(a header line: one is allowed only before the first row"):
        IntervalSet.from_bed(late)


# --- the run one level down, a misspelt head, the first missing stage ----------------------------------

def test_a_folder_holding_the_run_names_it(tmp_path, capsys):
    out = tmp_path / "demo-run"
    (out / "run" / "dataset").mkdir(parents=True)
    (out / "run" / "config.toml").write_text("")
    (out / "data").mkdir()
    for command in (["evaluate", str(out)], ["train", str(out), "--head", "x"]):
        err = _error(capsys, command)
        assert f"{out} is not a run directory; it holds a run one level down: give {out / 'run'}" in err, err
        assert "train" not in err.split("give")[1]


def test_train_before_dataset_points_at_dataset(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for command in (["train", str(empty)], ["evaluate", str(empty)], ["predict", str(empty), "--chroms", "chr1"]):
        err = _error(capsys, command)
        assert f"has no finished dataset stage yet; run 'enformer-transfer dataset ... --out {empty}' first" in err


def test_a_misspelt_head_gets_one_piece_of_advice(run_copy, capsys):
    err = _error(capsys, ["evaluate", str(run_copy), "--head", "defualt"])
    assert "no trained head 'defualt' (did you mean 'default'?)" in err and "enformer-transfer train" not in err, err


def test_tracks_where_matching_nothing_lists_the_values(run_copy, capsys):
    err = _error(capsys, ["train", str(run_copy), "--head", "x", "--tracks-where", "level == 'subclass'"])
    assert "matches no track; level has: Class, Subclass, cluster (did you mean 'Subclass'?)" in err, err
    tracks = pd.DataFrame({"identifier": ["a", "b"], "level": ["Class", "Subclass"], "subclass": ["", "Sst"]})
    with pytest.raises(InputError, match=r"subclass has: Sst \(did you mean 'Sst'\?\)"):
        select_tracks(tracks, "level == 'Subclass' and subclass == 'sst'")


# --- the console as documented -----------------------------------------------------------------------

def test_dataset_prints_its_summary_even_quiet(synthetic, tmp_path, capsys):
    windows = tmp_path / "windows.bed"
    windows.write_text("chrom\tstart\tend\tsplit\n" + Path(synthetic.windows).read_text())
    run = tmp_path / "run"
    assert main(["dataset", "--out", str(run), "--quiet", "--workers", "1", "--seq-length", "16384", "--n-bins", "64",
                 "--genome", str(synthetic.genome), "--targets", str(synthetic.targets),
                 "--windows", str(windows)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and re.match(r"dataset: \d+ windows x 64 bins x \d+ tracks \(train \d+", lines[0]), lines
    assert lines[0].endswith(f"-> {run / 'dataset'}")


def test_finetune_prints_the_change_per_track():
    change = [{"identifier": f"t{i}", "frozen": 0.5, "finetuned": 0.5 + i / 100, "change": i / 100} for i in range(3)]
    lines = track_change_lines(change, Path("x.json"))
    assert lines[0].split() == ["finetune:", "track", "frozen", "fine-tuned", "change"]
    assert lines[3].split() == ["finetune:", "t2", "0.500", "0.520", "+0.020"] and len(lines) == 4
    many = [{**row, "identifier": f"t{i}", "change": i / 100} for i, row in enumerate(change * 10)]
    lines = track_change_lines(many, Path("x.json"))
    assert len(lines) == 14 and "all in x.json" in lines[-1]


def test_the_demo_logs_into_its_run(tmp_path):
    from enformer_transfer.cli import _log_file

    args = build_parser().parse_args(["demo", "--out", str(tmp_path / "demo-run")])
    assert _log_file(args) == tmp_path / "demo-run" / "run" / "enformer-transfer.log"


def test_readme_commands_after_the_install_activate_the_environment():
    readme = (ROOT / "README.md").read_text()
    activate = readme.index("source .venv/bin/activate")
    first_bare = min(m.start() for m in re.finditer(r"^enformer-transfer ", readme, re.M))
    assert activate < first_bare
    assert "demo-run/run" in readme
