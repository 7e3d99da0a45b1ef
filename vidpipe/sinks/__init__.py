"""Sinks: where results go. Each has ``open(info)``, ``write(result)``, ``close()`` and may have
``event(event)`` for the events of a stream (damaged data, reconnects)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import OutputError
from .csv import CsvSink
from .jsonl import JsonlSink
from .video import VideoSink

if TYPE_CHECKING:
    from ..types import Result, SourceInfo

__all__ = ["CsvSink", "JsonlSink", "Sink", "VideoSink", "check_output_paths"]


class Sink(Protocol):
    """Receives every result in frame order, from the pipeline's output thread."""

    def open(self, info: SourceInfo) -> None: ...

    def write(self, result: Result) -> None: ...

    def close(self) -> None: ...


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_paths(inputs: Iterable[Path], outputs: Iterable[tuple[str, str | os.PathLike]]) -> None:
    """Refuse, before anything is opened for writing, an output that is one of the input files (also
    through a link) or the same file as another output. ``outputs`` are ``(option, path)`` pairs."""
    inputs = [Path(p) for p in inputs]
    seen: list[tuple[str, Path]] = []
    for option, raw in outputs:
        path = Path(raw)
        for source in inputs:
            if _same_file(path, source):
                raise OutputError(f"{option} {raw}: is the input {source}; refusing to overwrite it")
        for other_option, other in seen:
            if _same_file(path, other):
                raise OutputError(f"{option} {raw}: is also the {other_option} output; give each output its own file")
        seen.append((option, path))
