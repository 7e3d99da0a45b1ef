"""The runner: streams → batcher → detector → stages → sinks, in overlapping threads.

Threads: GStreamer decodes each source in its own threads; one reader thread per stream turns samples
into tensors and queues them (reconnecting live streams); the inference thread (the caller's: PyTorch's
CPU kernels run fastest in the thread that owns their OpenMP pool) takes fair batches across streams
and runs preprocess → forward → postprocess; an output thread runs the stages (tracking, counting) and
writes the sinks, opened per stream. Queues are bounded, so a slow stage holds back the ones before it
(files) or drops the oldest frames (live), and memory stays bounded on any length of input. Errors
travel down the queues: every frame before a failure is still delivered, then the error is reported.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from .. import models
from ..analytics import Line, LineCounter, Tracker, Zone, ZoneCounter
from ..errors import OutputError, VidpipeError
from ..gst.source import Source
from ..gst.uri import source_path
from ..models.base import Detector
from ..options import DEFAULT_BATCH, DEFAULT_MAX_WAIT, StreamOptions
from ..sinks import Sink, check_output_paths
from ..types import Event, Frame, Result
from .batcher import Batcher, End
from .inflight import InFlight, default_in_flight
from .stages import ClassFilter, Stage
from .stats import Stats
from .streams import StreamReader, open_streams, stream_specs

log = logging.getLogger(__name__)

_POLL = 0.1  # seconds between checks of the stop flags while blocked on a queue


class StreamsFailedError(VidpipeError):
    """Some streams of a run failed (the others finished); ``errors`` maps each stream to its error."""

    def __init__(self, errors: dict[str, BaseException]) -> None:
        self.errors = errors
        lines = [f"stream {name}: {error}" for name, error in errors.items()]
        super().__init__(f"{len(errors)} stream(s) failed: " + "; ".join(lines))


class Pipeline:
    """Runs a detector over every frame of one or more sources and feeds the results to sinks.

    ``Pipeline(source, detector)`` takes one source (an opened :class:`~vidpipe.Source` or a source
    string); ``Pipeline(detector=..., sources=[...])`` takes several: strings (``NAME=URI`` names a
    stream, else it is named by its position), ``(name, uri)`` pairs or opened sources. Every
    :class:`Result` carries its stream in ``result.frame.stream``.

    Iterate it for results (each stream's in frame order), or call :meth:`run` to drive the sinks.
    ``classes`` keeps only detections with these labels; ``track`` gives them track ids (ByteTrack, per
    stream); ``lines`` (``"NAME=x1,y1,x2,y2"`` or :class:`~vidpipe.analytics.Line`) count crossings and
    ``zones`` (``"NAME=x1,y1,x2,y2,x3,y3,..."``) entries, exits and occupancy, at each box's ``anchor``
    (both turn tracking on); ``stages`` are further ``Result -> Result`` steps. ``on_result`` /
    ``on_event`` callbacks get each result / stream event from the output thread. ``in_flight``: batches
    started before the oldest one's results are collected (default: 2 on CUDA, so that the device
    overlaps one batch's network with the other's box selection and copies; 1 on the CPU).
    """

    def __init__(
        self,
        source: Source | str | os.PathLike | None = None,
        detector: Detector | None = None,
        *,
        sources: Sequence[Source | str | os.PathLike | tuple[str, str]] | None = None,
        batch: int = DEFAULT_BATCH,
        max_wait: float = DEFAULT_MAX_WAIT,
        sinks: Sequence[Sink] = (),
        classes: Iterable[str] | None = None,
        track: bool = False,
        lines: Sequence[Line | str] = (),
        zones: Sequence[Zone | str] = (),
        anchor: str = "bottom_center",
        stages: Sequence[Stage] = (),
        max_frames: int | None = None,
        options: StreamOptions | None = None,
        on_result: Sequence[Callable[[Result], None]] = (),
        on_event: Sequence[Callable[[Event], None]] = (),
        failed: dict[str, BaseException] | None = None,
        in_flight: int | None = None,
    ) -> None:
        if detector is None:
            raise VidpipeError("a pipeline needs a detector")
        if (source is None) == (sources is None):
            raise VidpipeError("give one source, or sources=[...]")
        if not isinstance(batch, int) or batch < 1:
            raise VidpipeError(f"batch must be at least 1, got {batch!r}")
        if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
            raise VidpipeError(f"max_frames must be at least 1, got {max_frames!r}")
        options = options or StreamOptions()
        if max_frames is not None:
            options = dataclasses.replace(options, max_frames=max_frames)
        if in_flight is not None and (not isinstance(in_flight, int) or in_flight < 1):
            raise VidpipeError(f"in_flight must be at least 1, got {in_flight!r}")
        self.options = options
        self.detector = detector
        self.in_flight = default_in_flight(detector.device) if in_flight is None else in_flight
        self.batch = batch
        self.sinks = list(sinks)
        self.stages: list[Stage] = []
        if classes is not None:
            self.stages.append(ClassFilter(classes, detector.classes, detector.name))
        if track or lines or zones:
            self.stages.append(Tracker())
        if lines:
            self.stages.append(LineCounter(lines, anchor=anchor))
        if zones:
            self.stages.append(ZoneCounter(zones, anchor=anchor))
        self.stages.extend(stages)
        self.on_result = list(on_result)
        self.on_event = list(on_event)
        self.stats = Stats()
        self._abandon = threading.Event()  # nobody consumes any more: drop everything
        self._batcher = Batcher(batch, max_wait, self._abandon)
        self._results: queue.Queue = queue.Queue(maxsize=2 * batch)
        self._started = False
        self._opened = False
        self._output: threading.Thread | None = None
        self._failed_at_open: dict[str, BaseException] = {}
        self.stopped = False  # set by stop(): the run ended early on request
        specs = stream_specs([source] if sources is None else sources)
        self.readers = [StreamReader(spec, options, self._batcher, self.stats.stream(spec.name)) for spec in specs]
        self._record_failures(failed or {})

    # -- sources ------------------------------------------------------------------------------------

    def open(self) -> dict[str, BaseException]:
        """Open every source (the first connections, in parallel); return the errors of those that
        failed (their streams are left out). Called by :meth:`run` and iteration when not done before."""
        if self._opened:
            return {}
        self._opened = True
        specs, errors = open_streams([r.spec for r in self.readers], self.options)
        self._record_failures(errors)
        by_name = {spec.name: spec for spec in specs}
        self.readers = [r for r in self.readers if r.name in by_name]
        for reader in self.readers:
            reader.open(by_name[reader.name].source)
        return errors

    def _record_failures(self, errors: dict[str, BaseException]) -> None:
        """Streams that could not be opened: in the figures, and as ``failed`` events for the sinks."""
        for name, error in errors.items():
            stats = self.stats.stream(name)
            stats.status, stats.error = "failed", str(error)
            self.stats.events.append(Event(name, "failed", f"{name}: {error}"))
        self._failed_at_open.update(errors)

    @property
    def source(self) -> Source | None:
        """The source of a one-stream pipeline (None before it is opened or with several streams)."""
        return self.readers[0].source if len(self.readers) == 1 else None

    def stop(self) -> None:
        """Stop reading new frames; frames already read are still processed and delivered. Returns at
        once; a stream that is waiting for a frame (frozen) or reconnecting gives up within 50 ms."""
        self.stopped = True
        for reader in self.readers:
            reader.stop()

    # -- threads ------------------------------------------------------------------------------------

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

    def _detected(self) -> Iterator[Result | Event | End]:
        """Fair batches across streams, detected in the calling thread: results, events and stream
        ends, each stream's in its own order. Up to ``in_flight`` batches are started before the oldest
        is collected; one is collected at once when no frame is waiting, so latency does not grow."""
        flight = InFlight(self.detector, self.in_flight, self.stats.add)
        while True:
            if len(flight) and (flight.full or not self._batcher.ready()):
                yield from _merged(*flight.collect())
                continue
            taken = self._batcher.take()
            if taken is None:
                break
            items, waited = taken
            frames = [item.tensor for item in items if isinstance(item, Frame)]
            if not frames:  # events and ends only: after the batches before them
                for done in flight.drain():
                    yield from _merged(*done)
                yield from items
                continue
            self.stats.add("decode wait", waited, len(frames))
            flight.launch(frames, tag=items)
        for done in flight.drain():
            yield from _merged(*done)

    def _staged(self, result: Result) -> Result:
        """The stages applied in order (in the output thread when sinks are written, so tracking and
        counting overlap the next batch's inference)."""
        if self.stages:
            t0 = time.perf_counter()
            for step in self.stages:
                result = step(result)
            self.stats.add("stages", time.perf_counter() - t0)
        return result

    def _finish(self, item: Result | Event | End) -> Result | Event | End:
        """A result through the stages; then any item into the figures and event callbacks."""
        if isinstance(item, Result):
            item = self._staged(item)
        self._count(item)
        return item

    def _count(self, item: Result | Event | End) -> None:
        if isinstance(item, Event):
            self.stats.events.append(item)
            for callback in self.on_event:
                callback(item)
        elif isinstance(item, Result):
            stream = self.stats.stream(item.frame.stream)
            stream.frames += 1
            stream.labels.update(item.detections.labels)
            stream.latency.append(time.time() - item.frame.wall)
            self.stats.frames += 1
            self.stats.labels.update(item.detections.labels)

    def _start(self) -> None:
        if self._started:
            raise VidpipeError("a pipeline runs once")
        self._started = True
        self.open()
        self.stats.started = time.perf_counter()
        for reader in self.readers:
            reader.start()

    def _shutdown(self) -> None:
        self._abandon.set()
        for reader in self.readers:
            reader.stop()
        for reader in self.readers:
            reader.join(timeout=10)
            reader.close()
        if self._output is not None and self._output is not threading.current_thread():
            self._output.join(timeout=60)
        self.stats.finished = self.stats.finished or time.perf_counter()

    def _errors(self) -> dict[str, BaseException]:
        return dict(self._failed_at_open)

    def _raise_failures(self, errors: dict[str, BaseException]) -> None:
        if not errors:
            return
        if len(errors) == 1 and len(self.stats.streams) == 1:
            raise next(iter(errors.values()))
        raise StreamsFailedError(errors)

    def __iter__(self) -> Iterator[Result]:
        """Results in frame order per stream. Decoding overlaps everything; inference runs in the
        iterating thread, batch by batch, between the steps of the caller's loop (as in Ultralytics'
        stream mode). At the end, the error of a failed stream is raised."""
        self._start()
        errors = self._errors()
        try:
            for item in map(self._finish, self._detected()):
                if isinstance(item, Result):
                    yield item
                elif isinstance(item, End) and item.error is not None:
                    errors[item.stream] = item.error
            self.stats.finished = time.perf_counter()
        finally:
            self._shutdown()
        self._raise_failures(errors)

    def run(self, progress=None) -> Stats:
        """Run to the end (or until :meth:`stop`), writing every result to the sinks, each opened per
        stream; the sinks are finalised whatever happens. Returns the figures; raises the error of a
        failed stream (one stream) or :class:`StreamsFailedError` (several), after the others finished.

        Inference runs in the calling thread (PyTorch's CPU kernels run measurably faster in the
        thread that owns their OpenMP pool), the sinks are written in an output thread."""
        sources = [r.source.path if r.source is not None else source_path(r.spec.source) for r in self.readers]
        paths = [path for path in sources if path is not None]
        check_output_paths(paths, [(type(s).__name__, s.path) for s in self.sinks if getattr(s, "path", None)])
        opened: list[Sink] = []
        failure: list[BaseException] = []
        errors: dict[str, BaseException] = {}
        self._start()
        errors.update(self._errors())
        streams_open: set[str] = set()
        # streams that failed to open: said in the outputs (JSONL) once they are open
        untold = [e for e in self.stats.events if e.kind == "failed" and e.stream in self._failed_at_open]

        def tell(event: Event) -> None:
            for sink in self.sinks:
                if hasattr(sink, "event"):
                    sink.event(event)

        def write(item: Result | Event | End) -> None:
            stream = item.frame.stream if isinstance(item, Result) else item.stream
            if stream not in streams_open:
                streams_open.add(stream)
                info = next(r.info for r in self.readers if r.name == stream)
                for sink in self.sinks:
                    sink.open(info)
                    if sink not in opened:
                        opened.append(sink)
                for event in untold:
                    tell(event)
                untold.clear()
            if isinstance(item, End):
                if item.error is not None:
                    errors[item.stream] = item.error
                return
            if isinstance(item, Event):
                tell(item)
                return
            t0 = time.perf_counter()
            for sink in self.sinks:
                sink.write(item)
            for event in item.events:  # what the stages saw happen at this frame
                tell(event)
            for callback in self.on_result:
                callback(item)
            self.stats.add("output", time.perf_counter() - t0)
            if progress is not None:
                progress.advance()

        def output() -> None:
            try:
                while True:
                    item = self._get()
                    if item is None:
                        return
                    write(self._finish(item))
            except BaseException as exc:
                failure.append(exc)
                self._abandon.set()  # nobody takes results any more: stop the other stages

        try:
            self._output = threading.Thread(target=output, name="vidpipe-output", daemon=True)
            self._output.start()
            for item in self._detected():
                if not self._put(item):
                    break
            self._put(None)
            self._output.join()
            self.stats.finished = time.perf_counter()
            if failure:
                raise failure[0]
        finally:
            self._shutdown()
            close_errors = self._close_sinks(opened)
            if close_errors and not failure:
                raise close_errors[0]
        self._raise_failures(errors)
        return self.stats

    @staticmethod
    def _close_sinks(opened: list[Sink]) -> list[VidpipeError]:
        errors: list[VidpipeError] = []
        for sink in opened:  # every sink is finalised, whatever another one did
            try:
                sink.close()
            except VidpipeError as exc:
                errors.append(exc)
            except Exception as exc:  # a sink of the user's: report it as an output error
                errors.append(OutputError(f"{type(sink).__name__}: cannot finish ({exc})"))
        return errors


def _merged(items: list[Frame | Event | End], detections: list) -> Iterator[Result | Event | End]:
    """A batch's items with each frame replaced by its result, in their order."""
    found = iter(detections)
    for item in items:
        yield Result(item, next(found)) if isinstance(item, Frame) else item


def detect(
    source: str | os.PathLike | Source | Sequence[str | os.PathLike | Source],
    model: str | Detector = models.DEFAULT_MODEL,
    *,
    weights: str | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    batch: int = DEFAULT_BATCH,
    threshold: float | None = None,
    classes: Iterable[str] | None = None,
    track: bool = False,
    lines: Sequence[Line | str] = (),
    zones: Sequence[Zone | str] = (),
    max_frames: int | None = None,
    options: StreamOptions | None = None,
) -> Iterator[Result]:
    """Detect objects in every frame: ``for result in vidpipe.detect("clip.mp4"): ...``; several
    sources: ``vidpipe.detect(["a.mp4", "cam=rtsp://..."])`` (``result.frame.stream`` says which).

    Yields one :class:`Result` per frame, in order per stream, while decoding, inference and your loop
    overlap. ``track=True`` adds track ids; ``lines`` / ``zones`` add crossing and zone events to
    ``result.events`` (see :class:`Pipeline`). ``model`` is a name (see ``vidpipe models``) or a
    :class:`~vidpipe.models.Detector`.
    """
    detector = (
        model
        if isinstance(model, Detector)
        else models.load(model, weights=weights, device=device, precision=precision, threshold=threshold)
    )
    many = isinstance(source, (list, tuple))
    pipeline = Pipeline(
        None if many else source,
        detector,
        sources=list(source) if many else None,
        batch=batch,
        classes=classes,
        track=track,
        lines=lines,
        zones=zones,
        max_frames=max_frames,
        options=options,
    )
    yield from pipeline
