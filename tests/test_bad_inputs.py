"""Every bad input: a clear one-line error naming the file/row and the fix, exit 2, nothing written."""

import shutil

import pandas as pd
import pytest

from enformer_transfer.cli import main


def _args(data, run, **over):
    paths = {"genome": data.genome, "targets": data.targets, "windows": data.windows}
    paths.update(over)
    args = ["dataset", "--out", str(run), "--quiet", "--workers", "1", "--seq-length", "16384", "--n-bins", "64"]
    for key, value in paths.items():
        if value is not None:
            args += [f"--{key}", str(value)]
    return args


def _fails(capsys, args, *needles):
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(line) == 1, err
    for needle in needles:
        assert needle in line[0], line[0]
    return line[0]


def _nothing_written(run):
    assert not (run / "dataset").exists()
    assert not (run / "dataset.partial").exists()


def _table(data, tmp_path, edit):
    df = pd.read_csv(data.targets, sep="\t", dtype=str, keep_default_na=False)
    df = edit(df)
    path = tmp_path / "targets.tsv"
    df.to_csv(path, sep="\t", index=False)
    return path


def test_missing_bigwig(synthetic, tmp_path, capsys):
    table = _table(synthetic, tmp_path, lambda d: d.assign(file=d["file"].where(d.index != 3, "/nope/x.bw")))
    _fails(capsys, _args(synthetic, tmp_path / "run", targets=table), "targets.tsv row 5", "/nope/x.bw", "not found")
    _nothing_written(tmp_path / "run")


def test_not_a_bigwig(synthetic, tmp_path, capsys):
    fake = tmp_path / "fake.bw"
    fake.write_text("chr1\t0\t10\t1.0\n")
    table = _table(synthetic, tmp_path, lambda d: d.assign(file=d["file"].where(d.index != 0, str(fake))))
    _fails(capsys, _args(synthetic, tmp_path / "run", targets=table), "row 2", "is not a BigWig")
    _nothing_written(tmp_path / "run")


def test_duplicate_identifiers(synthetic, tmp_path, capsys):
    table = _table(synthetic, tmp_path, lambda d: d.assign(identifier=d["identifier"].where(d.index != 4, d["identifier"][1])))
    _fails(capsys, _args(synthetic, tmp_path / "run", targets=table), "row 6", "duplicate track identifier", "row 3")


@pytest.mark.parametrize("stat,needle", [("median", "broken in Basenji"), ("mode", "not supported")])
def test_unknown_sum_stat(synthetic, tmp_path, capsys, stat, needle):
    table = _table(synthetic, tmp_path, lambda d: d.assign(sum_stat=d["sum_stat"].where(d.index != 2, stat)))
    msg = _fails(capsys, _args(synthetic, tmp_path / "run", targets=table), "row 4", needle)
    assert "mean, sum, max" in msg  # names the fix


def test_missing_columns(synthetic, tmp_path, capsys):
    table = _table(synthetic, tmp_path, lambda d: d.drop(columns=["scale", "sum_stat"]))
    _fails(capsys, _args(synthetic, tmp_path / "run", targets=table), "missing required column(s) scale, sum_stat")


def test_empty_windows(synthetic, tmp_path, capsys):
    bed = tmp_path / "windows.bed"
    bed.write_text("# nothing here\n")
    _fails(capsys, _args(synthetic, tmp_path / "run", windows=bed), "windows.bed", "no windows")
    _nothing_written(tmp_path / "run")


def test_window_shorter_than_target(synthetic, tmp_path, capsys):
    bed = tmp_path / "windows.bed"
    bed.write_text("chr1\t20000\t36384\ttrain\nchr1\t40000\t41000\ttrain\n")
    _fails(capsys, _args(synthetic, tmp_path / "run", windows=bed), "windows.bed row 2", "shorter than the target interval")


def test_window_odd_excess(synthetic, tmp_path, capsys):
    bed = tmp_path / "windows.bed"
    bed.write_text("chr1\t20000\t28193\ttrain\n")
    _fails(capsys, _args(synthetic, tmp_path / "run", windows=bed), "row 1", "odd number")


def test_window_beyond_chrom_end(synthetic, tmp_path, capsys, caplog):
    bed = tmp_path / "windows.bed"
    bed.write_text("chr1\t20000\t36384\ttrain\nchr2\t190000\t206384\ttest\n")
    base = _args(synthetic, tmp_path / "run", windows=bed)
    _fails(capsys, base + ["--beyond-chrom-end", "error"], "windows.bed row 2", "beyond the chromosome", "--beyond-chrom-end pad")
    _nothing_written(tmp_path / "run")
    assert main(base + ["--beyond-chrom-end", "pad"]) == 0  # pad: warn and go on
    assert "will be padded" in caplog.text


def test_bigwig_lacking_a_chromosome(synthetic, tmp_path, capsys):
    genome = tmp_path / "genome.fa"
    shutil.copy(synthetic.genome, genome)
    with open(genome, "a") as handle:
        handle.write(">chr9\n" + "ACGT" * 10000 + "\n")
    bed = tmp_path / "windows.bed"
    bed.write_text("chr1\t20000\t36384\ttrain\nchr9\t1000\t17384\ttest\n")
    args = _args(synthetic, tmp_path / "run", windows=bed, genome=genome)
    _fails(capsys, args, "BigWig", "has no chromosome chr9", "--allow-missing-chroms")
    _nothing_written(tmp_path / "run")
    assert main(args + ["--allow-missing-chroms"]) == 0


def test_chromosome_naming_mismatch(synthetic, tmp_path, capsys):
    bed = tmp_path / "windows.bed"
    bed.write_text("1\t20000\t36384\ttrain\n")
    args = _args(synthetic, tmp_path / "run", windows=bed)
    _fails(capsys, args, "genome", "has no chromosome 1", "--chrom-aliases auto")
    assert main(args + ["--chrom-aliases", "auto"]) == 0


def test_windows_overlapping_across_splits_warn(synthetic, tmp_path, caplog):
    bed = tmp_path / "windows.bed"
    bed.write_text("chr1\t20000\t36384\ttrain\nchr1\t26000\t42384\ttest\n")
    args = _args(synthetic, tmp_path / "run", windows=bed)
    assert main(args) == 0
    assert "overlap windows of another split (leakage)" in caplog.text


def test_not_enough_disk_space(synthetic, tmp_path, capsys):
    args = _args(synthetic, tmp_path / "run") + ["--free-space-limit", "1000"]
    _fails(capsys, args, "not enough disk space", "GB free")
    _nothing_written(tmp_path / "run")


def test_missing_required_input(tmp_path, capsys):
    _fails(capsys, ["dataset", "--out", str(tmp_path / "run"), "--genome", "g.fa"], "no targets given", "--targets")


def test_bad_geometry(synthetic, tmp_path, capsys):
    _fails(capsys, _args(synthetic, tmp_path / "run") + ["--seq-length", "1000"], "seq_length", "even number")
