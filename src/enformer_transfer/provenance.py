"""Moved to ``enformer_transfer.rundir.provenance``; this name is kept for one release."""

from .rundir.provenance import *  # noqa: F403
