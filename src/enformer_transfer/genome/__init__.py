"""Genome access, one-hot encoding, windows and bin coordinates."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ChromNames": ".chroms",
    "Geometry": ".geometry",
    "one_hot": ".onehot",
    "Genome": ".sequence",
    "Windows": ".windows",
    "generate_windows": ".windows",
    "read_windows_bed": ".windows",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
