"""Moved to ``enformer_transfer.genome.regions``; this name is kept for one release."""

from ..genome.regions import *  # noqa: F403
