"""Moved to ``enformer_transfer.rundir.store``; this name is kept for one release."""

from ..rundir.store import *  # noqa: F403
