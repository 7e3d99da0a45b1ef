"""A live progress bar on stderr (frames, recent FPS, ETA) that stays silent when nobody is watching."""

from __future__ import annotations

import sys
import time
from collections import deque

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

WINDOW = 3.0  # seconds of history behind the FPS shown


def expected_frames(total: int | None, limit: int | None) -> int | None:
    """The number of frames a run will handle, when known: the source's count capped by ``--max-frames``."""
    if limit is None:
        return total
    return min(total, limit) if total else limit


class FrameProgress:
    """Counts frames; draws a bar only when stderr is a terminal and ``enabled`` is true.

    The FPS shown is over the last few seconds (the average is in the summary), the ETA comes from it;
    before the first frame the bar says what is happening (``status("loading model")``); at the end
    the bar's last state stays on screen above the summary.
    """

    def __init__(self, total: int | None, *, enabled: bool = True, description: str = "frames") -> None:
        self.count = 0
        self.started = time.perf_counter()
        self.total = total
        self._description = description
        self._recent: deque[tuple[float, int]] = deque()
        self._bar: Progress | None = None
        if enabled and sys.stderr.isatty():
            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[eta]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._bar.add_task(description, total=total, rate="", eta="")
            self._bar.start()

    @property
    def console(self) -> Console | None:
        """The console the bar draws on (print through it so lines appear above the bar)."""
        return self._bar.console if self._bar is not None else None

    def status(self, text: str) -> None:
        """Say what happens before the first frame (``loading model``); the spinner turns meanwhile."""
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def fps(self) -> float:
        """Average frames per second since the start."""
        elapsed = self.elapsed
        return self.count / elapsed if elapsed > 0 else 0.0

    @property
    def recent_fps(self) -> float | None:
        """Frames per second over the last ``WINDOW`` seconds (None before two samples)."""
        if len(self._recent) < 2:
            return None
        (t0, n0), (t1, n1) = self._recent[0], self._recent[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None

    def advance(self, frames: int = 1) -> None:
        self.count += frames
        now = time.perf_counter()
        self._recent.append((now, self.count))
        while len(self._recent) > 2 and now - self._recent[0][0] > WINDOW:
            self._recent.popleft()
        if self._bar is not None:
            rate = self.recent_fps
            eta = ""
            if rate and self.total:
                left = max(0, self.total - self.count) / rate
                eta = f"ETA {int(left // 60)}:{int(left % 60):02d}"
            self._bar.update(
                self._task,
                advance=frames,
                description=self._description,
                rate=f"{rate:7.1f} FPS" if rate else "",
                eta=eta,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> FrameProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
