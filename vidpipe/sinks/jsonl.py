"""Detections as JSON Lines: one object per frame, in order, written as soon as the frame is done.

Event lines (``{"event": ...}``) are written in the same file, in order with the frames of their stream:
stream events (reconnects, damaged data) before the frame they precede, analytics events (a line
crossed, a zone entered) after the frame where they happened.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .base import BaseSink
from .textfile import WholeLinesFile

if TYPE_CHECKING:
    from ..types import Event, Result, SourceInfo

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "detections.schema.json"


class JsonlSink(BaseSink):
    """Writes one line per frame (and per event) with one ``write`` system call each, so a crash leaves
    only whole lines. A failed write (disk full) is undone to the last whole line and raises
    :class:`~vidpipe.errors.OutputError` at once."""

    def __init__(self, path: str | Path) -> None:
        self._file = WholeLinesFile(path)
        self.path = self._file.path

    @property
    def lines(self) -> int:
        return self._file.lines

    def open_stream(self, info: SourceInfo | None) -> None:
        if not self._file.is_open:  # one file for every stream
            self._file.open()

    def write(self, result: Result) -> None:
        self._write_line(result.record())

    def event(self, event: Event) -> None:
        self._write_line(event.to_dict())

    def _write_line(self, record: dict) -> None:
        if not self._file.is_open:  # (an event of a stream that never opened)
            self._file.open()
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()
