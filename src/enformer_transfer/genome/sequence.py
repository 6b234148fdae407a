"""Genome access from FASTA (plain or bgzip, via pyfaidx) or 2bit (via py2bit)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .chroms import ChromNames


class Genome:
    """Random access to a genome's sequence by (chrom, start, end), 0-based half-open."""

    def __init__(self, path: Path | str, chrom_aliases: str = "none"):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: genome file not found")
        with open(self.path, "rb") as handle:
            magic = handle.read(4)
        self.is_2bit = magic in (b"\x43\x27\x41\x1a", b"\x1a\x41\x27\x43")
        try:
            if self.is_2bit:
                import py2bit

                self._twobit = py2bit.open(str(self.path))
                self.sizes = dict(self._twobit.chroms())
            else:
                import pyfaidx

                self._fasta = pyfaidx.Fasta(
                    str(self.path), as_raw=True, sequence_always_upper=True, rebuild=False
                )
                self.sizes = {name: len(rec) for name, rec in self._fasta.records.items()}
        except InputError:
            raise
        except Exception as err:  # pyfaidx/py2bit raise many types for malformed files
            raise InputError(
                f"{self.path}: cannot read as FASTA or 2bit ({type(err).__name__}: {err}); "
                "a compressed FASTA must be bgzip-compressed (bgzip, not gzip)"
            ) from None
        self.names = ChromNames(self.sizes, chrom_aliases)

    def resolve(self, chrom: str) -> str:
        name = self.names.resolve(chrom)
        if name is None:
            raise InputError(f"{self.path}: no chromosome {chrom!r}")
        return name

    def chrom_size(self, chrom: str) -> int:
        return self.sizes[self.resolve(chrom)]

    def fetch(self, chrom: str, start: int, end: int) -> str:
        """Sequence of [start, end) clipped to the chromosome (upper case)."""
        name = self.resolve(chrom)
        size = self.sizes[name]
        start, end = max(0, start), min(size, end)
        if end <= start:
            return ""
        if self.is_2bit:
            return self._twobit.sequence(name, start, end).upper()
        return self._fasta[name][start:end]

    def fetch_padded(self, chrom: str, start: int, end: int) -> tuple[str, int, int]:
        """Sequence of [start, end) plus how many positions lie before/after the chromosome."""
        size = self.chrom_size(chrom)
        left = max(0, -start)
        right = max(0, end - size)
        return self.fetch(chrom, start, end), left, right

    def one_hot(self, chrom: str, start: int, end: int, pad_value: float = 0.25):
        """(end - start, 4) float32 one-hot of [start, end) in ACGT order; N is all zeros and
        positions beyond the chromosome ends are ``pad_value`` on every channel."""
        from .onehot import one_hot_padded

        seq, left, right = self.fetch_padded(chrom, start, end)
        return one_hot_padded(seq, left, right, pad_value)
