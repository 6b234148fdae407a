"""Damaged BigWigs: validate_bigwig finds every kind of damage and every read error names the file."""

import struct

import numpy as np
import pytest

from enformer_transfer import EnformerTransferError, IntegrityError

# --- damaged copies -------------------------------------------------------------------------


def _root(data: bytes) -> int:
    """Byte where the data index's root node starts (little-endian files)."""
    return struct.unpack_from("<Q", data, 24)[0] + 48


def _first_leaf(data: bytes) -> tuple[int, int]:
    node = _root(data)
    while True:
        is_leaf, _, count = struct.unpack_from("<BBH", data, node)
        if is_leaf:
            return node + 4, count
        node = struct.unpack_from("<Q", data, node + 4 + 16)[0]  # first child


def _third_block(data: bytes) -> tuple[int, int, int]:
    """(index entry, offset, size) of the third data block."""
    leaf, count = _first_leaf(data)
    entry = leaf + 32 * min(2, count - 1)
    offset, size = struct.unpack_from("<QQ", data, entry + 16)
    return entry, offset, size


def _flip(data: bytes, at: int, mask: int = 0xFF) -> bytes:
    out = bytearray(data)
    out[at] ^= mask
    return bytes(out)


def _truncated(data):
    return data[: len(data) // 2]


def _cut_block(data):  # half of a data block's bytes missing, everything after it shifted
    _, offset, size = _third_block(data)
    return data[: offset + size // 2] + data[offset + size :]


def _flipped_data_byte(data):
    _, offset, size = _third_block(data)
    return _flip(data, offset + size // 2)


def _flipped_index_byte(data):  # a leaf entry's start base: the block no longer matches its entry
    entry, _, _ = _third_block(data)
    return _flip(data, entry + 7, 0x10)


def _flipped_inner_index_byte(data):  # an inner node's range: pybigtools silently skips a subtree
    root = _root(data)
    assert not struct.unpack_from("<BBH", data, root)[0], "needs an index with inner nodes"
    return _flip(data, root + 4 + 24 + 7, 0x40)  # second child's start base


DAMAGE = {
    "truncated": (_truncated, "beyond the end of the file"),
    "cut data block": (_cut_block, "damaged|beyond the end|bad magic"),
    "flipped data byte": (_flipped_data_byte, r"data block 2 at byte \d+ does not decompress"),
    "flipped index byte": (_flipped_index_byte, "index is damaged"),
}


@pytest.fixture(params=["synthetic", "real"])
def bigwig(request):
    """A valid BigWig: one of the synthetic ones (pybigtools layout) or a real one (UCSC layout)."""
    if request.param == "synthetic":
        return request.getfixturevalue("synthetic").bigwigs[0]
    return request.getfixturevalue("tiny_hg38") / "bigwig" / "00_CNhs10752plus.bw"


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_validate_bigwig_finds_damage(bigwig, damage, tmp_path):
    from enformer_transfer.data.bigwig import validate_bigwig

    make, message = DAMAGE[damage]
    bad = tmp_path / "bad.bw"
    bad.write_bytes(make(bigwig.read_bytes()))
    with pytest.raises(IntegrityError, match=message) as caught:
        validate_bigwig(bad, "track 3 'cortex'")
    assert str(bad) in str(caught.value) and "track 3 'cortex'" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_validate_bigwig_accepts_valid_files(synthetic, tiny_hg38):
    from enformer_transfer.data.bigwig import validate_bigwig

    for path in synthetic.bigwigs + sorted((tiny_hg38 / "bigwig").glob("0*.bw"))[:3]:
        facts = validate_bigwig(path)
        assert facts["blocks"] > 0 and facts["zoom_blocks"] > 0 and facts["bases_covered"] > 0


def test_flipped_inner_index_byte_silently_drops_values(tiny_hg38, tmp_path):
    """What the summary check is for: reads of the damaged copy return nothing, without an error
    (the real files' index has inner nodes; the synthetic ones' a single leaf)."""
    from enformer_transfer.data.bigwig import CoverageReader, validate_bigwig

    good = tiny_hg38 / "bigwig" / "00_CNhs10752plus.bw"
    bad = tmp_path / "bad.bw"
    bad.write_bytes(_flipped_inner_index_byte(good.read_bytes()))
    values = [CoverageReader([str(p)], [{"chrX": "chrX"}]).read("chrX", 132_300_000, 132_400_000)
              for p in (good, bad)]
    assert np.isfinite(values[0]).any() and not np.isfinite(values[1]).any()
    with pytest.raises(IntegrityError, match="cannot be reached"):
        validate_bigwig(bad)


# --- read errors name the file ----------------------------------------------------------------


def test_coverage_reader_errors_name_file_and_track(synthetic, tmp_path):
    from enformer_transfer.data.bigwig import CoverageReader

    good = synthetic.bigwigs[0]
    data = good.read_bytes()
    offset, size = struct.unpack_from("<QQ", data, _first_leaf(data)[0] + 16)  # chr1's first block
    bad = tmp_path / "bad.bw"
    bad.write_bytes(_flip(data, offset + size // 2))
    reader = CoverageReader([str(good), str(bad)], [{"chr1": "chr1"}] * 2, names=["ok", "cortex"])
    with pytest.raises(IntegrityError) as caught:  # was a Rust panic naming no file
        reader.read("chr1", 0, 20_000)
    assert str(bad) in str(caught.value) and "track 1 'cortex'" in str(caught.value)
    assert "chr1:0-20000" in str(caught.value)


def test_open_errors_name_file_and_track(synthetic, tmp_path):
    from enformer_transfer.data.bigwig import bigwig_chrom_sizes, chrom_maps_for

    bad = tmp_path / "bad.bw"
    bad.write_bytes(_truncated(synthetic.bigwigs[0].read_bytes())[:100])
    for call in (lambda: bigwig_chrom_sizes(bad, "track 0"),
                 lambda: chrom_maps_for([str(synthetic.bigwigs[0]), str(bad)], ["chr1"], "exact", False)):
        with pytest.raises(EnformerTransferError) as caught:
            call()
        assert str(bad) in str(caught.value) and "track" in str(caught.value)
