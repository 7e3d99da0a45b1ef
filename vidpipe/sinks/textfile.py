"""An output file that only ever holds whole lines: each write is one system call, and a failed write
(disk full) is cut back to the last whole line and reported at once."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import OutputError


class WholeLinesFile:
    """Append-only text file written with ``os.write``; ``lines`` counts the lines on disk."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._good = 0  # bytes of whole lines written
        self.lines = 0

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write ({exc.strerror})") from None

    def write(self, text: str, lines: int = 1) -> None:
        """Append ``text`` (``lines`` whole lines, each ending in a newline)."""
        if self._fd is None:
            raise OutputError(f"{self.path}: not open")
        data = text.encode()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._good)
            raise OutputError(
                f"{self.path}: cannot write ({exc.strerror}); it keeps its first {self.lines} whole lines"
            ) from None
        self._good += len(data)
        self.lines += lines

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot finish writing ({exc.strerror})") from None
