"""A live progress bar on stderr (frames, FPS, ETA) that stays silent when nobody is watching."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def expected_frames(total: int | None, limit: int | None) -> int | None:
    """The number of frames a run will handle, when known: the source's count capped by ``--max-frames``."""
    if limit is None:
        return total
    return min(total, limit) if total else limit


class FrameProgress:
    """Counts frames; draws a bar only when stderr is a terminal and ``enabled`` is true."""

    def __init__(self, total: int | None, *, enabled: bool = True, description: str = "frames") -> None:
        self.count = 0
        self.started = time.perf_counter()
        self._bar: Progress | None = None
        if enabled and sys.stderr.isatty():
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[fps]:>7.1f} FPS"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task(description, total=total, fps=0.0)
            self._bar.start()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def fps(self) -> float:
        elapsed = self.elapsed
        return self.count / elapsed if elapsed > 0 else 0.0

    def advance(self, frames: int = 1) -> None:
        self.count += frames
        if self._bar is not None:
            self._bar.update(self._task, advance=frames, fps=self.fps)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> FrameProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
