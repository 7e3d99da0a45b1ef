"""Sinks: where results go. A sink opens and closes per stream (``open_stream(info)``,
``close_stream(stream)``: streams come and go while a pipeline runs), gets each result (``write``) and
each event (``event``: reconnects, damaged data, line crossings) of a stream in order, and is finalised by
``close()``. :class:`BaseSink` has the optional ones as no-ops."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import OutputError
from .base import BaseSink
from .csv import CsvSink, EventsCsvSink
from .jsonl import JsonlSink
from .video import VideoSink

if TYPE_CHECKING:
    from ..types import Event, Result, SourceInfo

__all__ = [
    "BaseSink",
    "CsvSink",
    "EventsCsvSink",
    "JsonlSink",
    "Sink",
    "VideoSink",
    "check_output_paths",
    "expand_streams",
]

STREAM = "{stream}"


class Sink(Protocol):
    """Receives every result and event of each stream in order, from the pipeline's output thread.
    ``needs_pixels``: it reads the full picture of each frame (an annotated video)."""

    needs_pixels: bool

    def open_stream(self, info: SourceInfo) -> None: ...

    def write(self, result: Result) -> None: ...

    def event(self, event: Event) -> None: ...

    def close_stream(self, stream: str) -> None: ...

    def close(self) -> None: ...


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def expand_streams(outputs: Iterable[tuple[str, str | os.PathLike]], streams: Iterable[str]) -> list[tuple[str, str]]:
    """Every path the outputs will write: a path with ``{stream}`` once per stream (``--video (cam)``)."""
    streams = list(streams)
    expanded = []
    for option, raw in outputs:
        text = os.fspath(raw)
        if STREAM in text:
            expanded += [(f"{option} (stream {name})", text.replace(STREAM, name)) for name in streams]
        else:
            expanded.append((option, text))
    return expanded


def _check_writable(option: str, raw: str, path: Path) -> None:
    """The output can be created: not a folder, and its folder exists or can be made, and takes files."""
    if path.is_dir():
        raise OutputError(f"{option} {raw}: is a folder; give a file name")
    folder = path.parent
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{option} {raw}: cannot create its folder {folder} ({ancestor} is a file)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        where = "its folder" if ancestor == folder else f"the folder {ancestor} (to make {folder})"
        raise OutputError(f"{option} {raw}: cannot write to {where}: permission denied or read-only")


def check_output_paths(inputs: Iterable[Path], outputs: Iterable[tuple[str, str | os.PathLike]]) -> None:
    """Refuse, before anything is opened for writing, an output that is one of the input files (also
    through a link), the same file as another output, a folder, or in a folder that cannot be written.
    ``outputs`` are ``(option, path)`` pairs, with ``{stream}`` expanded (:func:`expand_streams`)."""
    inputs = [Path(p) for p in inputs]
    seen: list[tuple[str, Path]] = []
    for option, raw in outputs:
        path = Path(raw)
        _check_writable(option, os.fspath(raw), path)
        for source in inputs:
            if _same_file(path, source):
                raise OutputError(f"{option} {raw}: is the input {source}; refusing to overwrite it")
        for other_option, other in seen:
            if _same_file(path, other):
                raise OutputError(f"{option} {raw}: is also the {other_option} output; give each output its own file")
        seen.append((option, path))
