"""Moved to ``enformer_transfer.rundir.layout``; this name is kept for one release."""

from .rundir.layout import *  # noqa: F403
