"""Detections as JSON Lines: one object per frame, in order, written as soon as the frame is done."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..errors import OutputError

if TYPE_CHECKING:
    from ..runner import Result
    from ..source import SourceInfo

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "detections.schema.json"


def result_record(result: Result) -> dict:
    """The JSONL object of one frame (see ``detections.schema.json``)."""
    frame = result.frame
    return {
        "frame": frame.index,
        "pts": round(frame.pts, 6),
        "width": frame.width,
        "height": frame.height,
        "detections": result.detections.to_dict(),
    }


class JsonlSink:
    """Writes one line per frame; each line is flushed, so a crash leaves only complete lines."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    def open(self, info: SourceInfo) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", buffering=1, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write ({exc.strerror})") from None

    def write(self, result: Result) -> None:
        self._file.write(json.dumps(result_record(result), separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
