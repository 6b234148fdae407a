"""Genome access from FASTA (plain or bgzip, via pyfaidx) or 2bit (via py2bit)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .chroms import ChromNames


def check_fasta_index(fasta: Path, compressed: bool = False) -> None:
    """Refuse a .fai index older than its FASTA or not matching it: an index left from before an
    edit makes every read after the edited place return other bases, with no error."""
    fai = Path(f"{fasta}.fai")
    if not fai.is_file():
        return  # pyfaidx builds it
    fix = f"delete {fai.name} (it is rebuilt from the FASTA) or re-index with 'samtools faidx {fasta.name}'"
    if fai.stat().st_mtime_ns < fasta.stat().st_mtime_ns:
        raise InputError(f"{fai}: the index is older than {fasta.name} (the FASTA changed after it was "
                         f"indexed); {fix}")
    if compressed:
        return  # offsets refer to the uncompressed text
    size = fasta.stat().st_size
    with open(fai) as index, open(fasta, "rb") as handle:
        for lineno, line in enumerate(index, 1):
            fields = line.rstrip("\n").split("\t")
            try:
                name, length, offset, bases, width = fields[0], *map(int, fields[1:5])
            except (ValueError, IndexError):
                raise InputError(f"{fai} row {lineno}: not a FASTA index line; {fix}") from None
            lines = -(-length // bases) if bases else 0
            end = offset + (lines - 1) * width + (length - (lines - 1) * bases) if lines else offset
            handle.seek(max(0, offset - len(name) - 256))
            before = handle.read(min(offset, len(name) + 256))
            header = before[:-1].rsplit(b"\n", 1)[-1] if before.endswith(b"\n") else b""
            if end > size or not header.startswith(b">") or header[1:].split()[:1] != [name.encode()]:
                raise InputError(f"{fai} row {lineno}: record {name!r} is not where the index says in "
                                 f"{fasta.name} (the FASTA changed after it was indexed); {fix}")


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

                check_fasta_index(self.path, compressed=magic[:2] == b"\x1f\x8b")
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
