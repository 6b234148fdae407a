"""Basenji TFRecords without TensorFlow: read and write ``{split}-{i}.tfr`` files.

Format (reference.md section 3): ZLIB-compressed TFRecord files of ``tf.train.Example``
protobufs, one per window, in sequences.bed order within a split; features are raw bytes:
``sequence`` = bool one-hot (seq_length, 4) ACGT or uint8 base indices (A0 C1 G2 T3 other 4),
``target`` = float16 (target_length, num_targets), bin-major. A record is framed as
uint64 length, masked CRC32C of the length, data, masked CRC32C of the data.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fs import write_bytes_atomic

_MASK_DELTA = 0xA282EAD8


def _crc32c(data: bytes) -> int:
    import google_crc32c

    return google_crc32c.value(data)


def _masked_crc(data: bytes) -> int:
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# --- the tf.train.Example protobuf, only what Basenji uses ---------------------------------

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, bytes]]:
    """(field number, payload) of the length-delimited fields of a protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 2:
            length, pos = _varint(buf, pos)
            yield number, buf[pos : pos + length]
            pos += length
        elif wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 5:
            pos += 4
        elif wire == 1:
            pos += 8
        else:
            raise InputError(f"unsupported protobuf wire type {wire}")


def parse_example(record: bytes) -> dict[str, bytes]:
    """Bytes features of a serialized tf.train.Example."""
    out = {}
    for number, features in _fields(record):
        if number != 1:
            continue
        for entry_number, entry in _fields(features):
            if entry_number != 1:
                continue
            key, value = None, b""
            for n, payload in _fields(entry):
                if n == 1:
                    key = payload.decode()
                elif n == 2:
                    for kind, data in _fields(payload):
                        if kind == 1:  # BytesList
                            value = b"".join(v for m, v in _fields(data) if m == 1)
            if key is not None:
                out[key] = value
    return out


def _length_delimited(number: int, payload: bytes) -> bytes:
    key = (number << 3) | 2
    return _encode_varint(key) + _encode_varint(len(payload)) + payload


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def serialize_example(features: dict[str, bytes]) -> bytes:
    entries = b""
    for key, value in features.items():
        feature = _length_delimited(1, _length_delimited(1, value))  # Feature.bytes_list.value
        entries += _length_delimited(1, _length_delimited(1, key.encode()) + _length_delimited(2, feature))
    return _length_delimited(1, entries)


# --- files ---------------------------------------------------------------------------------

def read_records(path: Path | str) -> Iterator[bytes]:
    """Records of one ZLIB-compressed TFRecord file, CRCs checked."""
    path = Path(path)
    data = zlib.decompress(path.read_bytes())
    pos = 0
    while pos < len(data):
        header = data[pos : pos + 12]
        (length,) = struct.unpack("<Q", header[:8])
        if struct.unpack("<I", header[8:12])[0] != _masked_crc(header[:8]):
            raise InputError(f"{path}: corrupt TFRecord (length checksum) at byte {pos}")
        record = data[pos + 12 : pos + 12 + length]
        (crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
        if crc != _masked_crc(record):
            raise InputError(f"{path}: corrupt TFRecord (data checksum) at byte {pos}")
        yield record
        pos += 16 + length


def write_records(path: Path | str, records: list[bytes]) -> None:
    """A ZLIB-compressed TFRecord file, written under a temporary name, then renamed."""
    path = Path(path)
    body = bytearray()
    for record in records:
        length = struct.pack("<Q", len(record))
        body += length + struct.pack("<I", _masked_crc(length)) + record + struct.pack("<I", _masked_crc(record))
    write_bytes_atomic(path, zlib.compress(bytes(body)), fsync=False)


def split_files(folder: Path | str, split: str) -> list[Path]:
    """``{split}-{i}.tfr`` (Basenji) or ``{split}-0-{i}.tfr`` (Enformer's), in numeric order."""
    pattern = re.compile(rf"^{re.escape(split)}-(?:0-)?(\d+)\.tfr$")
    found = [(int(m.group(1)), p) for p in Path(folder).iterdir() if (m := pattern.match(p.name))]
    return [p for _, p in sorted(found)]


def read_split(folder: Path | str, split: str, statistics: dict) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(sequence as uint8 base indices (seq_length,), targets float16 (target_length, num_targets))."""
    seq_length = statistics["seq_length"]
    shape = (statistics["target_length"], statistics["num_targets"])
    for path in split_files(folder, split):
        for record in read_records(path):
            features = parse_example(record)
            raw = features["sequence"]
            if len(raw) == seq_length * 4:  # bool one-hot
                onehot = np.frombuffer(raw, dtype=np.uint8).reshape(seq_length, 4)
                seq = np.where(onehot.any(1), onehot.argmax(1), 4).astype(np.uint8)
            elif len(raw) == seq_length:
                seq = np.frombuffer(raw, dtype=np.uint8).copy()
            else:
                raise InputError(f"{path}: sequence of {len(raw)} bytes fits neither one-hot nor base "
                                 f"indices of seq_length {seq_length} (statistics.json)")
            targets = np.frombuffer(features["target"], dtype=np.float16)
            if targets.size != shape[0] * shape[1]:
                raise InputError(f"{path}: target of {targets.size} values, statistics.json says {shape}")
            yield seq, targets.reshape(shape)


def read_statistics(folder: Path | str) -> dict:
    path = Path(folder) / "statistics.json"
    if not path.is_file():
        raise InputError(f"{folder}: no statistics.json (a Basenji data folder has one next to tfrecords/)")
    return json.loads(path.read_text())


def export_run(run, out: Path | str, windows_per_file: int = 256, one_hot: bool = True, force: bool = False) -> Path:
    """Basenji TFRecords of a run's dataset: sequences of the BED rows from the genome, our
    targets; with sequences.bed, targets.txt and statistics.json beside them. Written in
    ``OUT.partial`` and renamed to ``OUT`` when complete."""
    from ..fs import atomic_folder
    from ..genome.onehot import base_indices_padded
    from ..targets.table import write_targets_table

    geometry = run.geometry
    genome = run.genome()
    rows = {s: run.windows(s) for s in run.splits}
    lengths = {int(r) for s in rows for r in (rows[s]["row_end"] - rows[s]["row_start"])}
    if len(lengths) != 1:
        raise InputError("TFRecords need one sequence length; this dataset's BED rows have several")
    seq_length = lengths.pop()
    with atomic_folder(out, force) as work:
        (work / "tfrecords").mkdir(parents=True, exist_ok=True)
        for split, table in rows.items():
            targets = run.targets(split)
            for file_index, start in enumerate(range(0, len(table), windows_per_file)):
                records = []
                for i in range(start, min(len(table), start + windows_per_file)):
                    w = table.iloc[i]
                    seq, left, right = genome.fetch_padded(w.chrom, int(w.row_start), int(w.row_end))
                    idx = base_indices_padded(seq, left, right)
                    sequence = (np.eye(5, 4, dtype=bool)[idx] if one_hot else idx).tobytes()
                    records.append(serialize_example({"sequence": sequence,
                                                      "target": np.asarray(targets[i]).astype("<f2").tobytes()}))
                write_records(work / "tfrecords" / f"{split}-{file_index}.tfr", records)
        bed = [f"{w.chrom}\t{w.row_start}\t{w.row_end}\t{s}" for s, t in rows.items() for w in t.itertuples()]
        (work / "sequences.bed").write_text("\n".join(bed) + "\n")
        write_targets_table(run.tracks, work / "targets.txt")
        statistics = {
            "num_targets": len(run.tracks), "seq_length": seq_length, "seq_1hot": one_hot,
            "pool_width": geometry.bin_size, "crop_bp": (seq_length - geometry.target_interval_bp) // 2,
            "target_length": geometry.n_bins,
            **{f"{s}_seqs": len(t) for s, t in rows.items()},
        }
        (work / "statistics.json").write_text(json.dumps(statistics, indent=2))
    return Path(out)


