"""Genome access (FASTA, 2bit), one-hot conventions, windows and blacklist geometry."""

import struct

import numpy as np
import pytest

from enformer_transfer import Geometry, InputError
from enformer_transfer.data.build import blacklist_slices
from enformer_transfer.genome import Genome, generate_windows, one_hot, read_windows_bed
from enformer_transfer.genome.intervals import IntervalSet
from enformer_transfer.genome.onehot import one_hot_padded


def write_2bit(path, records):
    """A minimal UCSC .2bit writer (format spec), to test reading real 2bit files."""
    code = {"T": 0, "C": 1, "A": 2, "G": 3}
    header = struct.pack("<IIII", 0x1A412743, 0, len(records), 0)
    index_size = sum(1 + len(n) + 4 for n in records)
    offset = len(header) + index_size
    index, bodies = b"", b""
    for name, seq in records.items():
        index += struct.pack("<B", len(name)) + name.encode() + struct.pack("<I", offset + len(bodies))
        n_blocks = [(i, 1) for i, b in enumerate(seq) if b == "N"]
        body = struct.pack("<II", len(seq), len(n_blocks))
        body += b"".join(struct.pack("<I", s) for s, _ in n_blocks)
        body += b"".join(struct.pack("<I", n) for _, n in n_blocks)
        body += struct.pack("<II", 0, 0)
        packed = bytearray()
        for i in range(0, len(seq), 4):
            chunk = seq[i : i + 4].ljust(4, "T")
            byte = 0
            for b in chunk:
                byte = (byte << 2) | code.get(b, 0)
            packed.append(byte)
        bodies += body + bytes(packed)
    path.write_bytes(header + index + bodies)


def test_fasta_and_2bit_give_the_same_sequence(tmp_path):
    seqs = {"chr1": "ACGTNACGTTTGCA" * 20, "chrM": "GGGCCCAAATTT" * 5}
    fa = tmp_path / "g.fa"
    fa.write_text("".join(f">{k}\n{v}\n" for k, v in seqs.items()))
    tb = tmp_path / "g.2bit"
    write_2bit(tb, seqs)
    a, b = Genome(fa), Genome(tb)
    assert b.is_2bit and not a.is_2bit
    assert a.sizes == b.sizes == {k: len(v) for k, v in seqs.items()}
    for chrom in seqs:
        assert a.fetch(chrom, 3, 50) == b.fetch(chrom, 3, 50) == seqs[chrom][3:50]
    seq, left, right = a.fetch_padded("chr1", -5, 285)
    assert (left, right) == (5, 5) and seq == seqs["chr1"]
    assert Genome(fa, chrom_aliases="auto").fetch("MT", 0, 6) == "GGGCCC"
    with pytest.raises(InputError, match="no chromosome 'MT'"):
        a.fetch("MT", 0, 6)


def test_bgzip_fasta(tmp_path):
    from Bio import bgzf

    seqs = {"chr1": "ACGTNACGTTTGCA" * 2000, "chr2": "GGGCCCAAATTT" * 50}
    with bgzf.BgzfWriter(str(tmp_path / "g.fa.gz"), "wb") as handle:
        for name, seq in seqs.items():
            handle.write(f">{name}\n" + "".join(seq[i : i + 60] + "\n" for i in range(0, len(seq), 60)))
    genome = Genome(tmp_path / "g.fa.gz")
    assert genome.sizes == {k: len(v) for k, v in seqs.items()}
    assert genome.fetch("chr1", 27_950, 28_010) == seqs["chr1"][27_950:]


def test_bad_genome_file(tmp_path):
    bad = tmp_path / "g.fa"
    bad.write_bytes(b"\x00\x01binary")
    with pytest.raises(InputError, match="cannot read as FASTA or 2bit"):
        Genome(bad)


def test_one_hot_conventions():
    x = one_hot("ACGTNa")
    np.testing.assert_array_equal(x, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]])
    padded = one_hot_padded("AC", 2, 1)
    assert padded.shape == (5, 4)
    np.testing.assert_array_equal(padded[0], [0.25] * 4)  # beyond the chromosome: reference loader
    np.testing.assert_array_equal(one_hot_padded("AC", 1, 0, pad_value=0.0)[0], [0] * 4)


@pytest.mark.parametrize("row_length", [131072, 114688, 196608])
def test_window_conventions_give_the_same_bins(tmp_path, row_length):
    """Enformer rows, Basenji target rows and model-input rows all map to the same target interval."""
    centre = 1_000_000
    bed = tmp_path / "w.bed"
    bed.write_text(f"chr1\t{centre - row_length // 2}\t{centre + row_length // 2}\ttest\n")
    w = read_windows_bed(bed, Geometry()).table.iloc[0]
    assert (w.start, w.end) == (centre - 57344, centre + 57344)
    assert (w.input_start, w.input_end) == (centre - 98304, centre + 98304)
    if row_length == 131072:  # reference.md: bin i = [s + 8192 + 128 i, ...)
        assert w.start == w.row_start + 8192


def test_windows_five_column_bed(tiny_hg38):
    windows = read_windows_bed(tiny_hg38 / "windows.bed", Geometry())
    assert len(windows) == 65
    assert windows.splits == ["train", "valid", "test"]
    assert [len(windows.split(s)) for s in windows.splits] == [45, 10, 10]


def test_blacklist_slices_widen_and_quirk(tmp_path):
    bed = tmp_path / "bl.bed"
    bed.write_text("chr1\t90\t130\nchr1\t500\t600\nchr1\t980\t1100\n")
    bl = IntervalSet.from_bed(bed)
    # coverage window [100, 1000): regions widened by 20 bp
    assert blacklist_slices(bl, "chr1", 100, 1000, 20, quirk=False) == [(0, 50), (380, 520), (860, 900)]
    # Basenji quirk: the region starting left of the window is not masked
    assert blacklist_slices(bl, "chr1", 100, 1000, 20, quirk=True) == [(380, 520), (860, 900)]
    assert blacklist_slices(bl, "chr2", 100, 1000, 20, quirk=False) == []


def test_generate_windows_holds_out_whole_chromosomes(synthetic):
    genome = Genome(synthetic.genome)
    geometry = Geometry(seq_length=16384, n_bins=64)
    df = generate_windows(genome, geometry, valid_chroms=["chr3"], test_chroms=["chr4"],
                          blacklist=IntervalSet.from_bed(synthetic.blacklist))
    assert set(df[df.split == "test"].chrom) == {"chr4"} and set(df[df.split == "valid"].chrom) == {"chr3"}
    assert set(df[df.split == "train"].chrom) == {"chr1", "chr2"}
    assert ((df.end - df.start) == 64 * 128 + 2 * 4096).all()
    for _, g in df.groupby("chrom"):
        starts = g.start.to_numpy()
        assert (np.diff(starts) >= 64 * 128).all()  # target intervals do not overlap
    assert (df.start - 0 >= 0).all() and (df.end <= 200_000).all()
    with pytest.raises(InputError, match="held-out chromosome 'chrX'"):
        generate_windows(genome, geometry, test_chroms=["chrX"])
