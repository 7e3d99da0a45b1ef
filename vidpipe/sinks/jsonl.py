"""Detections as JSON Lines: one object per frame, in order, written as soon as the frame is done.

Event lines (``{"event": ...}``) are written in the same file, in order with the frames of their stream:
stream events (reconnects, damaged data) before the frame they precede, analytics events (a line
crossed, a zone entered) after the frame where they happened.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .textfile import WholeLinesFile

if TYPE_CHECKING:
    from ..types import Event, Result, SourceInfo

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "detections.schema.json"


def result_record(result: Result) -> dict:
    """The JSONL object of one frame (see ``detections.schema.json``)."""
    frame = result.frame
    record = {
        "stream": frame.stream,
        "frame": frame.index,
        "pts": round(frame.pts, 6),
        "wall": round(frame.wall, 6),
        "width": frame.width,
        "height": frame.height,
        "detections": result.detections.to_dict(),
    }
    if result.zones is not None:
        record["zones"] = result.zones
    return record


class JsonlSink:
    """Writes one line per frame (and per event) with one ``write`` system call each, so a crash leaves
    only whole lines. A failed write (disk full) is undone to the last whole line and raises
    :class:`~vidpipe.errors.OutputError` at once."""

    def __init__(self, path: str | Path) -> None:
        self._file = WholeLinesFile(path)
        self.path = self._file.path

    @property
    def lines(self) -> int:
        return self._file.lines

    def open(self, info: SourceInfo) -> None:
        if not self._file.is_open:  # one file for every stream
            self._file.open()

    def write(self, result: Result) -> None:
        self._write_line(result_record(result))

    def event(self, event: Event) -> None:
        self._write_line(event.to_dict())

    def _write_line(self, record: dict) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()
