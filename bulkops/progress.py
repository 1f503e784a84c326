"""A terminal progress bar for the engine's ``on_progress(stage, rows_done)``.

It draws one line per stage ("Validating", then "Writing"), redrawn in place
with ``\\r`` at most ``1 / min_interval`` times a second, and only on a
terminal: written to a file or a pipe it stays silent, so logs hold no
carriage-return noise.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import IO, Any

STAGE_LABELS = {"read": "Reading", "validate": "Validating", "write": "Writing"}
BAR_WIDTH = 30
MIN_BAR_WIDTH = 10


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def format_rate(rows: int, seconds: float) -> str:
    """``"2,439 rows/s"``; a rate over no time has no meaning yet."""
    if seconds <= 0:
        return "- rows/s"
    return f"{rows / seconds:,.0f} rows/s"


class ProgressBar:
    """Rows done out of ``total`` (``None``: unknown, then a count and a rate).

    Pass ``update`` as the engine's ``on_progress``; call ``finish`` when the
    engine returns (or fails) to end the line. Does nothing unless ``stream``
    is a terminal. Stages after the first go over the rows the first one
    counted, so they show a bar even when ``total`` was not known. ``columns``
    fixes the line width (default: the terminal's, asked at every redraw).
    """

    def __init__(
        self,
        stream: IO[str],
        *,
        total: int | None = None,
        min_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        columns: int | None = None,
    ) -> None:
        self.stream = stream
        self.total = total
        self.min_interval = min_interval
        self.clock = clock
        self.columns = columns
        self.enabled = is_terminal(stream)
        self.redraws = 0
        self._stage: str | None = None
        self._stage_total = total
        self._done = 0
        self._started = 0.0
        self._updated = 0.0
        self._drawn_at: float | None = None
        self._drawn_width = 0

    def update(self, stage: str, done: int) -> None:
        """Record ``done`` rows of ``stage``; redraw unless drawn very recently."""
        if not self.enabled:
            return
        now = self.clock()
        if stage != self._stage:
            # The new stage began when the last one reported its last rows.
            started = self._updated if self._stage is not None else now
            self._end_line()
            if self._stage is not None and self.total is None:
                self._stage_total = self._done
            self._stage, self._started, self._drawn_at = stage, started, None
        self._done, self._updated = done, now
        if self._drawn_at is None or now - self._drawn_at >= self.min_interval:
            self._draw(now - self._started)
            self._drawn_at = now

    def finish(self) -> None:
        """Draw the last state with its time and end the line."""
        if self.enabled:
            self._end_line()
            self._stage = None

    def _end_line(self) -> None:
        if self._stage is None:
            return
        self._draw(self._updated - self._started, final=True)
        self.stream.write("\n")
        self.stream.flush()
        self._drawn_width = 0

    def _draw(self, elapsed: float, *, final: bool = False) -> None:
        columns = self.columns or shutil.get_terminal_size().columns
        line = self.render(elapsed, final=final, width=columns - 1)
        padding = " " * max(self._drawn_width - len(line), 0)
        self.stream.write("\r" + line + padding)
        self.stream.flush()
        self._drawn_width = len(line)
        self.redraws += 1

    def render(self, elapsed: float, *, final: bool = False, width: int = 79) -> str:
        """The current stage's line after ``elapsed`` seconds, at most ``width`` long."""
        stage = self._stage or ""
        label = STAGE_LABELS.get(stage, stage.capitalize()).ljust(10)
        done, total = self._done, self._stage_total
        tail = f"  {format_rate(done, elapsed)}"
        if final:
            tail += f"  {elapsed:.1f} s"
        elif total and 0 < done < total and elapsed > 0:
            tail += f"  ETA {(total - done) / (done / elapsed):.0f} s"
        if not total:
            return f"{label} {done:,} rows{tail}"[:width]
        fraction = min(done / total, 1.0)
        counts = f" {fraction:4.0%}  {done:,}/{total:,} rows{tail}"
        # Room for the longest counts this stage can show, so the bar keeps its width.
        longest = len(f" 100%  {total:,}/{total:,} rows  999,999 rows/s  ETA 99999 s")
        bar_width = min(BAR_WIDTH, width - len(label) - 3 - longest)
        if bar_width < MIN_BAR_WIDTH:
            return f"{label}{counts}"[:width]
        filled = round(fraction * bar_width)
        return f"{label} [{'#' * filled}{'-' * (bar_width - filled)}]{counts}"[:width]
