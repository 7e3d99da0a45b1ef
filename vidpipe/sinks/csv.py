"""Detections as CSV: one row per detection, for spreadsheets and pandas."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

from .textfile import WholeLinesFile

if TYPE_CHECKING:
    from ..types import Result, SourceInfo

COLUMNS = ("stream", "frame", "pts", "label", "class_id", "score", "track_id", "x1", "y1", "x2", "y2")


class CsvSink:
    """Writes a header, then each frame's rows with one ``write`` system call (only whole rows on disk
    after a crash or a full disk). ``track_id`` is -1 for detections not tracked, empty without tracking."""

    def __init__(self, path: str | Path) -> None:
        self._file = WholeLinesFile(path)
        self.path = self._file.path
        self.rows = 0

    def open(self, info: SourceInfo) -> None:
        if not self._file.is_open:  # one file for every stream
            self._file.open()
            self._file.write(",".join(COLUMNS) + "\n")

    def write(self, result: Result) -> None:
        found = result.detections
        if not len(found):
            return
        frame = result.frame
        tracks = found.track_ids.tolist() if found.track_ids is not None else [""] * len(found)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        for label, cid, score, track, box in zip(
            found.labels, found.class_ids.tolist(), found.scores.tolist(), tracks, found.boxes.tolist(), strict=True
        ):
            writer.writerow(
                [frame.stream, frame.index, f"{frame.pts:.6f}", label, cid, f"{score:.4f}", track]
                + [f"{v:.2f}" for v in box]
            )
        self._file.write(text.getvalue(), len(found))
        self.rows += len(found)

    def close(self) -> None:
        self._file.close()
