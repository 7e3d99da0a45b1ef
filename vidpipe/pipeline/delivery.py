"""Delivery: each item the engine produces (a result, an event, a stream's end) through its stream's
stages into the figures, the callbacks and the outputs, in the output thread (or the iterating one).
The pipeline (:class:`vidpipe.pipeline.runner.Pipeline`) is a :class:`Delivery`; this module holds that
one job of it."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from ..analytics.plan import Chain
from ..errors import VidpipeError
from ..types import Event, Result, SourceInfo
from .batcher import End
from .outputs import Outputs
from .stats import Stats

_POLL = 0.1  # seconds between checks of the stop flags while blocked on a queue


class Delivery:
    """The output side of a pipeline: the state below is the pipeline's own (set in its ``__init__``)."""

    outputs: Outputs
    stats: Stats
    on_result: list[Callable[[Result], None]]
    on_event: list[Callable[[Event], None]]
    _results: queue.Queue
    _abandon: threading.Event
    _failure: list[BaseException]
    _untold: list[Event]
    _chains: dict[str, Chain]
    _readers: dict
    _errors: dict[str, BaseException]
    _progress: object
    keep_alive: bool

    def chain(self, stream: str) -> Chain:  # (the pipeline's)
        raise NotImplementedError

    def _forget(self, name: str) -> None:  # (the pipeline's)
        raise NotImplementedError

    def _put(self, item: object) -> bool:
        while not self._abandon.is_set():
            try:
                self._results.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _get(self) -> object:
        while not self._abandon.is_set():
            try:
                return self._results.get(timeout=_POLL)
            except queue.Empty:
                continue
        return None

    def _write_outputs(self) -> None:
        try:
            while True:
                item = self._get()
                if item is None:
                    return
                self._handle(item, write=True)
        except BaseException as exc:
            self._failure.append(exc)
            self._abandon.set()  # nobody takes results any more: stop the other stages

    def _handle(self, item: Result | Event | End, *, write: bool) -> Result | None:
        """One item of the engine's output: a result through its stream's stages, into the figures and
        callbacks (and the outputs, with ``write``); an event told; a stream's end closing its outputs.
        Returns the finished result."""
        stream = item.frame.stream if isinstance(item, Result) else item.stream
        if write and self._untold:  # streams that failed before the run: first in the outputs
            for event in self._untold:
                self.outputs.event(event)
            self._untold.clear()
        if isinstance(item, End):
            self._ended_stream(item, write)
            return None
        if isinstance(item, Event):
            self._tell(item, write)
            return None
        chain = self._chains.get(stream) or self.chain(stream)
        try:
            result = self._finish_result(chain, item)
        except VidpipeError as exc:
            reader = self._readers.get(stream)
            if not self.keep_alive or reader is None:
                raise
            reader.fail(exc)  # (a service: this stream fails alone, its frames until its end dropped)
            return None
        if write:
            if not self.outputs.is_open(stream):
                reader = self._readers.get(stream)
                self.outputs.open_stream(reader.info if reader is not None and reader.info else _info_of(item))
            t0 = time.perf_counter()
            self.outputs.write(result)
            self.stats.add("output", time.perf_counter() - t0)
        for event in result.events:  # what the stages saw happen at this frame
            self._tell(event, write)
        for callback in self.on_result:
            callback(result)
        if self._progress is not None:
            self._progress.advance()
        return result

    def _finish_result(self, chain: Chain, result: Result) -> Result:
        if chain.stages:
            t0 = time.perf_counter()
            result = chain(result)
            self.stats.add("stages", time.perf_counter() - t0)
        stats = self.stats.count(result)
        if chain.lines is not None or chain.zones is not None:
            stats.counts = chain.totals()
        return result

    def _tell(self, event: Event, write: bool) -> None:
        self.stats.note_event(event)
        if write:
            self.outputs.event(event)
        for callback in self.on_event:
            callback(event)

    def _ended_stream(self, end: End, write: bool) -> None:
        reader = self._readers.get(end.stream)
        if end.error is not None:
            self._errors[end.stream] = end.error
        removed = Event(end.stream, "removed", f"{end.stream}: removed") if reader and reader.removed else None
        if removed is not None:  # the outputs' last line, but told to callbacks once they are finished: a
            self.stats.note_event(removed)  # cluster's driver takes it as "this worker's video plays now"
            if write:
                self.outputs.event(removed)
        if write:
            self.outputs.close_stream(end.stream)
        for callback in self.on_event if removed is not None else ():
            callback(removed)
        if reader is not None:
            reader.close()
            if reader.removed:
                self._forget(end.stream)
            reader.done.set()

    def _sink_failed(self, event: Event) -> None:
        """An isolated sink's first failure: in the figures and callbacks now, in the outputs (the other
        sinks) with the next item."""
        self.stats.note_event(event)
        self._untold.append(event)
        for callback in self.on_event:
            callback(event)

    def _count_sink_error(self, name: str) -> None:
        self.stats.sink_errors[name] += 1


def _info_of(result: Result) -> SourceInfo:
    """What is known of a stream from one of its results (for a stream handed in by the caller)."""
    frame = result.frame
    return SourceInfo(frame.stream, frame.width, frame.height, None, None, None, None, None, False, frame.stream)
