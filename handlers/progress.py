"""A progress bar on stderr for long CLI runs: tqdm's when it is installed, else a small one."""

from __future__ import annotations

import contextlib
import importlib
import sys
import time
from typing import Any, TextIO


class ProgressBar:
    """`update(done, total)` as often as wanted; `close()` once. Output goes to stderr so that
    stdout stays the command's result."""

    def __init__(self, label: str, *, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self._bar: Any = None
        self._last = 0.0
        self._done = 0
        self._total = 0
        self._tqdm: Any = None
        with contextlib.suppress(ImportError):  # optional, and without type stubs
            self._tqdm = importlib.import_module("tqdm").tqdm

    def update(self, done: int, total: int) -> None:
        if self._tqdm is not None:
            if self._bar is None:
                self._bar = self._tqdm(
                    total=total, desc=self.label, unit="rec", file=self.stream, leave=True
                )
            self._bar.total = total
            self._bar.update(max(0, done - self._bar.n))
            return
        self._done, self._total = done, total
        now = time.monotonic()
        if done < total and now - self._last < 0.2:
            return
        self._last = now
        self._draw()

    def _draw(self) -> None:
        width = 30
        filled = width * self._done // self._total if self._total else width
        share = 100 * self._done // self._total if self._total else 100
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {share:3d}% {self._done}/{self._total}")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._tqdm is None and self._total:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
