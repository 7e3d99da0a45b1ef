"""Detections as JSON Lines: one object per frame, in order, written as soon as the frame is done.

Event lines (``{"event": ...}``) are written in the same file, in order with the frames of their stream.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import OutputError

if TYPE_CHECKING:
    from ..types import Event, Result, SourceInfo

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "detections.schema.json"


def result_record(result: Result) -> dict:
    """The JSONL object of one frame (see ``detections.schema.json``)."""
    frame = result.frame
    return {
        "stream": frame.stream,
        "frame": frame.index,
        "pts": round(frame.pts, 6),
        "wall": round(frame.wall, 6),
        "width": frame.width,
        "height": frame.height,
        "detections": result.detections.to_dict(),
    }


class JsonlSink:
    """Writes one line per frame (and per event) with one ``write`` system call each, so a crash leaves
    only whole lines. A failed write (disk full) is undone to the last whole line and raises
    :class:`~vidpipe.errors.OutputError` at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._good = 0  # bytes of whole lines written
        self.lines = 0

    def open(self, info: SourceInfo) -> None:
        if self._fd is not None:
            return  # one file for every stream
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write ({exc.strerror})") from None

    def write(self, result: Result) -> None:
        self._write_line(result_record(result))

    def event(self, event: Event) -> None:
        self._write_line(event.to_dict())

    def _write_line(self, record: dict) -> None:
        if self._fd is None:
            raise OutputError(f"{self.path}: not open")
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self._undo_partial_line()
            raise OutputError(
                f"{self.path}: cannot write ({exc.strerror}); it keeps its first {self.lines} whole lines"
            ) from None
        self._good += len(data)
        self.lines += 1

    def _undo_partial_line(self) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._good)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot finish writing ({exc.strerror})") from None
