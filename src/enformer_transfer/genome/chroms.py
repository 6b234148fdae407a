"""Chromosome-name matching between genome, BigWigs, windows and blacklists (chr1 vs 1, chrM vs MT)."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import InputError


def _alias_candidates(name: str) -> list[str]:
    out = []
    bare = name[3:] if name.startswith("chr") else name
    if bare in ("M", "MT"):
        out += ["chrM", "MT", "M", "chrMT"]
    out += [bare, "chr" + bare]
    return [c for c in out if c != name]


class ChromNames:
    """Maps the windows' chromosome names to the names one resource (a file) uses.

    ``mode='none'`` accepts exact names only; ``mode='auto'`` also accepts the usual aliases
    (``chr1``/``1``, ``chrM``/``MT``).
    """

    def __init__(self, names: Iterable[str], mode: str = "none"):
        self.names = set(names)
        self.mode = mode

    def resolve(self, chrom: str) -> str | None:
        if chrom in self.names:
            return chrom
        if self.mode == "auto":
            for candidate in _alias_candidates(chrom):
                if candidate in self.names:
                    return candidate
        return None

    def missing(self, chroms: Iterable[str]) -> list[str]:
        return sorted({c for c in chroms if self.resolve(c) is None})


def differ_by_prefix(missing: Iterable[str], available: Iterable[str]) -> bool:
    """Whether some of ``missing`` are names of ``available`` under the usual aliases (1 / chr1)."""
    names = ChromNames(available, "auto")
    return any(names.resolve(c) is not None for c in missing)


def mismatch_message(source: str, missing: list[str], available: Iterable[str], mode: str) -> str:
    """'SOURCE has no chromosome 4 (it has: chr1, ...)', with the fix when the names differ only by
    a prefix: --chrom-aliases, a flag of every command that reads coordinates."""
    avail = sorted(available)
    shown = ", ".join(avail[:6]) + (", ..." if len(avail) > 6 else "")
    hint = ""
    if mode == "none" and differ_by_prefix(missing, avail):
        hint = "; the names differ only by a prefix: use --chrom-aliases auto"
    return (
        f"{source} has no chromosome {', '.join(missing[:6])}"
        f"{' ...' if len(missing) > 6 else ''} (it has: {shown}){hint}"
    )


def resolve_chroms(chroms: Iterable[str], available: Iterable[str], mode: str, source: str,
                   what: str = "the genome", unknown: str = "error") -> dict[str, str | None]:
    """Each distinct chromosome name of a file (``source``) -> its name in ``available`` by the
    alias rule ``mode``. A name ``available`` lacks is refused (``unknown='error'``) with the names
    it has and the alias fix; ``unknown='keep'`` maps it to None instead (a region on a chromosome
    without windows), unless it differs from one only by a prefix or no name matches at all."""
    available = list(available)
    names = ChromNames(available, mode)
    resolved = {chrom: names.resolve(chrom) for chrom in dict.fromkeys(chroms)}
    missing = [c for c, name in resolved.items() if name is None]
    refuse = missing and (unknown == "error" or len(missing) == len(resolved)
                          or (mode == "none" and differ_by_prefix(missing, available)))
    if refuse:
        raise InputError(f"{source}: {mismatch_message(what, missing, available, mode)}")
    return resolved
