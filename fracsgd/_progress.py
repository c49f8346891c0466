"""A minimal progress bar on stderr (no dependency): redraws in place on a terminal, prints a
line every 10 % otherwise (logs, CI). Advanced by the host between compiled chunks, never from
inside a compiled program."""

from __future__ import annotations

import sys
import time

import numpy as np


class Progress:
    def __init__(self, total: int, desc: str, *, enabled: bool = True, unit: str = "steps"):
        if not isinstance(enabled, bool | np.bool_):  # "no" would be truthy
            raise ValueError(f"progress must be True or False, got {enabled!r}")
        self.total = max(int(total), 1)
        self.desc = desc
        self.enabled = enabled
        self.unit = unit
        self.done = 0
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last_decile = -1

    def update(self, n: int) -> None:
        self.done = min(self.done + int(n), self.total)
        if not self.enabled:
            return
        frac = self.done / self.total
        elapsed = time.perf_counter() - self.start
        eta = elapsed / frac * (1 - frac) if frac > 0 else float("nan")
        if self.tty:
            bar = "#" * int(30 * frac)
            sys.stderr.write(
                f"\r{self.desc} [{bar:<30}] {self.done}/{self.total} {self.unit} "
                f"{elapsed:6.1f}s elapsed, ~{eta:5.1f}s left"
            )
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        else:
            decile = int(10 * frac)
            if decile != self._last_decile:
                self._last_decile = decile
                sys.stderr.write(
                    f"{self.desc}: {100 * frac:3.0f}% ({self.done}/{self.total} {self.unit}, "
                    f"{elapsed:.1f}s)\n"
                )
                sys.stderr.flush()
