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


class Interrupted(SystemExit):
    """The process received SIGTERM (a scheduler's time limit or preemption, ``kill``) or SIGINT
    (Ctrl+C): the stage stops where it is, its ``.partial`` folder kept for a resume, and the
    process exits 128 + the signal's number (143, 130) unless the command line says more.
    A ``SystemExit``, so that ``except Exception`` does not swallow it; not a
    ``KeyboardInterrupt``, which Lightning turns into exit status 1."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


def did_you_mean(word: str, choices, cutoff: float = 0.6) -> str:
    """' (did you mean 'x'?)' for the closest of ``choices`` to a misspelt ``word``, else ''."""
    import difflib

    options = [str(c) for c in choices]
    close = difflib.get_close_matches(str(word), options, n=1, cutoff=cutoff)
    if not close:  # case slips: 'class' for 'Class'
        lower = {o.lower(): o for o in options}
        close = difflib.get_close_matches(str(word).lower(), list(lower), n=1, cutoff=cutoff)
        close = [lower[c] for c in close]
    return f" (did you mean {close[0]!r}?)" if close else ""
