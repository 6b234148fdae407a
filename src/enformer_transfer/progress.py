"""One progress display for every long step: stage, done / total, rate, ETA.

- On a terminal: a tqdm bar on stderr, left on screen as the stage's one-line summary.
- Off a terminal (a batch job's log, SLURM, a pipe): one plain line on stderr every
  ``ENFORMER_TRANSFER_PROGRESS_SECONDS`` seconds (default 30; a steady interval, not a share of
  the work, so a log shows life at the same pace whatever the stage's length), and one at the end:
  ``embed: 1,204/34,021 windows (3.5 %), 4.3 windows/s, about 2 h 07 min left``. Work that ends
  within one interval prints nothing but its plan (below), if that.
- Everywhere: the plan, once the stage has run a short warm-up (the first update is start-up and
  left out; then at least ``WARMUP_SECONDS`` or 5 % of the work): ``embed: 34,021 windows, about
  2 h 10 min at 4.3 windows/s (measured on 96 windows)``. Stated only for work estimated to take
  longer than one interval.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from .console import FILE_ONLY

log = logging.getLogger("enformer_transfer.progress")

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar:24}| {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}]{postfix}"
INTERVAL_ENV = "ENFORMER_TRANSFER_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0
WARMUP_SECONDS = 5.0  # measured before the plan's estimate (after the first, start-up, update)
WARMUP_SHARE = 0.05  # ... or this share of the work, whichever comes first
_clock = time.monotonic  # rates and intervals (tests set their own clock)


def _terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def line_interval() -> float:
    """Seconds between progress lines off a terminal (``ENFORMER_TRANSFER_PROGRESS_SECONDS``)."""
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def duration(seconds: float) -> str:
    """'2 h 10 min', '14 min', '40 s'."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def plan_estimate(what: str, total: int, unit: str, measured: int, seconds: float) -> str:
    """The plan line of a stage: its work and the time it will take at the measured rate."""
    rate = measured / max(seconds, 1e-9)
    return (f"{what}: {total:,} {unit}, about {duration(total / rate)} at {rate:.3g} {unit}/s "
            f"(measured on {measured:,} {unit})")


class Progress:
    """``Progress(total, "embed", "windows")``; ``update(n)`` as work is done; the display
    closes itself when ``total`` is reached (or on :meth:`close`)."""

    def __init__(self, total: int, what: str, unit: str = "windows", every: float = 0.5, enabled: bool = True,
                 first_is_startup: bool = True):
        self.total, self.what, self.unit = int(total), what, unit
        self.done = 0
        self.start = _clock()
        self._closed = False
        self._bar = None
        self._lines = enabled and self.total > 0 and not _terminal()
        self._interval = line_interval()
        self._last_line = self.start
        # where the warm-up's measure starts: after the first update (model loading, workers starting),
        # or at the start for coarse units (a motif search per target)
        self._warm: tuple[float, int] | None = None if first_is_startup else (self.start, 0)
        self._planned = not (enabled and self.total > 0)
        if enabled and self.total > 0 and _terminal():
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=what, unit=unit, mininterval=every, file=sys.stderr,
                             dynamic_ncols=True, leave=True, bar_format=BAR_FORMAT)

    def update(self, n: int = 1) -> None:
        self.done += n
        now = _clock()
        if self._bar is not None:
            self._bar.update(n)
        if not self._planned:
            self._plan(now)
        if self._lines and self.done < self.total and now - self._last_line >= self._interval:
            self._print(self._status(now))
            self._last_line = now
        if self.total and self.done >= self.total:
            self.close()

    def _plan(self, now: float) -> None:
        if self._warm is None:
            self._warm = (now, self.done)
            return
        seconds, measured = now - self._warm[0], self.done - self._warm[1]
        if self.done >= self.total or seconds >= WARMUP_SECONDS or measured >= WARMUP_SHARE * self.total:
            self._planned = True
            if measured > 0 and self.done < self.total:
                rate = measured / max(seconds, 1e-9)
                if (self.total - self.done) / rate + (now - self.start) >= self._interval:
                    self._print(plan_estimate(self.what, self.total, self.unit, measured, seconds))

    def _status(self, now: float) -> str:
        seconds = max(now - self.start, 1e-9)
        rate = self.done / seconds
        left = f", about {duration((self.total - self.done) / rate)} left" if 0 < self.done < self.total else ""
        return (f"{self.what}: {self.done:,}/{self.total:,} {self.unit} ({100 * self.done / self.total:.1f} %), "
                f"{rate:.3g} {self.unit}/s{left}")

    def _print(self, text: str) -> None:
        """A line on stderr (above the bar on a terminal), and in the run's log file."""
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)
        logging.getLogger(FILE_ONLY).info("%s", text)

    def set_postfix(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._lines and _clock() - self.start >= self._interval:  # a long stage's last line
            self._print(self.summary())
        log.debug("%s", self.summary())

    def summary(self) -> str:
        seconds = max(_clock() - self.start, 1e-9)
        return (f"{self.what}: {self.done}/{self.total} {self.unit} in {seconds:.1f} s "
                f"({self.done / seconds:.1f} {self.unit}/s)")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
def lightning_progress(what: str, enabled: bool = True, total: int | None = None) -> list:
    """Callbacks that show a Lightning fit through :class:`Progress` (optimizer steps, with the
    epoch and the latest validation metric); pass them with ``enable_progress_bar=False``.
    ``total``: the optimizer steps the fit runs (a schedule's exact steps), else Lightning's
    estimate."""
    from lightning.pytorch.callbacks import Callback

    from .console import route_library_logs

    route_library_logs()

    class _FitProgress(Callback):
        def __init__(self):
            self.bar: Progress | None = None

        def on_train_start(self, trainer, pl_module) -> None:
            steps = total
            if steps is None:
                steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else trainer.estimated_stepping_batches
            try:
                steps = int(steps)
            except (OverflowError, ValueError, TypeError):
                steps = 0
            self.bar = Progress(steps, what, "steps", enabled=enabled and trainer.is_global_zero)
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
