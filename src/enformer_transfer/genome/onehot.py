"""One-hot encoding of DNA in ACGT order.

Conventions (documented choice): A C G T -> unit vectors; N and any other letter -> all
zeros (as in the reference study's loader); positions beyond a chromosome end -> ``pad_value``
on every channel: 0.25 each in the reference loader (``pad_value=0.25``, our default), or 0.
"""

from __future__ import annotations

import numpy as np

_LOOKUP = np.full(256, 4, dtype=np.uint8)
for _i, _base in enumerate("ACGT"):
    _LOOKUP[ord(_base)] = _i
    _LOOKUP[ord(_base.lower())] = _i


def base_indices(seq: str | bytes) -> np.ndarray:
    """uint8 base index per position: A0 C1 G2 T3, anything else 4."""
    if isinstance(seq, str):
        seq = seq.encode("ascii", errors="replace")
    return _LOOKUP[np.frombuffer(seq, dtype=np.uint8)]


def base_indices_padded(seq: str | bytes, left_pad: int, right_pad: int) -> np.ndarray:
    """Base indices of ``seq`` with ``left_pad``/``right_pad`` positions beyond the chromosome as 4."""
    return np.concatenate([np.full(left_pad, 4, np.uint8), base_indices(seq), np.full(right_pad, 4, np.uint8)])


def one_hot(seq: str | bytes, dtype: type = np.float32) -> np.ndarray:
    """(len, 4) one-hot in ACGT order; N is all zeros."""
    idx = base_indices(seq)
    eye = np.concatenate([np.eye(4, dtype=dtype), np.zeros((1, 4), dtype=dtype)])
    return eye[idx]


def one_hot_padded(
    seq: str | bytes, left_pad: int, right_pad: int, pad_value: float = 0.25, dtype: type = np.float32
) -> np.ndarray:
    """One-hot of ``seq`` with ``left_pad``/``right_pad`` positions beyond the chromosome ends."""
    core = one_hot(seq, dtype)
    if left_pad == 0 and right_pad == 0:
        return core
    out = np.full((left_pad + len(core) + right_pad, 4), pad_value, dtype=dtype)
    out[left_pad : left_pad + len(core)] = core
    return out
