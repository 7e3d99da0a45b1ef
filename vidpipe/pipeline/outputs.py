"""Outputs: the sinks of a pipeline, opened and closed per stream, written from the output thread.

What a failing sink does to the run is a policy. ``isolate=False`` (``vidpipe detect``): the first
failure stops the run at once, every other output still finalised (nothing is gained by detecting into
a full disk). ``isolate=True`` (a service): the failure is counted, said once per sink (a log line and a
``sink_failed`` event), and the other sinks and streams go on; the sink keeps being called, so one that
recovers (a broker back) carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ..errors import OutputError, VidpipeError
from ..sinks import Sink
from ..types import Event, Result, SourceInfo

log = logging.getLogger(__name__)


def sink_name(sink: object) -> str:
    """A sink's name in messages and figures: its type, and its path if it has one."""
    path = getattr(sink, "path", None)
    return f"{type(sink).__name__}({path})" if path else type(sink).__name__


class Outputs:
    """The sinks of a run. ``on_failure(event)`` hears of an isolated sink's first failure;
    ``count(name)`` counts every failure (the run's figures)."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        isolate: bool = False,
        on_failure: Callable[[Event], None] | None = None,
        count: Callable[[str], None] | None = None,
    ) -> None:
        self.sinks = list(sinks)
        self.isolate = isolate
        self._on_failure = on_failure
        self._count = count
        self._open: set[str] = set()
        self._failed: set[int] = set()  # sinks that have failed (said once each)

    def is_open(self, stream: str) -> bool:
        return stream in self._open

    def open_stream(self, info: SourceInfo) -> None:
        self._open.add(info.stream)
        self._each("open_stream", info, stream=info.stream)

    def write(self, result: Result) -> None:
        self._each("write", result, stream=result.frame.stream)

    def event(self, event: Event) -> None:
        self._each("event", event, stream=event.stream)

    def close_stream(self, stream: str) -> None:
        """Finish the stream's own outputs (its video plays from here on)."""
        if stream in self._open:
            self._open.discard(stream)
            self._each("close_stream", stream, stream=stream)

    def close(self) -> list[VidpipeError]:
        """Finalise every sink, whatever another one did; the errors, in order."""
        errors: list[VidpipeError] = []
        for sink in self.sinks:
            try:
                sink.close()
            except VidpipeError as exc:
                errors.append(exc)
            except Exception as exc:  # a sink of the user's: report it as an output error
                errors.append(OutputError(f"{sink_name(sink)}: cannot finish ({exc})"))
        self._open.clear()
        return errors

    def _each(self, method: str, arg: object, *, stream: str) -> None:
        for sink in self.sinks:
            try:
                getattr(sink, method)(arg)
            except Exception as exc:
                if not self.isolate:
                    if isinstance(exc, VidpipeError):
                        raise
                    raise OutputError(f"{sink_name(sink)}: {type(exc).__name__}: {exc}") from exc
                self._isolated(sink, exc, stream)

    def _isolated(self, sink: object, exc: Exception, stream: str) -> None:
        name = sink_name(sink)
        if self._count is not None:
            self._count(name)
        if id(sink) in self._failed:
            return
        self._failed.add(id(sink))
        message = f"output {name} failed ({type(exc).__name__}: {exc}); the other outputs and streams go on"
        log.error("%s", message)
        if self._on_failure is not None:
            self._on_failure(Event(stream, "sink_failed", message, fields={"sink": name}))
