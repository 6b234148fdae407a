"""One progress display for every long step (tqdm on stderr): stage, done / total, rate, ETA,
left on screen as the stage's one-line summary. Drawn only on a terminal; elsewhere (a log, a
pipe, CI) nothing is printed and the summary goes to the log file."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("enformer_transfer.progress")

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar:24}| {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}]{postfix}"


def _terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class Progress:
    """``Progress(total, "embed", "windows")``; ``update(n)`` as work is done; the display
    closes itself when ``total`` is reached (or on :meth:`close`)."""

    def __init__(self, total: int, what: str, unit: str = "windows", every: float = 0.5, enabled: bool = True):
        self.total, self.what, self.unit = int(total), what, unit
        self.done = 0
        self.start = time.time()
        self._closed = False
        self._bar = None
        if enabled and self.total > 0 and _terminal():
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=what, unit=unit, mininterval=every, file=sys.stderr,
                             dynamic_ncols=True, leave=True, bar_format=BAR_FORMAT)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        if self.total and self.done >= self.total:
            self.close()

    def set_postfix(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        log.debug("%s", self.summary())

    def summary(self) -> str:
        seconds = max(time.time() - self.start, 1e-9)
        return (f"{self.what}: {self.done}/{self.total} {self.unit} in {seconds:.1f} s "
                f"({self.done / seconds:.1f} {self.unit}/s)")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def lightning_progress(what: str, enabled: bool = True) -> list:
    """Callbacks that show a Lightning fit through :class:`Progress` (optimizer steps, with the
    epoch and the latest validation metric); pass them with ``enable_progress_bar=False``."""
    from lightning.pytorch.callbacks import Callback

    from .console import route_library_logs

    route_library_logs()

    class _FitProgress(Callback):
        def __init__(self):
            self.bar: Progress | None = None

        def on_train_start(self, trainer, pl_module) -> None:
            total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else trainer.estimated_stepping_batches
            try:
                total = int(total)
            except (OverflowError, ValueError, TypeError):
                total = 0
            self.bar = Progress(total, what, "steps", enabled=enabled and trainer.is_global_zero)
            if trainer.global_step:  # a resumed fit starts where it was
                self.bar.update(int(trainer.global_step))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if self.bar is not None and trainer.global_step > self.bar.done:
                self.bar.update(int(trainer.global_step) - self.bar.done)

        def on_validation_end(self, trainer, pl_module) -> None:
            if self.bar is None or trainer.sanity_checking:
                return
            shown = [f"epoch {trainer.current_epoch}"]
            for key in ("val_loss", "val_pearson"):
                value = trainer.callback_metrics.get(key)
                if value is not None:
                    shown.append(f"{key} {float(value):.4f}")
            self.bar.set_postfix(", ".join(shown))

        def on_train_end(self, trainer, pl_module) -> None:
            if self.bar is not None:
                self.bar.close()

    return [_FitProgress()]
