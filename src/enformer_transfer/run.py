"""Moved to ``enformer_transfer.rundir.run``; this name is kept for one release."""

from .rundir.run import *  # noqa: F403
