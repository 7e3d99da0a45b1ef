"""Sinks: where results go. Each has ``open(info)``, ``write(result)`` and ``close()``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .jsonl import JsonlSink
from .video import VideoSink

if TYPE_CHECKING:
    from ..runner import Result
    from ..source import SourceInfo

__all__ = ["JsonlSink", "Sink", "VideoSink"]


class Sink(Protocol):
    """Receives every result in frame order, from the pipeline's output thread."""

    def open(self, info: SourceInfo) -> None: ...

    def write(self, result: Result) -> None: ...

    def close(self) -> None: ...
