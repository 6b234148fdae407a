"""Basenji TFRecords without TensorFlow: the real fixture reads back exactly; our export round-trips."""

import json
import zlib

import numpy as np
import pandas as pd
import pyfaidx
import pytest

from enformer_transfer import InputError, Run
from enformer_transfer.cli import main
from enformer_transfer.data.tfrecords import (
    parse_example,
    read_records,
    read_split,
    read_statistics,
    serialize_example,
    split_files,
    write_records,
)
from enformer_transfer.genome.onehot import base_indices


def test_real_basenji_tfrecords(tiny_hg38):
    source = tiny_hg38 / "tfrecords-source"
    stats = read_statistics(source)
    bed = pd.read_csv(tiny_hg38 / "windows.bed", sep="\t", header=None, names=["c", "s", "e", "name", "split"])
    expected = np.load(tiny_hg38 / "targets_32bp.npy")
    fasta = pyfaidx.Fasta(str(tiny_hg38 / "windows.fa"), sequence_always_upper=True)
    assert [p.name for p in split_files(source / "tfrecords", "train")][:3] == ["train-0.tfr", "train-1.tfr", "train-2.tfr"]
    for split in ("train", "valid", "test"):
        rows = bed[bed["split"] == split]
        records = list(read_split(source / "tfrecords", split, stats))
        assert len(records) == len(rows) == stats[f"{split}_seqs"]
        for (seq, targets), (i, row) in zip(records, rows.iterrows(), strict=True):
            assert targets.dtype == np.float16 and targets.shape == (2048, 74)
            np.testing.assert_array_equal(targets.view(np.uint16), expected[i].view(np.uint16))
            np.testing.assert_array_equal(seq, base_indices(str(fasta[row["name"]][:])))


def test_example_round_trip_and_checksums(tmp_path):
    features = {"sequence": bytes(range(256)) * 3, "target": np.arange(12, dtype="<f2").tobytes()}
    record = serialize_example(features)
    assert parse_example(record) == features
    write_records(tmp_path / "x.tfr", [record, serialize_example({"a": b""})])
    assert [parse_example(r) for r in read_records(tmp_path / "x.tfr")][0] == features
    raw = bytearray(zlib.decompress((tmp_path / "x.tfr").read_bytes()))
    raw[40] ^= 0xFF  # flip a byte inside the first record
    (tmp_path / "bad.tfr").write_bytes(zlib.compress(bytes(raw)))
    with pytest.raises(InputError, match="corrupt TFRecord"):
        list(read_records(tmp_path / "bad.tfr"))


def test_export_run_reads_back(demo_run, tmp_path):
    out = tmp_path / "basenji"
    assert main(["tfrecords", "export", str(demo_run), "--out", str(out), "--windows-per-file", "10"]) == 0
    stats = json.loads((out / "statistics.json").read_text())
    assert stats["seq_length"] == 8192 + 2 * 4096 and stats["target_length"] == 64 and stats["pool_width"] == 128
    assert stats["crop_bp"] == 4096 and stats["test_seqs"] == 23 and stats["seq_1hot"] is True
    run = Run(demo_run)
    genome = pyfaidx.Fasta(str(demo_run.parent / "data" / "genome.fa"), sequence_always_upper=True)
    for split in run.splits:
        records = list(read_split(out / "tfrecords", split, stats))
        targets = np.asarray(run.targets(split))
        assert len(records) == len(targets) and len(split_files(out / "tfrecords", split)) == -(-len(targets) // 10)
        for (seq, t), expected, w in zip(records, targets, run.windows(split).itertuples(), strict=True):
            np.testing.assert_array_equal(t.view(np.uint16), expected.view(np.uint16))
            np.testing.assert_array_equal(seq, base_indices(str(genome[w.chrom][w.row_start : w.row_end])))
    bed = pd.read_csv(out / "sequences.bed", sep="\t", header=None)
    assert list(bed[3].unique()) == ["train", "valid", "test"] and (bed[2] - bed[1] == 16384).all()


def test_import_round_trip_and_genome_check(demo_run, tmp_path, capsys):
    out = tmp_path / "basenji"
    assert main(["tfrecords", "export", str(demo_run), "--out", str(out), "--base-indices"]) == 0
    genome = demo_run.parent / "data" / "genome.fa"
    imported = tmp_path / "imported"
    assert main(["tfrecords", "import", str(out), "--genome", str(genome), "--out", str(imported),
                 "--seq-length", "16384"]) == 0
    ours, theirs = Run(demo_run), Run(imported)
    assert theirs.splits == ours.splits and list(theirs.tracks["identifier"]) == list(ours.tracks["identifier"])
    for split in ours.splits:
        np.testing.assert_array_equal(np.asarray(theirs.targets(split)), np.asarray(ours.targets(split)))
        cols = ["chrom", "start", "end", "input_start", "input_end"]
        pd.testing.assert_frame_equal(theirs.windows(split)[cols], ours.windows(split)[cols])
    assert theirs.dataset_config.genome == genome
    # records that do not come from the genome given are refused
    other = tmp_path / "other.fa"
    text = genome.read_text().splitlines()
    other.write_text("\n".join(line if line.startswith(">") else line[::-1] for line in text) + "\n")
    assert main(["tfrecords", "import", str(out), "--genome", str(other), "--out", str(tmp_path / "bad"),
                 "--seq-length", "16384"]) == 2
    assert "does not match" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "dataset").exists() and not (tmp_path / "bad" / "dataset.partial").exists()
