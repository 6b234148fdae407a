"""The backbone families the tool knows, by kind: the one list to extend with a new family.

Each entry is ``"module:ClassName"`` inside this package, imported on first use, so a family's
model package is imported only when a backbone of that family is used.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import InputError
from .base import Family

FAMILIES: dict[str, str] = {
    "enformer": "enformer:EnformerFamily",
    "borzoi": "borzoi:BorzoiFamily",
    "flashzoi": "borzoi:FlashzoiFamily",
    "alphagenome": "alphagenome:AlphaGenomeFamily",
}
DEFAULT_KIND = "enformer"  # a hub name without --backbone-kind


def get_family(kind: str) -> Family:
    """The family of ``kind`` ("enformer", ...); InputError naming the known kinds otherwise."""
    if kind not in FAMILIES:
        raise InputError(f"backbone kind {kind!r} is not known (known: {', '.join(FAMILIES)})")
    module, _, name = FAMILIES[kind].partition(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)()


def detect_family(folder: Path | str) -> Family:
    """The family whose ``detects`` recognises the backbone folder (config.json + weights)."""
    for kind in FAMILIES:
        family = get_family(kind)
        if family.detects(Path(folder)):
            return family
    raise InputError(f"{folder}: config.json is no backbone of a known kind ({', '.join(FAMILIES)}); "
                     "write one with `enformer-transfer backbone init --kind KIND --out DIR`")
