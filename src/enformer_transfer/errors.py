"""Error types: every failure a user can fix is an ``InputError`` with a one-line message."""

from __future__ import annotations


class EnformerTransferError(Exception):
    """Base class of every error this tool raises on purpose."""


class InputError(EnformerTransferError):
    """Bad input: the message names the file, the row and the fix."""


class StaleStageError(EnformerTransferError):
    """A finished stage exists but was built from different inputs or config."""
