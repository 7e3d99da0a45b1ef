"""Detections as CSV: one row per detection, for spreadsheets and pandas."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

from .base import BaseSink
from .textfile import WholeLinesFile

if TYPE_CHECKING:
    from ..types import Event, Result, SourceInfo

COLUMNS = ("stream", "frame", "pts", "label", "class_id", "score", "track_id", "x1", "y1", "x2", "y2")


class CsvSink(BaseSink):
    """Writes a header, then each frame's rows with one ``write`` system call (only whole rows on disk
    after a crash or a full disk). ``track_id`` is -1 for detections not tracked, empty without tracking."""

    def __init__(self, path: str | Path) -> None:
        self._file = WholeLinesFile(path)
        self.path = self._file.path
        self.rows = 0

    def open_stream(self, info: SourceInfo | None) -> None:
        if not self._file.is_open:  # one file for every stream
            self._file.open()
            self._file.write(",".join(COLUMNS) + "\n")

    def write(self, result: Result) -> None:
        record = result.record()
        found = record["detections"]
        if not found:
            return
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        for item in found:
            track = item.get("track_id", "")
            writer.writerow(
                [record["stream"], record["frame"], f"{record['pts']:.6f}", item["label"], item["class_id"],
                 f"{item['score']:.4f}", track] + [f"{v:.2f}" for v in item["box"]]
            )  # fmt: skip
        self._file.write(text.getvalue(), len(found))
        self.rows += len(found)

    def close(self) -> None:
        self._file.close()


EVENT_COLUMNS = (
    "stream", "wall", "event", "frame", "pts", "line", "direction", "zone", "track_id", "label", "dwell", "message",
)  # fmt: skip


class EventsCsvSink(BaseSink):
    """One row per event (line crossings, zone entries and exits, connections, damaged data), with the
    same whole-rows guarantee as :class:`CsvSink`; columns an event does not have stay empty."""

    def __init__(self, path: str | Path) -> None:
        self._file = WholeLinesFile(path)
        self.path = self._file.path
        self.rows = 0

    def _open(self) -> None:
        if not self._file.is_open:
            self._file.open()
            self._file.write(",".join(EVENT_COLUMNS) + "\n")

    def open_stream(self, info: SourceInfo | None) -> None:
        self._open()

    def event(self, event: Event) -> None:
        self._open()
        record = event.to_dict()
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerow(
            ["" if record.get(c) is None else record.get(c) for c in EVENT_COLUMNS]
        )
        self._file.write(text.getvalue())
        self.rows += 1

    def close(self) -> None:
        self._file.close()
