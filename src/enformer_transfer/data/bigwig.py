"""BigWig reading (pybigtools): per-base values with NaN for uncovered bases, and a full
integrity check of a BigWig file.

Every file is opened through ``open_bigwig``, which first checks the header with bounds
(``check_header``): pybigtools trusts the counts and sizes a header declares and allocates by
them, so a hostile or damaged header (2^31 chromosomes, a 4 GB buffer) would abort the process.

Every read error names the file (and the track when known): the Rust extension raises
``BBIReadError``, ``OSError`` or, on damaged data, a pyo3 ``PanicException``, which derives from
``BaseException``; each becomes one ``IntegrityError`` line.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import EnformerTransferError, InputError, IntegrityError
from ..genome.chroms import ChromNames

# never turned into a read error: the user or the interpreter asked to stop, or memory ran out
_NOT_READ_ERRORS = (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError, EnformerTransferError)
_REFETCH = "the file is damaged or incomplete: download it again (rerun fetch) or regenerate it"


def describe(path: Path | str, what: str = "") -> str:
    """'BigWig PATH (WHAT)': how every message of this module names a file."""
    return f"BigWig {path}" + (f" ({what})" if what else "")


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def open_bigwig(path: Path | str, what: str = ""):
    """A pybigtools reader of ``path``, opened only after ``check_header`` passed."""
    import pybigtools

    if not Path(path).is_file():
        raise InputError(f"{describe(path, what)} not found; fix the path or rerun fetch")
    check_header(path, what)
    try:
        return pybigtools.open(str(path))
    except _NOT_READ_ERRORS:
        raise
    except BaseException as err:  # noqa: BLE001 - pyo3 panics derive from BaseException
        raise InputError(f"{describe(path, what)}: cannot open as BigWig ({_reason(err)})") from None


def bigwig_chrom_sizes(path: Path | str, what: str = "") -> dict[str, int]:
    reader = open_bigwig(path, what)
    try:
        return dict(reader.chroms())
    except _NOT_READ_ERRORS:
        raise
    except BaseException as err:  # noqa: BLE001
        raise IntegrityError(f"{describe(path, what)}: cannot read its chromosome list ({_reason(err)}); "
                             f"{_REFETCH}") from None
    finally:
        reader.close()


class CoverageReader:
    """Reads per-base values of many BigWigs over one interval into a (tracks, length) array.

    ``chrom_maps[t]`` maps a window chromosome to track t's name for it (None: the file has no
    such chromosome, so every base is uncovered). ``names[t]`` (optional) is track t's identifier,
    used in error messages.
    """

    def __init__(self, files: list[str], chrom_maps: list[dict[str, str | None]], names: list[str] | None = None):
        self.files = files
        self.chrom_maps = chrom_maps
        self.names = names
        self._readers = [None] * len(files)

    def _what(self, t: int) -> str:
        return f"track {t}" + (f" {self.names[t]!r}" if self.names else "")

    def _reader(self, t: int):
        if self._readers[t] is None:
            self._readers[t] = open_bigwig(self.files[t], self._what(t))
        return self._readers[t]

    def read(self, chrom: str, start: int, end: int, out: np.ndarray | None = None,
             fill: float = np.nan) -> np.ndarray:
        """float64 (tracks, end - start); ``fill`` where uncovered or beyond the chromosome."""
        length = end - start
        if out is None:
            out = np.empty((len(self.files), length), dtype=np.float64)
        t = 0
        try:
            for t in range(len(self.files)):
                name = self.chrom_maps[t].get(chrom)
                if name is None:
                    out[t] = fill
                    continue
                lo = max(0, start)
                if lo > start:  # before the chromosome start
                    out[t, : lo - start] = fill
                self._reader(t).values(name, lo, end, fillna=fill, oob=fill, arr=out[t, lo - start :])
        except _NOT_READ_ERRORS:
            raise
        except BaseException as err:  # noqa: BLE001 - pyo3 panics derive from BaseException
            raise IntegrityError(f"{describe(self.files[t], self._what(t))}: cannot read {chrom}:{start}-{end} "
                                 f"({_reason(err)}); {_REFETCH}") from None
        return out

    def close(self) -> None:
        for r in self._readers:
            if r is not None:
                r.close()
        self._readers = [None] * len(self.files)


def chrom_maps_for(
    files: list[str], chroms: list[str], mode: str, allow_missing: bool, table: str = "targets table"
) -> list[dict[str, str | None]]:
    """Resolve the windows' chromosomes in every BigWig before any work starts."""
    from ..genome.chroms import mismatch_message

    maps = []
    for t, file in enumerate(files):
        names = ChromNames(bigwig_chrom_sizes(file, f"track {t} of the {table}"), mode)
        missing = names.missing(chroms)
        if missing and not allow_missing:
            raise InputError(
                mismatch_message(f"BigWig {file} (track {t} of the {table})", missing, names.names, mode)
                + "; or pass --allow-missing-chroms to treat them as uncovered"
            )
        maps.append({c: names.resolve(c) for c in chroms})
    return maps


# --- integrity check ----------------------------------------------------------------------
# The BigWig layout (UCSC bigWig format, versions 1-4), as struct formats without byte order:
_MAGIC, _RTREE_MAGIC, _CHROM_TREE_MAGIC = 0x888FFC26, 0x2468ACE0, 0x78CA8C91
# magic, version, zoomLevels, chromTreeOffset, fullDataOffset, fullIndexOffset, fieldCount,
# definedFieldCount, autoSqlOffset, totalSummaryOffset, uncompressBufSize, reserved
_HEADER = "IHHQQQHHQQIQ"
_CHROM_TREE = "IIIIQQ"  # magic, blockSize, keySize, valSize, itemCount, reserved
_ZOOM_HEADER = "IIQQ"  # reductionLevel, reserved, dataOffset, indexOffset (24 bytes each, after the header)
_SUMMARY = "Qdddd"  # basesCovered, minVal, maxVal, sumData, sumSquares
_RTREE = "IIQIIIIQII"  # magic, blockSize, itemCount, 4 x extent, endFileOffset, itemsPerSlot, reserved
_NODE = "BBH"  # isLeaf, reserved, count
_LEAF = "IIIIQQ"  # startChrom, startBase, endChrom, endBase, dataOffset, dataSize
_INNER = "IIIIQ"  # startChrom, startBase, endChrom, endBase, childOffset
_SECTION = "IIIIIBBH"  # chromId, start, end, itemStep, itemSpan, type, reserved, itemCount
_ITEM_SIZE = {1: 12, 2: 8, 3: 4}  # bedGraph, variableStep, fixedStep items
_ZOOM_RECORD_SIZE = 32
_HEADER_SIZE, _ZOOM_HEADER_SIZE, _CHROM_TREE_SIZE, _RTREE_SIZE, _SUMMARY_SIZE = 64, 24, 32, 48, 40
# Bounds of what a header may declare. Writers (UCSC's, pybigtools, libBigWig) make at most 10
# zoom levels, chromosome names of at most 255 characters and blocks of kilobytes.
_VERSIONS = range(1, 5)
_MAX_ZOOM_LEVELS = 10
_MAX_KEY_SIZE = 255
_MAX_NODE_ITEMS = 0xFFFF  # a tree node counts its items in 16 bits
_MAX_UNCOMPRESSED_BLOCK = 64 << 20


class _Damaged(Exception):
    """One problem found in a BigWig's bytes; ``validate_bigwig`` adds the file's name."""


class _Bytes:
    """Bounds-checked struct reads in a file's bytes, in the file's byte order."""

    def __init__(self, buf, order: str):
        self.buf, self.order, self.size = buf, order, len(buf)

    def unpack(self, fmt: str, offset: int, what: str) -> tuple:
        layout = struct.Struct(self.order + fmt)
        if offset < 0 or offset + layout.size > self.size:
            raise _Damaged(f"its {what} (byte {offset}) lies beyond the end of the file ({self.size} bytes): "
                           "the file is truncated or its header is damaged")
        return layout.unpack_from(self.buf, offset)

    def block(self, offset: int, size: int, max_size: int, what: str) -> bytes:
        """A block's bytes, decompressed when the file is compressed (``max_size`` > 0); zlib's
        checksum catches flipped bytes, the end-of-stream check catches cut blocks."""
        if offset + size > self.size:
            raise _Damaged(f"its {what} (bytes {offset}-{offset + size}) lies beyond the end of the file "
                           f"({self.size} bytes): the file is truncated")
        raw = self.buf[offset : offset + size]
        if not max_size:
            return raw
        inflate = zlib.decompressobj()
        try:
            data = inflate.decompress(raw, max_size + 1)  # bounded: a damaged block cannot exhaust memory
        except zlib.error as err:
            raise _Damaged(f"its {what} at byte {offset} does not decompress ({err})") from None
        if not inflate.eof or len(data) > max_size:
            raise _Damaged(f"its {what} at byte {offset} is cut short or longer than the header allows")
        return data


def validate_bigwig(path: Path | str, what: str = "", fix: str = _REFETCH) -> dict:
    """Check a whole BigWig before it is used, in about the time it takes to decompress it.

    1. the header: magic number, and every offset it declares lies inside the file;
    2. the chromosome tree: each chromosome id once;
    3. the data index and each zoom level's index: every leaf, every block decompressed (zlib's
       checksum catches a flipped byte), every data block's header agrees with its index entry;
    4. every record of every chromosome read through pybigtools, the reader the dataset uses;
       the bases covered and the sum of values must equal the file's own total summary, so an
       index damaged such that blocks are silently skipped is caught.

    Raises ``IntegrityError`` (``InputError`` when the file is missing or unreadable) naming the
    file and ``what`` (the track), ending with ``fix``. Returns counts: blocks, zoom_blocks,
    bases_covered, sum.
    """
    path = Path(path)
    try:
        with _mapped(path) as buf:
            facts = _check_layout(buf)
        covered, total = _read_every_record(path, what)
        _compare_summary(facts.pop("summary"), covered, total)
    except _Damaged as err:
        raise IntegrityError(f"{describe(path, what)}: {err}; {fix}") from None
    except OSError as err:
        raise InputError(f"{describe(path, what)}: cannot read ({err})") from None
    return {**facts, "bases_covered": covered, "sum": total}


def check_header(path: Path | str, what: str = "", fix: str = _REFETCH) -> None:
    """Check what a BigWig's header declares against bounds and the file's size before any
    reader allocates by it: magic and version; at most 10 zoom levels; every offset (chromosome
    tree, data, indexes, zoom levels, summary) inside the file; the chromosome tree's key size,
    node size and chromosome count (each takes key size + 8 bytes, so the file must hold them);
    the index trees' item counts (32 bytes each); the uncompressed block size. A few small reads,
    whatever the file's size. Raises ``IntegrityError`` (``InputError`` when unreadable), one
    line naming the file, ``what`` and the problem, ending with ``fix``."""
    try:
        with _mapped(path) as buf:
            _check_header(_bytes_of(buf))
    except _Damaged as err:
        raise IntegrityError(f"{describe(path, what)}: {err}; {fix}") from None
    except OSError as err:
        raise InputError(f"{describe(path, what)}: cannot read ({err})") from None


class _mapped:
    """A file's bytes, memory-mapped (read lazily: a header check reads a few pages)."""

    def __init__(self, path: Path | str):
        self.path = path

    def __enter__(self):
        self.handle = open(self.path, "rb")
        size = os.fstat(self.handle.fileno()).st_size
        if size < _HEADER_SIZE:
            self.handle.close()
            raise _Damaged(f"it is {size} bytes, shorter than a BigWig header (truncated or not a BigWig)")
        self.buf = mmap.mmap(self.handle.fileno(), 0, access=mmap.ACCESS_READ)
        return self.buf

    def __exit__(self, *exc):
        self.buf.close()
        self.handle.close()


def _bytes_of(buf) -> _Bytes:
    head = bytes(buf[:4])
    if int.from_bytes(head, "little") == _MAGIC:
        return _Bytes(buf, "<")
    if int.from_bytes(head, "big") == _MAGIC:
        return _Bytes(buf, ">")
    raise _Damaged("not a BigWig (bad magic number)")


def _check_header(data: _Bytes) -> None:
    size = data.size
    (_, version, zoom_levels, chrom_tree, full_data, full_index, _, _, auto_sql, summary_at, max_block,
     extension) = data.unpack(_HEADER, 0, "header")
    if version not in _VERSIONS:
        raise _Damaged(f"its header says BigWig version {version}, not one of {_VERSIONS.start}-{_VERSIONS.stop - 1}")
    if zoom_levels > _MAX_ZOOM_LEVELS:
        raise _Damaged(f"its header claims {zoom_levels} zoom levels (writers make at most {_MAX_ZOOM_LEVELS})")
    end_of_headers = _HEADER_SIZE + _ZOOM_HEADER_SIZE * zoom_levels
    if end_of_headers > size:
        raise _Damaged(f"its {zoom_levels} zoom headers lie beyond the end of the file ({size} bytes): "
                       "the file is truncated or its header is damaged")
    parts = [("chromosome tree", chrom_tree, _CHROM_TREE_SIZE), ("data section", full_data, 8),
             ("data index", full_index, _RTREE_SIZE)]
    parts += [(name, at, need) for name, at, need in (("total summary", summary_at, _SUMMARY_SIZE),
                                                      ("autoSql", auto_sql, 1), ("extension header", extension, 4)) if at]
    for z in range(zoom_levels):
        level, _, zoom_data, zoom_index = data.unpack(_ZOOM_HEADER, _HEADER_SIZE + _ZOOM_HEADER_SIZE * z,
                                                      f"zoom header {z}")
        parts += [(f"zoom level {z} data", zoom_data, 4), (f"zoom level {z} index", zoom_index, _RTREE_SIZE)]
    for name, offset, need in parts:
        if offset < end_of_headers or offset + need > size:
            where = "beyond the end of the file" if offset + need > size else "inside the header"
            raise _Damaged(f"its header puts the {name} at byte {offset}, {where} ({size} bytes): "
                           "the file is truncated or its header is damaged")
    if max_block > _MAX_UNCOMPRESSED_BLOCK:
        raise _Damaged(f"its header declares blocks of up to {max_block} bytes uncompressed (writers use kilobytes; "
                       f"at most {_MAX_UNCOMPRESSED_BLOCK >> 20} MB is accepted)")
    magic, node_items, key_size, value_size, n_chroms, _ = data.unpack(_CHROM_TREE, chrom_tree, "chromosome tree")
    if magic != _CHROM_TREE_MAGIC:
        raise _Damaged(f"its chromosome tree (byte {chrom_tree}) has a bad magic number")
    if value_size != 8 or (n_chroms and not (1 <= key_size <= _MAX_KEY_SIZE and 1 <= node_items <= _MAX_NODE_ITEMS)):
        raise _Damaged(f"its chromosome tree header is damaged (key size {key_size}, value size {value_size}, "
                       f"{node_items} items per node)")
    room = size - chrom_tree - _CHROM_TREE_SIZE
    if n_chroms * (key_size + 8) > room:
        raise _Damaged(f"its chromosome tree claims {n_chroms} chromosomes, which need {n_chroms * (key_size + 8)} "
                       f"bytes, but only {room} bytes follow it: the header is damaged or the file truncated")
    n_blocks = data.unpack("Q", full_data, "data section")[0]
    if n_blocks > size:
        raise _Damaged(f"its data section claims {n_blocks} blocks, more than the file's {size} bytes can hold")
    for name, offset, _ in parts:
        if name.endswith("index"):
            _check_rtree_header(data, offset, name)


def _check_rtree_header(data: _Bytes, offset: int, what: str) -> None:
    magic, node_items, item_count, *_ = data.unpack(_RTREE, offset, what)
    if magic != _RTREE_MAGIC:
        raise _Damaged(f"its {what} (byte {offset}) has a bad magic number")
    if item_count and not 1 <= node_items <= _MAX_NODE_ITEMS:
        raise _Damaged(f"its {what} (byte {offset}) declares {node_items} items per node")
    leaf_size = struct.calcsize("<" + _LEAF)
    if item_count * leaf_size > data.size:
        raise _Damaged(f"its {what} claims {item_count} blocks, more than the file's {data.size} bytes can hold")


def _check_layout(buf) -> dict:
    data = _bytes_of(buf)
    _check_header(data)
    (_, _, zoom_levels, chrom_tree, full_data, full_index, _, _, _, summary_at, max_block, _) = data.unpack(
        _HEADER, 0, "header")
    n_chroms = _check_chrom_tree(data, chrom_tree)
    leaves = _index_leaves(data, full_index, "data index")
    announced = data.unpack("Q", full_data, "data section")[0]
    if announced != len(leaves):
        raise _Damaged(f"its data section announces {announced} blocks but its index reaches {len(leaves)}")
    for i, leaf in enumerate(leaves):
        _check_data_block(data, leaf, max_block, n_chroms, i)
    zoom_blocks = 0
    for z in range(zoom_levels):
        level, _, _, zoom_index = data.unpack(_ZOOM_HEADER, 64 + 24 * z, f"zoom header {z}")
        for *_, offset, size in _index_leaves(data, zoom_index, f"zoom level {level} index"):
            if len(data.block(offset, size, max_block, f"zoom level {level} block")) % _ZOOM_RECORD_SIZE:
                raise _Damaged(f"its zoom level {level} block at byte {offset} holds a partial record")
            zoom_blocks += 1
    summary = data.unpack(_SUMMARY, summary_at, "total summary") if summary_at else None
    return {"blocks": len(leaves), "zoom_blocks": zoom_blocks, "summary": summary}


def _index_leaves(data: _Bytes, offset: int, what: str) -> list[tuple]:
    """Every leaf entry of an R-tree index (startChrom, startBase, endChrom, endBase, offset, size)."""
    magic, _, item_count, *_ = data.unpack(_RTREE, offset, what)
    if magic != _RTREE_MAGIC:
        raise _Damaged(f"its {what} (byte {offset}) has a bad magic number")
    leaves, stack, seen = [], [offset + struct.calcsize("<" + _RTREE)], set()
    leaf_size, inner_size = struct.calcsize("<" + _LEAF), struct.calcsize("<" + _INNER)
    while stack:
        node = stack.pop()
        if node in seen or len(seen) > 2 * item_count + 1:  # a damaged child offset can make a loop
            raise _Damaged(f"its {what} loops back on itself at byte {node}")
        seen.add(node)
        is_leaf, _, count = data.unpack(_NODE, node, f"{what} node")
        if is_leaf == 1:
            leaves += [data.unpack(_LEAF, node + 4 + leaf_size * i, f"{what} leaf") for i in range(count)]
        elif is_leaf == 0:
            children = [data.unpack(_INNER, node + 4 + inner_size * i, f"{what} node")[4] for i in range(count)]
            stack += reversed(children)
        else:
            raise _Damaged(f"its {what} has a damaged node at byte {node}")
    if len(leaves) != item_count:
        raise _Damaged(f"its {what} announces {item_count} blocks but reaches {len(leaves)}")
    return leaves


def _check_chrom_tree(data: _Bytes, offset: int) -> int:
    """The chromosome B+ tree: every chromosome id appears once and lies below the count (a
    damaged id would silently serve one chromosome's values for another's). Returns the count."""
    magic, _, key_size, _, item_count, _ = data.unpack(_CHROM_TREE, offset, "chromosome tree")
    if magic != _CHROM_TREE_MAGIC:
        raise _Damaged(f"its chromosome tree (byte {offset}) has a bad magic number")
    ids, stack, seen = [], [offset + struct.calcsize("<" + _CHROM_TREE)], set()
    while stack:
        node = stack.pop()
        if node in seen or len(seen) > 2 * item_count + 1:
            raise _Damaged(f"its chromosome tree loops back on itself at byte {node}")
        seen.add(node)
        is_leaf, _, count = data.unpack(_NODE, node, "chromosome tree node")
        item = key_size + 8  # key, then (chromId, chromSize) in a leaf or childOffset in a node
        for i in range(count):
            at = node + 4 + item * i + key_size
            if is_leaf:
                ids.append(data.unpack("I", at, "chromosome tree leaf")[0])
            else:
                stack.append(data.unpack("Q", at, "chromosome tree node")[0])
    if len(ids) != item_count or sorted(ids) != list(range(item_count)):  # bounded: ids were read from the file
        raise _Damaged("its chromosome tree is damaged (chromosome ids are not 0 to n-1, each once)")
    return item_count


def _check_data_block(data: _Bytes, leaf: tuple, max_block: int, n_chroms: int, i: int) -> None:
    start_chrom, start_base, end_chrom, end_base, offset, size = leaf
    block = data.block(offset, size, max_block, f"data block {i}")
    head = struct.Struct(data.order + _SECTION)
    if len(block) < head.size:
        raise _Damaged(f"its data block {i} at byte {offset} is shorter than a section header")
    chrom, start, end, _, _, kind, _, count = head.unpack_from(block, 0)
    if kind not in _ITEM_SIZE or len(block) != head.size + _ITEM_SIZE[kind] * count:
        raise _Damaged(f"its data block {i} at byte {offset} has a damaged section header")
    if chrom >= n_chroms or chrom != start_chrom or chrom != end_chrom or start < start_base or end > end_base:
        raise _Damaged(f"its data block {i} (chromosome #{chrom}, {start}-{end}) lies outside its index entry "
                       f"(#{start_chrom}:{start_base}-#{end_chrom}:{end_base}): the index is damaged")


def _read_every_record(path: Path, what: str) -> tuple[int, float]:
    """Bases covered and sum of values over every chromosome, read through pybigtools (the
    reader the dataset uses; one exact whole-chromosome summary decompresses every block it
    can reach through the index, at native speed)."""
    reader = open_bigwig(path, what)
    covered, total = 0, 0.0
    try:
        for chrom in reader.chroms():
            for summary in ("bases_covered", "sum"):
                value = reader.values(chrom, bins=1, exact=True, summary=summary, fillna=0.0)[0]
                if summary == "sum":
                    total += float(value)
                else:
                    covered += int(value)
    except _NOT_READ_ERRORS:
        raise
    except BaseException as err:  # noqa: BLE001 - pyo3 panics derive from BaseException
        raise _Damaged(f"reading its records failed ({_reason(err)})") from None
    finally:
        reader.close()
    return covered, total


def _compare_summary(summary: tuple | None, covered: int, total: float) -> None:
    """The file's own total summary must describe what was read. Writers sum values in float32
    or float64, so sums agree only to rounding, relative to the sum of |values|, which is at
    most sqrt(bases x sum of squares)."""
    if summary is None:  # version 1 files have no summary
        return
    bases, _, _, expected, squares = summary
    magnitude = float(np.sqrt(max(bases * squares, 0.0)))
    if covered != bases:
        raise _Damaged(f"its records cover {covered} bases but its summary says {bases}: "
                       "some data blocks cannot be reached (damaged index or summary)")
    if not (abs(total - expected) <= 1e-5 * magnitude + 1e-6 or (np.isnan(total) and np.isnan(expected))):
        raise _Damaged(f"its values sum to {total:.6g} but its summary says {expected:.6g}")
