"""A stream's recordings: its JSON Lines, CSV and annotated video, a new set of files per start of the
stream (the service's ``record:``; on a cluster, the workers write the video under the name the service
chose)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from ..types import Event, Result, SourceInfo
from .base import BaseSink, finish_each
from .csv import CsvSink
from .jsonl import JsonlSink
from .video import VideoSink

PENDING_EVENTS = 100  # events of a stream kept until its recordings open (its first frame)
KINDS = ("json", "csv", "video")
_FIELDS = {"json": "json_lines", "csv": "csv", "video": "video"}  # the plan's field of each kind


class RecordPlan(Protocol):
    """What a stream records (the service's ``record:`` settings)."""

    json_lines: bool
    csv: bool
    video: bool


class Recorder(BaseSink):
    """Each stream's recordings (``record:``): a new set of files per start of the stream, under
    ``output_dir/STREAM/`` named by the start time, so nothing earlier is ever overwritten. ``kinds``
    are the recordings this one writes (on a cluster the driver writes JSON Lines and CSV, the stream's
    worker its video, under the same name)."""

    def __init__(self, output_dir: Path, kinds: tuple[str, ...] = KINDS) -> None:
        self.output_dir = output_dir
        self.kinds = kinds
        self.plans: dict[str, tuple[RecordPlan, str | None]] = {}
        self._open: dict[str, list[BaseSink]] = {}
        self._pending: dict[str, list[Event]] = {}

    @property
    def needs_pixels(self) -> bool:  # type: ignore[override]
        return "video" in self.kinds

    def plan(self, stream: str, record: RecordPlan, stem: str | None = None) -> str:
        """Plan the recordings of a stream that starts now; returns the name its files take (``stem``
        when given: the name the driver chose)."""
        if stem is None:
            folder = self.output_dir / stream
            base = stem = time.strftime("%Y%m%d-%H%M%S")
            take = 1
            while any((folder / f"{stem}{ext}").exists() for ext in (".jsonl", ".csv", ".mp4")):
                take += 1
                stem = f"{base}-{take}"
        self.plans[stream] = (record, stem)
        return stem

    def open_stream(self, info: SourceInfo) -> None:
        record, stem = self.plans.get(info.stream, (None, None))
        wanted = [kind for kind in self.kinds if record is not None and getattr(record, _FIELDS[kind])]
        if record is not None and not getattr(record, "annotated", True):  # the camera's own: not a sink's
            wanted = [kind for kind in wanted if kind != "video"]
        if not wanted:
            self._pending.pop(info.stream, None)
            return
        if stem is None:  # (its planned name is used once: a second opening gets its own)
            stem = self.plan(info.stream, record)
        self.plans[info.stream] = (record, None)
        folder = self.output_dir / info.stream
        sinks: list[BaseSink] = []
        if "json" in wanted:
            sinks.append(JsonlSink(folder / f"{stem}.jsonl"))
        if "csv" in wanted:
            sinks.append(CsvSink(folder / f"{stem}.csv"))
        if "video" in wanted:
            sinks.append(VideoSink(folder / f"{stem}.mp4"))
        self._open[info.stream] = sinks
        for sink in sinks:
            sink.open_stream(info)
        for event in self._pending.pop(info.stream, []):
            self.event(event)

    def write(self, result: Result) -> None:
        for sink in self._open.get(result.frame.stream, ()):
            sink.write(result)

    def event(self, event: Event) -> None:
        sinks = self._open.get(event.stream)
        if sinks is None:
            if event.stream in self.plans:
                pending = self._pending.setdefault(event.stream, [])
                if len(pending) < PENDING_EVENTS:
                    pending.append(event)
            return
        for sink in sinks:
            sink.event(event)

    def close_stream(self, stream: str) -> None:
        self._pending.pop(stream, None)

        def finish(sink: BaseSink) -> None:
            sink.close_stream(stream)
            sink.close()

        finish_each(self._open.pop(stream, []), finish)  # every recording is finished, whatever one does

    def close(self) -> None:
        finish_each(self._open, self.close_stream)
