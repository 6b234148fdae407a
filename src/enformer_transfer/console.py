"""What a command shows on the console (--quiet, default, --verbose) and what it keeps in the
run directory's log file.

- default: our INFO messages and warnings; Lightning's start-up lines (GPU/TPU available, tips,
  "Trainer.fit stopped") and third-party warnings go to the log file only;
- ``--quiet``: errors only (a command's final summary lines are printed to stdout regardless);
- ``--verbose``: everything, ours at DEBUG level included.

The log file (``RUN_DIR/enformer-transfer.log``) always gets every message of INFO level and above
(DEBUG too with ``--verbose``).
"""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

# loggers of libraries that announce themselves; their INFO lines are for the log file
_CHATTY = ("lightning", "lightning_fabric", "pytorch_lightning", "torch", "py.warnings")
_MARK = "_enformer_transfer_console"
FILE_ONLY = "enformer_transfer.logfile"  # a logger whose messages go to the log file alone


@dataclass(frozen=True)
class ConsoleMode:
    quiet: bool = False
    verbose: bool = False

    @property
    def level(self) -> int:
        return logging.ERROR if self.quiet else logging.DEBUG if self.verbose else logging.INFO


class _ConsoleFilter(logging.Filter):
    def __init__(self, mode: ConsoleMode):
        super().__init__()
        self.mode = mode

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == FILE_ONLY:
            return False
        if self.mode.verbose or record.levelno >= logging.ERROR:
            return True
        chatty = any(record.name == n or record.name.startswith(n + ".") for n in _CHATTY)
        return not chatty


def setup_console(quiet: bool = False, verbose: bool = False, log_file: Path | None = None) -> ConsoleMode:
    """Route every log message of this process: to stderr by mode, to ``log_file`` in full.
    Idempotent: calling it again replaces what an earlier call set up."""
    mode = ConsoleMode(quiet=quiet, verbose=verbose)
    teardown_console()
    root = logging.getLogger()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(mode.level)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    console.addFilter(_ConsoleFilter(mode))
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        try:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            file_handler = logging.FileHandler(log_file, encoding="utf-8", delay=True)
        except OSError:
            file_handler = None  # a read-only run directory still runs; it just keeps no log
        if file_handler is not None:
            file_handler.setLevel(logging.DEBUG)
            file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            handlers.append(file_handler)
    for handler in handlers:
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("enformer_transfer").setLevel(logging.DEBUG if verbose else logging.INFO)
    route_library_logs()
    for noisy in ("matplotlib", "PIL", "fsspec", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)  # library warnings: the log file; the console with --verbose
    if not verbose:
        # Lightning on a newer torch warns about its own internals; nothing a user can act on
        warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated")
    return mode


_OWN_HANDLERS = ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning",
                 "torchmetrics")


def route_library_logs() -> None:
    """Libraries that give their loggers a handler of their own when imported (Lightning prints
    its lines twice then): their messages reach ours only. Call after importing them."""
    if not any(getattr(h, _MARK, False) for h in logging.getLogger().handlers):
        return  # used as a library: leave the application's logging alone
    for name in _OWN_HANDLERS:
        chatty = logging.getLogger(name)
        for handler in list(chatty.handlers):
            if not isinstance(handler, logging.NullHandler):
                chatty.removeHandler(handler)
        chatty.propagate = True


def teardown_console() -> None:
    """Remove (and close) the handlers an earlier :func:`setup_console` added."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            root.removeHandler(handler)
            handler.close()
    logging.captureWarnings(False)
