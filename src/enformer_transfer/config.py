"""Moved to ``enformer_transfer.rundir.config``; this name is kept for one release."""

from .rundir.config import *  # noqa: F403
