"""Live progress of a load test on stderr: one redrawn line on a terminal, periodic lines otherwise."""
from __future__ import annotations

import time
from typing import TextIO

BAR_WIDTH = 30
#: Seconds between two lines when the stream is not a terminal (logs, CI).
PLAIN_PERIOD = 5.0
TTY_PERIOD = 0.2


def formatProgress(elapsed: float, runTime: float, users: int, totalUsers: int, count: int, errors: int) -> str:
    """The progress text: bar, time, active virtual users, transactions, rate, errors."""
    fraction = min(1.0, max(0.0, elapsed / runTime)) if runTime > 0 else 1.0
    filled = int(round(fraction * BAR_WIDTH))
    rate = count / elapsed if elapsed > 0 else 0.0
    return (
        f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction * 100:3.0f}% "
        f"{min(elapsed, runTime):6.1f}/{runTime:g}s  users {users}/{totalUsers}  "
        f"transactions {count} ({rate:.1f}/s)  errors {errors}"
    )


class ProgressBar:
    """Draws the progress of a run; redraws in place (ANSI erase-line) only when the stream is a terminal."""

    def __init__(self, stream: TextIO, runTime: float, totalUsers: int, enabled: bool = True) -> None:
        self.stream = stream
        self.runTime = runTime
        self.totalUsers = totalUsers
        self.enabled = enabled
        try:
            self.isTerminal = bool(stream.isatty())
        except (AttributeError, ValueError):
            self.isTerminal = False
        self._lastDraw = 0.0
        self._drawn = False
        self._lastText = ""

    def update(self, elapsed: float, users: int, count: int, errors: int, force: bool = False) -> None:
        """Redraw if enough time passed since the last drawing (or when forced)."""
        if not self.enabled:
            return
        now = time.monotonic()
        period = TTY_PERIOD if self.isTerminal else PLAIN_PERIOD
        if not force and now - self._lastDraw < period:
            return
        self._lastDraw = now
        text = formatProgress(elapsed, self.runTime, users, self.totalUsers, count, errors)
        if text == self._lastText and not self.isTerminal:
            return
        self._lastText = text
        if self.isTerminal:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self._drawn = True
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print a line without garbling the bar."""
        if self.enabled and self.isTerminal and self._drawn:
            self.stream.write("\r\x1b[2K")
            self._drawn = False
            self._lastDraw = 0.0
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self, elapsed: float, users: int, count: int, errors: int) -> None:
        """Draw the final state and end the line."""
        if not self.enabled:
            return
        self.update(elapsed, users, count, errors, force=True)
        if self.isTerminal:
            self.stream.write("\n")
            self.stream.flush()
