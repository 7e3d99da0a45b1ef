"""Detections as CSV: one row per detection, for spreadsheets and pandas (names that would start a
spreadsheet formula are written as text)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

from .base import BaseSink
from .textfile import WholeLinesFile

if TYPE_CHECKING:
    from ..types import Event, Result, SourceInfo

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads a cell starting so as a formula


def as_cell(value: object) -> object:
    """``value`` as a CSV cell a spreadsheet shows as text: a name starting like a formula (a stream,
    line or zone called ``=HYPERLINK(...)`` or ``@SUM(...)``) gets a leading ``'``; numbers stay numbers."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


COLUMNS = ("stream", "frame", "pts", "label", "class_id", "score", "track_id", "x1", "y1", "x2", "y2")
EVENT_COLUMNS = (
    "stream", "wall", "event", "frame", "pts", "line", "direction", "zone", "track_id", "label", "dwell", "message",
)  # fmt: skip


class _CsvTable(BaseSink):
    """A CSV file shared by every stream: its header when the first stream opens, then whole rows, each
    write one system call (only whole rows on disk after a crash or a full disk)."""

    columns: tuple[str, ...]

    def __init__(self, path: str | Path) -> None:
        self._file = WholeLinesFile(path)
        self.path = self._file.path
        self.rows = 0

    def open_stream(self, info: SourceInfo | None) -> None:
        if not self._file.is_open:  # one file for every stream
            self._file.open()
            self._file.write(",".join(self.columns) + "\n")

    def _write_rows(self, rows: list[list]) -> None:
        self.open_stream(None)
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([[as_cell(v) for v in row] for row in rows])
        self._file.write(text.getvalue(), len(rows))
        self.rows += len(rows)

    def close(self) -> None:
        self._file.close()


class CsvSink(_CsvTable):
    """One row per detection. ``track_id`` is -1 for detections not tracked, empty without tracking."""

    columns = COLUMNS

    def write(self, result: Result) -> None:
        record = result.record()
        found = record["detections"]
        if not found:
            return
        rows = [
            [record["stream"], record["frame"], f"{record['pts']:.6f}", item["label"], item["class_id"],
             f"{item['score']:.4f}", item.get("track_id", "")] + [f"{v:.2f}" for v in item["box"]]
            for item in found
        ]  # fmt: skip
        self._write_rows(rows)


class EventsCsvSink(_CsvTable):
    """One row per event (line crossings, zone entries and exits, connections, damaged data); columns an
    event does not have stay empty."""

    columns = EVENT_COLUMNS

    def event(self, event: Event) -> None:
        record = event.to_dict()
        self._write_rows([["" if record.get(c) is None else record.get(c) for c in EVENT_COLUMNS]])
