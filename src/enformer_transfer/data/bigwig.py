"""BigWig reading (pybigtools): per-base values with NaN for uncovered bases."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..genome.chroms import ChromNames


def open_bigwig(path: Path | str):
    import pybigtools

    try:
        return pybigtools.open(str(path))
    except Exception as err:
        raise InputError(f"{path}: cannot open as BigWig ({err})") from None


def bigwig_chrom_sizes(path: Path | str) -> dict[str, int]:
    reader = open_bigwig(path)
    try:
        return dict(reader.chroms())
    finally:
        reader.close()


class CoverageReader:
    """Reads per-base values of many BigWigs over one interval into a (tracks, length) array.

    ``chrom_maps[t]`` maps a window chromosome to track t's name for it (None: the file has no
    such chromosome, so every base is uncovered).
    """

    def __init__(self, files: list[str], chrom_maps: list[dict[str, str | None]]):
        self.files = files
        self.chrom_maps = chrom_maps
        self._readers = [None] * len(files)

    def _reader(self, t: int):
        if self._readers[t] is None:
            self._readers[t] = open_bigwig(self.files[t])
        return self._readers[t]

    def read(self, chrom: str, start: int, end: int, out: np.ndarray | None = None,
             fill: float = np.nan) -> np.ndarray:
        """float64 (tracks, end - start); ``fill`` where uncovered or beyond the chromosome."""
        length = end - start
        if out is None:
            out = np.empty((len(self.files), length), dtype=np.float64)
        for t in range(len(self.files)):
            name = self.chrom_maps[t].get(chrom)
            if name is None:
                out[t] = fill
                continue
            lo = max(0, start)
            if lo > start:  # before the chromosome start
                out[t, : lo - start] = fill
            self._reader(t).values(name, lo, end, fillna=fill, oob=fill, arr=out[t, lo - start :])
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
        names = ChromNames(bigwig_chrom_sizes(file), mode)
        missing = names.missing(chroms)
        if missing and not allow_missing:
            raise InputError(
                mismatch_message(f"BigWig {file} (track {t} of the {table})", missing, names.names, mode)
                + "; or pass --allow-missing-chroms to treat them as uncovered"
            )
        maps.append({c: names.resolve(c) for c in chroms})
    return maps
