"""pseudobulk: coverage equal to a plain NumPy computation written here (both counting modes,
shifts clipped at chromosome ends, samples with clashing barcodes, every normalisation, bins),
bad inputs, resume after a kill, and the output read by `dataset` as it is."""

import gzip
import logging
import subprocess
import sys

import numpy as np
import pandas as pd
import pybigtools
import pytest
from _kill import kill_when

from enformer_transfer import InputError, StaleStageError, pseudobulk, read_targets_table
from enformer_transfer.cli import main
from enformer_transfer.config import PseudobulkConfig

SIZES = {"chrA": 1000, "chrB": 600, "chrC": 50}
BLACKLIST = [("chrA", 300, 340), ("chrB", 0, 20)]
LEVELS = ["class", "subclass"]


def _cells() -> pd.DataFrame:
    """Two samples whose barcodes clash: AAA is an N1 cell in s1 but a G1 cell in s2."""
    rows = [("AAA", "s1", "Neuron", "N1"), ("CCC", "s1", "Neuron", "N2"), ("GGG", "s1", "Glia", "G1"),
            ("TTT", "s1", "Neuron", "N1"), ("AAA", "s2", "Glia", "G1"), ("CCC", "s2", "Neuron", "N1"),
            ("GGG", "s2", "Glia", ""), ("ACG", "s2", "Neuron", "N2")]
    return pd.DataFrame(rows, columns=["barcode", "sample", "class", "subclass"])


def _fragments(seed: int) -> list[tuple]:
    """Sorted fragments, some at the chromosome ends, some of unknown barcodes, some long."""
    rng = np.random.default_rng(seed)
    rows = []
    for chrom, size in SIZES.items():
        n = max(5, size // 8)
        starts = rng.integers(0, size - 2, n)
        lengths = rng.integers(1, 160, n)
        for s, length in zip(starts, lengths, strict=True):
            rows.append((chrom, int(s), int(min(size, s + length)), str(rng.choice(["AAA", "CCC", "GGG", "TTT", "ACG",
                                                                                    "NOPE"])), int(rng.integers(1, 4))))
        rows += [(chrom, 0, 3, "AAA", 1), (chrom, 1, 9, "CCC", 2), (chrom, size - 3, size, "AAA", 1),
                 (chrom, size - 9, size, "GGG", 3)]
    order = {c: i for i, c in enumerate(SIZES)}
    return sorted(rows, key=lambda r: (order[r[0]], r[1]))


def _write_fragments(path, rows, header=True):
    with gzip.open(path, "wt") as handle:
        if header:
            handle.write("# id=test\n# another comment\n")
        for row in rows:
            handle.write("\t".join(map(str, row)) + "\n")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pb-inputs")
    cells = folder / "cells.tsv"
    _cells().to_csv(cells, sep="\t", index=False)
    sizes = folder / "chrom.sizes"
    sizes.write_text("".join(f"{c}\t{s}\n" for c, s in SIZES.items()))
    blacklist = folder / "blacklist.bed"
    blacklist.write_text("".join(f"{c}\t{a}\t{b}\n" for c, a, b in BLACKLIST))
    files = {"s1": _write_fragments(folder / "s1.fragments.tsv.gz", _fragments(1)),
             "s2": _write_fragments(folder / "s2.fragments.tsv.gz", _fragments(2))}
    return {"cells": cells, "sizes": sizes, "blacklist": blacklist, "files": files, "folder": folder}


# --- the oracle: one group, one base at a time --------------------------------------------------

def _expected(inputs, level, label, s: PseudobulkConfig, blacklist: bool) -> dict[str, np.ndarray]:
    cells = _cells()
    members = set(zip(cells["sample"][cells[level] == label], cells["barcode"][cells[level] == label], strict=True))
    regions = BLACKLIST if blacklist else []

    def in_blacklist(chrom, position):
        return any(c == chrom and a <= position < b for c, a, b in regions)

    coverage = {c: np.zeros(n) for c, n in SIZES.items()}
    counted = span = 0
    for sample in inputs["files"]:
        for chrom, start, end, barcode, reads in _fragments(int(sample[1])):
            if (sample, barcode) not in members:
                continue
            if end - start < s.min_fragment_length or (s.max_fragment_length and end - start > s.max_fragment_length):
                continue
            weight = reads if s.duplicates == "reads" else 1
            size = SIZES[chrom]
            first, last = start + s.shift[0], end + s.shift[1]
            if s.count == "insertions":
                for position in (min(max(first, 0), size - 1), min(max(last - 1, 0), size - 1)):
                    if not in_blacklist(chrom, position):
                        coverage[chrom][position] += weight
                        counted += weight
            else:
                first, last = min(max(first, 0), size), min(max(last, 0), size)
                if last <= first or in_blacklist(chrom, first) or in_blacklist(chrom, last - 1):
                    continue
                coverage[chrom][first:last] += weight
                counted += weight
                span += weight * (last - first)
    if s.count == "fragments":
        for c, a, b in regions:
            coverage[c][a:b] = 0
    genome = s.effective_genome_size or sum(SIZES.values()) - sum(b - a for _, a, b in regions)
    factor = {"none": 1.0, "cpm": 1e6 / counted,
              "rpgc": genome / (counted if s.count == "insertions" else span)}[s.normalization]
    out = {}
    for chrom, values in coverage.items():
        values = values * factor
        if s.bin_size > 1:
            values = np.concatenate([np.full(len(values[i:i + s.bin_size]), values[i:i + s.bin_size].mean())
                                     for i in range(0, len(values), s.bin_size)])
        out[chrom] = values
    return out


def _read_bigwig(path) -> dict[str, np.ndarray]:
    bw = pybigtools.open(str(path))
    assert bw.chroms() == SIZES  # every chromosome, in the sizes' order
    return {c: np.asarray(bw.values(c, 0, n, fillna=None)) for c, n in SIZES.items()}  # NaN: a base not written


CASES = [
    dict(),
    dict(count="fragments"),
    dict(normalization="none", shift=[4, -5]),
    dict(normalization="rpgc", shift=[-6, 7]),
    dict(count="fragments", normalization="rpgc", shift=[-3, 9], effective_genome_size=5000),
    dict(normalization="none", bin_size=7, duplicates="reads"),
    dict(count="fragments", normalization="cpm", bin_size=16, min_fragment_length=20, max_fragment_length=120),
    dict(count="fragments", normalization="none", duplicates="reads", shift=[4, -5], bin_size=3),
]


@pytest.mark.parametrize(("case", "blacklist"), [(c, True) for c in CASES] + [(c, False) for c in CASES[:3]],
                         ids=lambda v: (",".join(f"{k}={x}" for k, x in v.items()) or "defaults") if isinstance(v, dict)
                         else "blacklist" if v else "no-blacklist")
def test_coverage_equals_a_numpy_computation(inputs, tmp_path, case, blacklist):
    settings = PseudobulkConfig(min_cells=1, workers=1, **case)
    out = tmp_path / "coverage"
    files = [f"{s}={p}" for s, p in inputs["files"].items()]
    targets = pseudobulk(out, files, inputs["cells"], chrom_sizes=inputs["sizes"],
                         blacklist=inputs["blacklist"] if blacklist else None, settings=settings, progress=False)
    table = read_targets_table(targets)
    assert set(table["identifier"]) == {"Glia", "Neuron", "G1", "N1", "N2"}
    for row in table.itertuples():
        expected = _expected(inputs, row.level, row.identifier, settings, blacklist)
        got = _read_bigwig(row.file)
        for chrom in SIZES:
            np.testing.assert_allclose(got[chrom], expected[chrom], rtol=2e-6, atol=1e-6,
                                       err_msg=f"{row.identifier} {chrom}")
    qc = pd.read_csv(out / "qc.tsv", sep="\t")
    assert (qc["fraction_blacklist"] > 0).any() == blacklist


def test_targets_table_carries_levels_and_counts(inputs, tmp_path):
    out = tmp_path / "coverage"
    files = [str(p) for p in inputs["files"].values()]  # samples from the file names
    pseudobulk(out, files, inputs["cells"], chrom_sizes=inputs["sizes"], settings=PseudobulkConfig(min_cells=1, workers=1),
               progress=False)
    table = read_targets_table(out / "targets.tsv").set_index("identifier")
    assert table.loc["N1", "level"] == "subclass" and table.loc["N1", "class"] == "Neuron"
    assert table.loc["Neuron", "subclass"] == "" and table.loc["Neuron", "level"] == "class"
    assert table.loc["N1", "cells"] == "3" and table.loc["Glia", "cells"] == "3"
    assert int(table.loc["Neuron", "fragments"]) == int(table.loc["N1", "fragments"]) + int(table.loc["N2", "fragments"])
    assert table.loc["N1", "clip"] == 32 and table.loc["N1", "scale"] == 2  # the study's transform
    assert (out / "figures" / "pseudobulk_qc.png").is_file() and (out / "figures" / "index.json").is_file()
    assert not (out / "pseudobulk.partial").exists()


def test_min_cells_lists_and_leaves_out_small_groups(inputs, tmp_path, caplog):
    out = tmp_path / "coverage"
    with caplog.at_level(logging.WARNING, "enformer_transfer"):
        pseudobulk(out, [f"{s}={p}" for s, p in inputs["files"].items()], inputs["cells"],
                   chrom_sizes=inputs["sizes"], settings=PseudobulkConfig(min_cells=3, workers=1), progress=False)
    assert "fewer than 3 cells" in caplog.text and "N2" in caplog.text
    qc = pd.read_csv(out / "qc.tsv", sep="\t", keep_default_na=False).set_index("identifier")
    assert qc.loc["N2", "status"].startswith("left out") and qc.loc["N1", "status"] == "written"
    assert not (out / "bigwigs" / "N2.bw").exists()
    assert qc.loc["G1", "status"].startswith("left out") and qc.loc["G1", "cells"] == 2
    assert set(read_targets_table(out / "targets.tsv")["identifier"]) == {"Glia", "Neuron", "N1"}
    assert "absent from the cells table" in caplog.text  # the NOPE barcode, counted


def test_rerun_is_up_to_date_other_settings_refused_force_replaces(inputs, tmp_path):
    out = tmp_path / "coverage"
    files = [f"{s}={p}" for s, p in inputs["files"].items()]
    args = (out, files, inputs["cells"])
    pseudobulk(*args, chrom_sizes=inputs["sizes"], settings=PseudobulkConfig(min_cells=1, workers=1), progress=False)
    stamp = (out / "bigwigs" / "N1.bw").stat().st_mtime_ns
    pseudobulk(*args, chrom_sizes=inputs["sizes"], settings=PseudobulkConfig(min_cells=1, workers=3), progress=False)
    assert (out / "bigwigs" / "N1.bw").stat().st_mtime_ns == stamp
    with pytest.raises(StaleStageError, match="settings"):
        pseudobulk(*args, chrom_sizes=inputs["sizes"], settings=PseudobulkConfig(min_cells=1, bin_size=10, workers=1),
                   progress=False)
    pseudobulk(*args, chrom_sizes=inputs["sizes"], settings=PseudobulkConfig(min_cells=1, bin_size=10, workers=1),
               force=True, progress=False)
    assert (out / "bigwigs" / "N1.bw").stat().st_mtime_ns != stamp


# --- bad inputs: one-line errors, nothing half-written ---------------------------------------------

def _run_cli(inputs, out, fragments, cells=None, extra=()):
    return main(["pseudobulk", "--fragments", *map(str, fragments), "--cells", str(cells or inputs["cells"]),
                 "--chrom-sizes", str(inputs["sizes"]), "--out", str(out), "--min-cells", "1", "--workers", "1", "--quiet", *extra])


def _assert_nothing_written(out):
    assert not (out / "targets.tsv").exists() and not (out / "pseudobulk.json").exists()


def test_unsorted_fragments_are_refused(inputs, tmp_path, capsys):
    rows = _fragments(1)
    rows[5], rows[6] = rows[6], rows[5]
    if rows[5][1] == rows[6][1]:
        rows[5] = (rows[5][0], rows[5][1] + 1, rows[5][2] + 1, *rows[5][3:])
    bad = _write_fragments(tmp_path / "s1.bad.tsv.gz", rows)
    assert _run_cli(inputs, tmp_path / "out", [f"s1={bad}"]) == 2
    err = capsys.readouterr().err
    assert "not sorted" in err and "line 9" in err and len(err.strip().splitlines()) == 1
    _assert_nothing_written(tmp_path / "out")

    again = _fragments(1) + [("chrA", 5, 9, "AAA", 1)]
    bad = _write_fragments(tmp_path / "s1.again.tsv.gz", again)
    assert _run_cli(inputs, tmp_path / "out2", [f"s1={bad}"]) == 2
    assert "chromosome 'chrA' appears again" in capsys.readouterr().err


def test_a_barcode_in_two_groups_of_one_level_names_the_rows(inputs, tmp_path, capsys):
    cells = _cells()
    cells.loc[len(cells)] = ["TTT", "s1", "Neuron", "N2"]
    path = tmp_path / "cells.tsv"
    cells.to_csv(path, sep="\t", index=False)
    assert _run_cli(inputs, tmp_path / "out", [f"s1={inputs['files']['s1']}"], cells=path) == 2
    err = capsys.readouterr().err
    assert "rows 5 and 10" in err and "'TTT'" in err and "'N1' and 'N2'" in err
    _assert_nothing_written(tmp_path / "out")


def test_chromosome_names_with_another_prefix_get_the_alias_hint(inputs, tmp_path, capsys):
    rows = [(c.replace("chr", ""), *rest) for c, *rest in _fragments(1)]
    bad = _write_fragments(tmp_path / "s1.nochr.tsv.gz", rows)
    sizes = tmp_path / "sizes"
    sizes.write_text("A\t1000\nB\t600\nC\t50\n")
    cli = ["pseudobulk", "--fragments", f"s1={bad}", "--cells", str(inputs["cells"]), "--out", str(tmp_path / "o"),
           "--min-cells", "1", "--workers", "1", "--quiet"]
    assert main([*cli, "--chrom-sizes", str(inputs["sizes"])]) == 2
    assert "--chrom-aliases auto" in capsys.readouterr().err
    assert main([*cli, "--chrom-sizes", str(sizes)]) == 0  # same names: fine


def test_unknown_chromosomes_and_barcodes_are_counted_warnings(inputs, tmp_path, caplog):
    rows = _fragments(1) + [("chrUn_x", 10, 90, "AAA", 1), ("chrUn_x", 20, 90, "ZZZ", 1)]
    path = _write_fragments(tmp_path / "s1.extra.tsv.gz", rows)
    with caplog.at_level(logging.WARNING, "enformer_transfer"):
        pseudobulk(tmp_path / "out", [f"s1={path}"], inputs["cells"], chrom_sizes=inputs["sizes"],
                   settings=PseudobulkConfig(min_cells=1, workers=1), progress=False)
    unknown = sum(1 for r in _fragments(1) if r[3] not in ("AAA", "CCC", "GGG", "TTT"))
    assert "2 fragment(s) on 1 chromosome(s) absent from" in caplog.text and "chrUn_x" in caplog.text
    assert f"{unknown} fragment(s) of " in caplog.text


def test_which_sample_a_file_is(inputs, tmp_path, capsys):
    other = tmp_path / "fragments.tsv.gz"
    other.write_bytes(inputs["files"]["s1"].read_bytes())
    assert _run_cli(inputs, tmp_path / "out", [other]) == 2
    assert "give it as SAMPLE=" in capsys.readouterr().err
    assert _run_cli(inputs, tmp_path / "out", [f"s9={other}"]) == 2
    assert "sample 's9' is not in" in capsys.readouterr().err
    assert _run_cli(inputs, tmp_path / "out", [f"s1={other}", f"s1={other}"]) == 2
    assert "given twice" in capsys.readouterr().err
    with pytest.raises(InputError, match="no fragment has a barcode"):
        pseudobulk(tmp_path / "o", [f"s1={_write_fragments(tmp_path / 'x.gz', [('chrA', 1, 5, 'QQQ', 1)])}"],
                   inputs["cells"], chrom_sizes=inputs["sizes"], settings=PseudobulkConfig(min_cells=1, workers=1),
                   progress=False)


# --- resume ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def single_cell(synthetic, tmp_path_factory):
    from enformer_transfer.synthetic import make_fragments

    return make_fragments(synthetic, tmp_path_factory.mktemp("single-cell"))


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["counted", "written"])
def test_resume_after_kill_redoes_nothing_finished(single_cell, synthetic, tmp_path, phase):
    cmd = [sys.executable, "-m", "enformer_transfer.cli", "pseudobulk", "--fragments",
           *map(str, single_cell.fragments), "--cells", str(single_cell.cells), "--chrom-sizes",
           str(single_cell.chrom_sizes), "--blacklist", str(synthetic.blacklist), "--workers", "1", "--quiet"]
    out = tmp_path / "killed"
    progress = out / "pseudobulk.partial" / phase

    def markers():  # finished units (not the temporary names of markers being written)
        return [p for p in progress.rglob("*.json") if ".partial" not in p.name] if progress.is_dir() else []

    kill_when([*cmd, "--out", str(out)], lambda: bool(markers()))
    done = {p: p.stat().st_mtime_ns for p in markers()}
    assert done and not (out / "targets.tsv").exists()
    if phase == "written":
        finished = {out / "bigwigs" / f"{p.stem}.bw": (out / "bigwigs" / f"{p.stem}.bw").stat().st_mtime_ns
                    for p in done}
    resumed = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    if phase == "written":  # finished BigWigs were not written again
        assert all(path.stat().st_mtime_ns == stamp for path, stamp in finished.items())
    fresh = tmp_path / "fresh"
    assert subprocess.run([*cmd, "--out", str(fresh)], capture_output=True).returncode == 0
    for bw in sorted((fresh / "bigwigs").glob("*.bw")):
        a, b = pybigtools.open(str(bw)), pybigtools.open(str(out / "bigwigs" / bw.name))
        for chrom, size in a.chroms().items():
            np.testing.assert_array_equal(a.values(chrom, 0, size, fillna=None), b.values(chrom, 0, size, fillna=None))
    assert (out / "targets.tsv").read_text().replace(str(out), "") == (fresh / "targets.tsv").read_text().replace(
        str(fresh), "")


# --- into the pipeline --------------------------------------------------------------------------

@pytest.mark.slow
def test_pseudobulk_then_dataset_embed_train(single_cell, synthetic, tmp_path):
    """The demo's cell types as single cells: pseudobulk -> dataset -> embed -> train, by the CLI."""
    from enformer_transfer import Run

    coverage = tmp_path / "coverage"
    assert main(["pseudobulk", "--fragments", *map(str, single_cell.fragments), "--cells", str(single_cell.cells),
                 "--genome", str(synthetic.genome), "--blacklist", str(synthetic.blacklist), "--out", str(coverage),
                 "--levels", "class,subclass,cluster", "--bin-size", "16", "--workers", "2", "--quiet"]) == 0
    table = read_targets_table(coverage / "targets.tsv")
    assert len(table) == 12 and set(table["level"]) == {"class", "subclass", "cluster"}
    run = tmp_path / "run"
    geometry = ["--seq-length", "16384", "--bin-size", "128", "--n-bins", "64"]
    assert main(["dataset", "--genome", str(synthetic.genome), "--targets", str(coverage / "targets.tsv"),
                 "--windows", str(synthetic.windows), "--blacklist", str(synthetic.blacklist), "--out", str(run),
                 *geometry, "--workers", "1", "--quiet"]) == 0
    backbone = tmp_path / "backbone"
    assert main(["backbone", "init", "--out", str(backbone), "--dim", "48", "--depth", "1", "--heads", "2",
                 "--attn-dim-key", "16", "--n-bins", "64", "--human-tracks", "8", "--quiet"]) == 0
    assert main(["embed", str(run), "--backbone", str(backbone), "--loader-workers", "0", "--quiet"]) == 0
    assert main(["train", str(run), "--head", "ridge", "--model", "ridge", "--quiet"]) == 0
    tracks = Run(run).tracks
    assert list(tracks["identifier"]) == list(table["identifier"])
    targets = np.asarray(Run(run).targets("train")[:])
    assert targets.shape[-1] == 12 and np.isfinite(targets.astype(np.float32)).all() and targets.max() > 0
    # the report finds the QC beside the targets table the dataset recorded
    from enformer_transfer.report.sections import ReportContext, pseudobulk_section

    section = pseudobulk_section(ReportContext(Run(run), [], tmp_path / "report-figures"))
    assert section is not None and "12 groups written" in section.body and "Oligo_3" in section.body
    # the planted accessibility shows: the Glutamatergic track differs from the Non-neuronal one
    names = list(tracks["identifier"])
    glut, non = targets[..., names.index("Glutamatergic")], targets[..., names.index("Non-neuronal")]
    assert np.corrcoef(glut.ravel().astype(float), non.ravel().astype(float))[0, 1] < 0.95
