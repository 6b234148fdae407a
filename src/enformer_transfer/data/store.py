"""Chunked on-disk arrays (zarr v3): written chunk by chunk, read window by window."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
