"""Genome access, one-hot encoding, windows and bin coordinates."""

from .chroms import ChromNames
from .onehot import one_hot
from .sequence import Genome
from .windows import Windows, generate_windows, read_windows_bed

__all__ = ["ChromNames", "Genome", "Windows", "generate_windows", "one_hot", "read_windows_bed"]
