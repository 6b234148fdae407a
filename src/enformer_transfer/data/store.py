"""Chunked on-disk arrays (zarr v3): written chunk by chunk, read window by window."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fs import write_bytes_atomic

# Largest finite float16: values stored as float16 are checked (or clipped, where documented) against it.
FLOAT16_MAX = float(np.finfo(np.float16).max)


def create_array(path: Path, name: str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype,
                 compress: bool = True) -> object:
    import zarr

    group = zarr.open_group(str(path), mode="a")
    if name in group:
        del group[name]
    kwargs = {} if compress else {"compressors": None}  # embeddings: float16 noise barely compresses
    return group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0, **kwargs)


def open_array(path: Path, name: str, mode: str = "r"):
    import zarr

    group = zarr.open_group(str(path), mode=mode)
    return group[name]


def has_array(path: Path, name: str) -> bool:
    import zarr

    if not Path(path).exists():
        return False
    return name in zarr.open_group(str(path), mode="r")


class ProgressLog:
    """Append-only log of finished chunk numbers; a torn last line (kill -9) is ignored."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def done(self) -> set[int]:
        if not self.path.exists():
            return set()
        out = set()
        for line in self.path.read_text().split("\n"):
            if line.endswith(";"):
                out.add(int(line[:-1]))
        return out

    def add(self, chunk: int) -> None:
        with open(self.path, "a") as handle:
            handle.write(f"\n{chunk};")
            handle.flush()


def chunk_ranges(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def iter_chunks(array, size: int | None = None):
    """(start, stop, values) over the first axis, one stored chunk at a time."""
    size = size or array.chunks[0]
    for start, stop in chunk_ranges(array.shape[0], size):
        yield start, stop, np.asarray(array[start:stop])


class RawWindowChunks:
    """Windows of an uncompressed zarr v3 array stored one window per chunk, read and written
    straight as chunk files: one ``readinto`` or one write + rename per window, no codec
    pipeline (3-4x faster than zarr's per-call path; a chunk is replaced atomically).
    ``RawWindowChunks.of(array)`` returns None for arrays that do not qualify."""

    def __init__(self, array):
        from zarr.storage import LocalStore

        self.root = Path(array.store_path.store.root) / array.store_path.path
        self.encoding = array.metadata.chunk_key_encoding
        self.shape = tuple(array.shape[1:])
        self.dtype = np.dtype(array.dtype).newbyteorder("<")
        self.fill = array.fill_value
        self.n_zero_axes = len(self.shape)
        assert isinstance(array.store_path.store, LocalStore)

    @classmethod
    def of(cls, array) -> RawWindowChunks | None:
        try:
            from zarr.codecs import BytesCodec
            from zarr.storage import LocalStore

            ok = (
                isinstance(array.store_path.store, LocalStore)
                and not array.compressors and not array.filters
                and isinstance(array.serializer, BytesCodec)
                and array.chunks[0] == 1 and tuple(array.chunks[1:]) == tuple(array.shape[1:])
                and str(array.serializer.endian.value) == "little"
            )
        except (AttributeError, ImportError):
            return None
        return cls(array) if ok else None

    def read_into(self, i: int, out: np.ndarray) -> None:
        path = self.root / self.encoding.encode_chunk_key((i,) + (0,) * self.n_zero_axes)
        try:
            with open(path, "rb") as handle:
                handle.readinto(memoryview(out.reshape(-1).view(np.uint8)))
        except FileNotFoundError:  # a chunk never written holds the fill value
            out[...] = self.fill

    def write(self, i: int, values: np.ndarray) -> None:
        path = self.root / self.encoding.encode_chunk_key((i,) + (0,) * self.n_zero_axes)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = np.ascontiguousarray(values, dtype=self.dtype)
        if data.shape != self.shape:
            raise ValueError(f"window {i}: shape {data.shape}, the store holds {self.shape}")
        write_bytes_atomic(path, memoryview(data.reshape(-1).view(np.uint8)), fsync=False)
