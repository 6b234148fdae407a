"""Moved to ``enformer_transfer.rundir.stage``; this name is kept for one release."""

from .rundir.stage import *  # noqa: F403
