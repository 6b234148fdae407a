"""Error types: every failure a user can act on has a one-line message naming the file and the fix."""

from __future__ import annotations


class EnformerTransferError(Exception):
    """Base class of every error this tool raises on purpose (the CLI prints it and exits 2)."""


class InputError(EnformerTransferError):
    """Bad input: the message names the file, the row and the fix."""


class StaleStageError(EnformerTransferError):
    """A finished stage exists but was built from different inputs or config."""


class IntegrityError(EnformerTransferError):
    """A file or store is damaged or changed since it was written: the message names it and
    the command that rebuilds it."""


class DiskFullError(EnformerTransferError):
    """No space left on a device while writing."""


class StageLockedError(EnformerTransferError):
    """Another process is running the same stage on the same run directory."""
