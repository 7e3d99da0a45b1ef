"""The runner: streams → batcher → engine (detector) → each stream's stages → outputs, in overlapping
threads, with streams that come and go while it runs.

Threads: GStreamer decodes each source in its own threads; one reader thread per stream opens it, turns
samples into tensors and queues them (reconnecting live streams); the inference thread (with
:meth:`Pipeline.run`, the caller's: PyTorch's CPU kernels run fastest in the thread that owns their
OpenMP pool) takes fair batches across streams and runs the detector; an output thread runs each
stream's stages (tracking, counting) and writes the outputs, opened and closed per stream. Queues are
bounded, so a slow stage holds back the ones before it (files) or drops the oldest frames (live), and
memory stays bounded on any length of input. Errors travel down the queues: every frame before a
failure is still delivered, then the error is reported.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ..analytics import Line, Zone
from ..analytics.motion import check_motion
from ..analytics.plan import Analysis, Chain, Stage
from ..errors import StreamsFailedError, VidpipeError
from ..gst.source import Source
from ..gst.uri import source_path
from ..memory import bound_arenas
from ..models.base import Detector
from ..options import DEFAULT_BATCH, DEFAULT_MAX_WAIT, MotionOptions, StreamOptions
from ..sinks import Sink, check_output_paths, expand_streams
from ..types import Event, Frame, Result
from .batcher import Batcher
from .config import MotionConfig, StreamConfig, stream_config
from .delivery import Delivery
from .engine import Engine
from .inflight import default_in_flight
from .outputs import Outputs
from .specs import StreamSpec, check_arguments, check_name_free, check_stream_name, split_name, stream_specs
from .stats import Stats
from .streams import StreamReader, check_open_files

log = logging.getLogger(__name__)


class Pipeline(Delivery):
    """Runs a detector over every frame of its streams and feeds the results to sinks.

    ``Pipeline(source, detector)`` takes one source (an opened :class:`~vidpipe.Source` or a source
    string); ``Pipeline(detector=..., sources=[...])`` takes several: strings (``NAME=URI`` names a
    stream, else it is named by its position), ``(name, uri)`` pairs or opened sources. Streams can also
    be added and removed while it runs (:meth:`add_stream`, :meth:`remove_stream`); with
    ``keep_alive=True`` it may start with none and idles when it has none, until :meth:`stop`.

    :meth:`run` runs to the end in the calling thread; :meth:`start` returns at once and the pipeline
    runs in its own threads until :meth:`stop` (or, without ``keep_alive``, until its last stream ends);
    :meth:`wait` waits for that. Iterate it for results (each stream's in frame order) instead of
    writing sinks. Every :class:`Result` carries its stream in ``result.frame.stream``.

    Each stream's results go through its own stages: ``classes`` keeps only detections with these
    labels; ``track`` gives them track ids (ByteTrack); ``lines`` (``"[STREAM:]NAME=x1,y1,x2,y2"`` or
    :class:`~vidpipe.analytics.Line`) count crossings and ``zones`` (``"[STREAM:]NAME=x1,y1,..."``)
    entries, exits and occupancy, at each box's ``anchor`` (both turn tracking on); one without
    ``STREAM:`` applies to every stream, counted per stream. ``stages`` are further ``Result -> Result``
    steps, shared by the streams. ``on_result`` / ``on_event`` callbacks get each result / event (stream
    events, line crossings, zone entries) from the output thread. ``sink_errors``: ``"stop"`` (the first
    failing sink ends the run) or ``"isolate"`` (it is counted and said once; the rest goes on).
    ``in_flight``: batches started before the oldest one's results are collected (default: 2 on CUDA,
    1 on the CPU). Every frame reaches the detector whole and is resized there, one way whatever the
    outputs (see :func:`vidpipe.models.resize.stack_resized`).

    :class:`vidpipe.Pipeline` adds ``cluster=``: the same pipeline over Ray workers.
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
        privacy: Sequence[str] = (),
        blur: Sequence[str] = (),
        max_frames: int | None = None,
        options: StreamOptions | None = None,
        on_result: Sequence[Callable[[Result], None]] = (),
        on_event: Sequence[Callable[[Event], None]] = (),
        failed: dict[str, BaseException] | None = None,
        in_flight: int | None = None,
        keep_alive: bool = False,
        sink_errors: str = "stop",
    ) -> None:
        check_arguments(
            detector, source, sources, keep_alive=keep_alive, batch=batch, max_frames=max_frames,
            sink_errors=sink_errors, in_flight=in_flight,
        )  # fmt: skip
        bound_arenas()  # a pipeline may run for months, its streams reconnecting (see vidpipe.memory)
        options = options or StreamOptions()
        if max_frames is not None:
            options = dataclasses.replace(options, max_frames=max_frames)
        check_motion(options.motion)
        self.options = options
        self.detector = detector
        self.in_flight = default_in_flight(detector.device) if in_flight is None else in_flight
        self.batch = batch
        self.keep_alive = keep_alive
        self.analysis = Analysis(
            classes=classes, known=detector.classes, model=detector.name, track=track, lines=lines, zones=zones,
            anchor=anchor, stages=stages, privacy=privacy, blur=blur,
        )  # fmt: skip
        self.on_result = list(on_result)
        self.on_event = list(on_event)
        self.stats = Stats()
        self.outputs = Outputs(
            sinks, isolate=sink_errors == "isolate", on_failure=self._sink_failed, count=self._count_sink_error
        )
        self._abandon = threading.Event()  # nobody consumes any more: drop everything
        self._batcher = Batcher(batch, max_wait, self._abandon, keep_alive=keep_alive)
        self._engine = Engine(detector, self.in_flight, self.stats)
        self._results: queue.Queue = queue.Queue(maxsize=2 * batch)
        self._lock = threading.RLock()  # streams are added and removed from any thread
        self._readers: dict[str, StreamReader] = {}
        self._chains: dict[str, Chain] = {}
        self._started = False
        self._ended = threading.Event()  # the inference loop is over
        self._worker: threading.Thread | None = None
        self._output: threading.Thread | None = None
        self._failure: list[BaseException] = []
        self._errors: dict[str, BaseException] = {}
        self._untold: list[Event] = []  # streams that failed before the run: said in the outputs
        self._progress = None
        self.stopped = False  # set by stop(): the run ended early on request
        specs = stream_specs([source] if sources is None else sources) if (source or sources) else []
        for spec in specs:
            self._register(spec, options)
        for name, error in (failed or {}).items():
            self._record_failure(name, error)

    # -- streams ------------------------------------------------------------------------------------

    def _register(self, spec: StreamSpec, options: StreamOptions, config: StreamConfig | None = None) -> StreamReader:
        check_name_free(spec.name, self._readers)
        own = {} if config is None else {
            "lines": config.line_shapes(), "zones": config.zone_shapes(), "track": config.track,
            "privacy": config.privacy, "blur": config.blur}  # fmt: skip
        self._chains[spec.name] = self.analysis.chain(spec.name, **own)
        stats = self.stats.stream(spec.name)
        stats.status = "starting"
        reader = StreamReader(spec, options, self._batcher, stats)
        self._readers[spec.name] = reader
        return reader

    def _record_failure(self, name: str, error: BaseException) -> None:
        """A stream that could not be opened before the run: in the figures, and as a ``failed`` event
        for the outputs."""
        stats = self.stats.stream(name)
        stats.status, stats.error = "failed", str(error)
        event = Event(name, "failed", f"{name}: {error}")
        self.stats.note_event(event)
        self._untold.append(event)
        self._errors[name] = error

    def add_stream(
        self,
        source: Source | str | os.PathLike,
        name: str | None = None,
        *,
        detect_fps: float | None = None,
        max_latency: float | None = None,
        max_frames: int | None = None,
        lines: Sequence[Line | str] = (),
        zones: Sequence[Zone | str] = (),
        track: bool = False,
        loop: bool = False,
        privacy: Sequence[str] = (),
        blur: Sequence[str] = (),
        motion: MotionOptions | MotionConfig | dict | None = None,
        tap: Callable[[str, Any], None] | None = None,
    ) -> str:
        """Add a stream (safe from any thread, also while batches run); returns its name (default: the
        ``NAME=`` of ``NAME=URI``, else the lowest free number). The keywords are the stream's own options
        (:class:`~vidpipe.pipeline.config.StreamConfig`, beside the pipeline's); ``tap(name, pipeline)``
        sees each of its GStreamer pipelines. Once the pipeline runs, the source opens in the stream's own
        thread: one that cannot be opened ends its stream with a ``failed`` event, the others go on."""
        if isinstance(source, Source):
            text = None
        else:
            given, text = split_name(os.fspath(source))
            name = name if name is not None else given
        config = stream_config(
            detect_fps=detect_fps, max_latency=max_latency, max_frames=max_frames, lines=list(lines),
            zones=list(zones), track=track, loop=loop, privacy=list(privacy), blur=list(blur), motion=motion,
        )  # fmt: skip
        options = config.options(self.options)
        if tap is not None:
            options = dataclasses.replace(options, tap=tap)
        with self._lock:
            if self._ended.is_set() or (self.stopped and self._started):
                raise VidpipeError("the pipeline has stopped: no stream can be added")
            name = check_stream_name(name) if name is not None else self._free_name()
            if self._started:
                check_open_files(len(self._readers) + 1)
            spec = StreamSpec(name, source if text is None else text)
            reader = self._register(spec, options, config)
            if self._started:
                reader.start()
        return name

    def _free_name(self) -> str:
        number = 0
        while str(number) in self._readers:
            number += 1
        return str(number)

    def remove_stream(self, name: str, timeout: float = 30.0) -> None:
        """Remove a stream (safe from any thread): its reader stops, the frames it read are still
        processed, its outputs are finalised (its video plays when this returns), a ``removed`` event
        is said, and its stages (tracker, counts) and figures are dropped. Raises ``KeyError`` for an
        unknown name."""
        with self._lock:
            reader = self._readers.get(name)
            if reader is None:
                raise KeyError(name)
            reader.removed = True
            reader.stop()
            if reader.done.is_set() or not (self._started and reader.started) or self._ended.is_set():
                # not running (never started, or ended already): nothing in flight to wait for
                self._batcher.remove_stream(name)
                reader.close()
                self._forget(name)
                if self._started and not self._ended.is_set() and self._output is not None:
                    self._put(Event(name, "removed", f"{name}: removed"))  # in order, from the output thread
                return
        if not reader.done.wait(timeout):
            log.warning("stream %s: not finished %g s after its removal", name, timeout)

    def _forget(self, name: str) -> None:
        with self._lock:
            reader = self._readers.pop(name, None)
            self._chains.pop(name, None)
            self.stats.drop_stream(name)
            self._errors.pop(name, None)
            if reader is not None:
                reader.done.set()

    def streams(self) -> list[dict]:
        """Every stream: its name, source (password masked), state (``starting``, ``running``,
        ``reconnecting``, ``ended``, ``failed``, ``stopped``) and figures, as plain data."""
        with self._lock:
            names = list(self._readers)
        streams = self.stats.streams  # (only the streams' figures: not the whole run's stage percentiles)
        return [stats.snapshot() for stats in map(streams.get, names) if stats is not None]

    def chain(self, stream: str) -> Chain:
        """The stages of ``stream`` (built on first use for a stream the pipeline does not read, as the
        push-style :meth:`process` needs)."""
        with self._lock:
            chain = self._chains.get(stream)
            if chain is None:
                chain = self._chains[stream] = self.analysis.chain(check_stream_name(stream))
            return chain

    def counts(self, stream: str) -> dict:
        """A stream's line and zone counts and tracks now (see :meth:`Chain.totals`); {} when it has none."""
        with self._lock:
            chain = self._chains.get(stream)
            return chain.totals() if chain is not None else {}

    @property
    def running(self) -> bool:
        """Started in the background (:meth:`start`) and not ended yet."""
        return self._worker is not None and self._worker.is_alive() and not self._ended.is_set()

    @property
    def source(self) -> Source | None:
        """The source of a one-stream pipeline (None before it is opened or with several streams)."""
        readers = list(self._readers.values())
        return readers[0].source if len(readers) == 1 else None

    @property
    def sinks(self) -> list[Sink]:
        """The sinks (a list: sinks may be added before the run starts)."""
        return self.outputs.sinks

    @property
    def readers(self) -> list[StreamReader]:
        return list(self._readers.values())

    # -- push-style ---------------------------------------------------------------------------------

    def process(self, stream: str, frames: Sequence[Frame]) -> list[Result]:
        """Detect in frames the caller owns (a GStreamer element's buffers), now, in the calling thread,
        and run them through ``stream``'s stages: one result each, in order, with its events. The
        figures count them; the sinks do not see them."""
        results = self._engine.detect(frames)
        chain = self.chain(stream)
        return [self._finish_result(chain, result) for result in results]

    # -- running ------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop reading new frames; frames already read are still processed and delivered. Returns at
        once; a stream that is opening, frozen or reconnecting gives up within 50 ms."""
        with self._lock:
            self.stopped = True
            self._batcher.close()
            for reader in self._readers.values():
                reader.stop()

    def _begin(self, progress=None) -> None:
        with self._lock:
            if self._started:
                raise VidpipeError("a pipeline runs once")
            self._started = True
            self._progress = progress
            sources = [r.source.path if r.source is not None else source_path(r.spec.source) for r in self.readers]
            outputs = [(type(s).__name__, s.path) for s in self.outputs.sinks if getattr(s, "path", None)]
            check_output_paths(
                [path for path in sources if path is not None], expand_streams(outputs, list(self._readers))
            )
            check_open_files(sum(1 for r in self.readers if r.source is None))
            self.warm_up()
            self.stats.started = time.perf_counter()
            for reader in self._readers.values():
                reader.start()

    def warm_up(self) -> float:
        """Fix the detector's batch sizes for this pipeline's batch and run each once (on CUDA: see
        :meth:`Detector.prepare`), so that no frame's time includes loading kernels; returns the seconds
        it took. Done before the run starts (by :meth:`run` and :meth:`start`, once); call it earlier to
        do it at a time of your choosing."""
        prepare = getattr(self.detector, "prepare", None)  # (a stand-in detector may have none)
        return prepare(self.batch) if prepare is not None else 0.0

    def start(self) -> Pipeline:
        """Start in the background and return at once: the streams open in their own threads, batches
        run in an inference thread, results go to the sinks from an output thread."""
        self._begin()
        self._output = threading.Thread(target=self._write_outputs, name="vidpipe-output", daemon=True)
        self._output.start()
        self._worker = threading.Thread(target=self._infer, name="vidpipe-inference", daemon=True)
        self._worker.start()
        return self

    def wait(self, timeout: float | None = None) -> Stats:
        """Wait until the pipeline has ended (every stream ended, or :meth:`stop`); finalise the sinks
        and return the figures, or raise the error of a failed stream (one stream) or
        :class:`StreamsFailedError` (several)."""
        if self._worker is None:
            raise VidpipeError("the pipeline was not started (start() first)")
        self._worker.join(timeout)
        if self._worker.is_alive():
            raise TimeoutError(f"the pipeline is still running after {timeout} s")
        return self._finalise()

    def run(self, progress=None) -> Stats:
        """Run to the end (or until :meth:`stop`), writing every result to the sinks, each opened per
        stream; the sinks are finalised whatever happens. Returns the figures; raises the error of a
        failed stream (one stream) or :class:`StreamsFailedError` (several), after the others finished.

        Inference runs in the calling thread (PyTorch's CPU kernels run measurably faster in the
        thread that owns their OpenMP pool), the sinks are written in an output thread."""
        self._begin(progress)
        self._output = threading.Thread(target=self._write_outputs, name="vidpipe-output", daemon=True)
        self._output.start()
        self._infer()
        return self._finalise()

    def _infer(self) -> None:
        """The inference loop: batches to results, handed to the output thread."""
        try:
            for item in self._engine.run(self._batcher):
                if not self._put(item):
                    break
        except BaseException as exc:
            self._failure.append(exc)
            self._abandon.set()
        finally:
            self._put(None)
            if self._output is not None:
                self._output.join()
            self.stats.finished = time.perf_counter()
            self._ended.set()

    def _finalise(self) -> Stats:
        try:
            if self._failure:
                raise self._failure[0]
        finally:
            self._shutdown()
            close_errors = self.outputs.close()
            if close_errors and not self._failure:
                raise close_errors[0]
        self._raise_failures(dict(self._errors))
        return self.stats

    def _shutdown(self) -> None:
        self._abandon.set()
        readers = self.readers
        for reader in readers:
            reader.stop()
        for reader in readers:
            reader.join(timeout=10)
            reader.close()
        if self._output is not None and self._output is not threading.current_thread():
            self._output.join(timeout=60)
        self.stats.finished = self.stats.finished or time.perf_counter()

    def _raise_failures(self, errors: dict[str, BaseException]) -> None:
        if not errors:
            return
        if len(errors) == 1 and len(self.stats.streams) == 1:
            raise next(iter(errors.values()))
        raise StreamsFailedError(errors)

    def __iter__(self) -> Iterator[Result]:
        """Results in frame order per stream. Decoding overlaps everything; inference runs in the
        iterating thread, batch by batch, between the steps of the caller's loop (as in Ultralytics'
        stream mode). No sink is written. At the end, the error of a failed stream is raised."""
        self._begin()
        try:
            for item in self._engine.run(self._batcher):
                done = self._handle(item, write=False)
                if done is not None:
                    yield done
            self.stats.finished = time.perf_counter()
        finally:
            self._ended.set()
            self._shutdown()
        self._raise_failures(dict(self._errors))

    # -- figures ------------------------------------------------------------------------------------

    def summary(self) -> list[str]:
        """The summary's lines on tracks, lines and zones (per stream; totals for shared ones)."""
        from ..analytics.plan import summary

        with self._lock:
            return summary(dict(self._chains))
