"""Chromosome-name matching between genome, BigWigs, windows and blacklists (chr1 vs 1, chrM vs MT)."""

from __future__ import annotations

from collections.abc import Iterable


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


def mismatch_message(source: str, missing: list[str], available: Iterable[str], mode: str) -> str:
    avail = sorted(available)
    shown = ", ".join(avail[:6]) + (", ..." if len(avail) > 6 else "")
    hint = ""
    if mode == "none" and any(
        ChromNames(avail, "auto").resolve(c) is not None for c in missing
    ):
        hint = "; the names differ only by a prefix: use --chrom-aliases auto"
    return (
        f"{source} has no chromosome {', '.join(missing[:6])}"
        f"{' ...' if len(missing) > 6 else ''} (it has: {shown}){hint}"
    )
