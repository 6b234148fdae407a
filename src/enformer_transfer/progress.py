"""A plain progress line with rate and ETA (stderr), and a summary line at the end."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, what: str, unit: str = "windows", every: float = 2.0, enabled: bool = True):
        self.total, self.what, self.unit, self.every = total, what, unit, every
        self.done = 0
        self.start = time.time()
        self._last = 0.0
        self.enabled = enabled and total > 0

    def update(self, n: int) -> None:
        self.done += n
        now = time.time()
        if self.enabled and (now - self._last >= self.every or self.done >= self.total):
            self._last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            end = "\n" if self.done >= self.total else "\r"
            sys.stderr.write(
                f"{self.what}: {self.done}/{self.total} {self.unit} "
                f"{rate:.1f} {self.unit}/s ETA {eta:.0f}s   {end}"
            )
            sys.stderr.flush()
