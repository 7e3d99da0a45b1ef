"""The runner: source → batcher → detector → sinks, in overlapping threads joined by bounded queues.

Threads: GStreamer decodes in its own threads; a reader thread turns samples into tensors; the inference
thread (the caller's: PyTorch's CPU kernels run fastest in the thread that owns their OpenMP pool)
batches frames over time (up to ``batch``, waiting at most ``max_wait`` for a batch to fill) and runs
preprocess → forward → postprocess; an output thread writes the sinks in frame order. Queues are
bounded, so a slow stage holds back the ones before it (GStreamer included) and memory stays bounded on
any length of input. Errors travel down the queues: every frame before a
failure is still delivered, then the error is raised.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from . import models
from .errors import OutputError, VidpipeError
from .graph import write_graph
from .models.base import Detector, check_threshold
from .progress import FrameProgress, expected_frames
from .sinks import JsonlSink, Sink, VideoSink, check_output_paths
from .source import Source, source_path
from .source import open as open_source
from .types import Event, Frame, Gap, Result

log = logging.getLogger(__name__)

STAGES = ("decode wait", "preprocess", "inference", "postprocess", "output")
_POLL = 0.1  # seconds between checks of the stop flags while blocked on a queue


@dataclass
class Stats:
    """Throughput and per-stage latency (milliseconds per frame, one sample per batch)."""

    frames: int = 0
    labels: Counter = field(default_factory=Counter)
    samples: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    events: list[Event] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None

    def add(self, stage: str, seconds: float, frames: int = 1) -> None:
        self.samples[stage].append(seconds * 1000.0 / max(frames, 1))

    @property
    def wall(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def fps(self) -> float:
        return self.frames / self.wall if self.wall > 0 else 0.0

    def percentiles(self, stage: str) -> tuple[float, float]:
        values = self.samples[stage]
        if not values:
            return 0.0, 0.0
        q = torch.tensor(values).quantile(torch.tensor([0.5, 0.95]))
        return float(q[0]), float(q[1])

    def summary(self) -> str:
        lines = [f"frames      {self.frames} in {self.wall:.2f} s ({self.fps:.1f} FPS)"]
        total = sum(self.labels.values())
        per_label = ", ".join(f"{label} {n}" for label, n in self.labels.most_common()) or "none"
        lines.append(f"detections  {total}: {per_label}")
        lines.append("latency     ms/frame   p50      p95")
        for stage in STAGES:
            p50, p95 = self.percentiles(stage)
            lines.append(f"  {stage:<20} {p50:8.2f} {p95:8.2f}")
        missing = [e for e in self.events if e.kind == "frames_missing"]
        if missing:
            total = sum(e.fields["missing"] for e in missing)
            lines.append(f"damaged     {total} frame(s) could not be decoded, in {len(missing)} place(s)")
        return "\n".join(lines)


def _gap_event(source: Source, frame: Frame, gap: Gap) -> Event:
    return Event(
        stream=frame.stream,
        kind="frames_missing",
        message=f"{source.name}: {gap.describe()} (damaged data)",
        fields={
            "frame": frame.index,
            "pts": round(gap.end, 6),
            "after_pts": round(gap.start, 6),
            "missing": gap.missing,
        },
    )


class _End:
    """Queue marker: no more items; carries the error that ended the stream, if any."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Pipeline:
    """Runs a detector over every frame of an opened :class:`Source` and feeds the results to sinks.

    Iterate it for :class:`Result` objects in frame order, or call :meth:`run` to drive the sinks.
    ``classes`` keeps only detections with these labels. ``on_result`` callbacks are called with each
    result from the output thread, after the sinks.
    """

    def __init__(
        self,
        source: Source,
        detector: Detector,
        *,
        batch: int = 4,
        max_wait: float = 0.05,
        sinks: Sequence[Sink] = (),
        classes: Iterable[str] | None = None,
        max_frames: int | None = None,
        on_result: Sequence[Callable[[Result], None]] = (),
        on_event: Sequence[Callable[[Event], None]] = (),
    ) -> None:
        if not isinstance(batch, int) or batch < 1:
            raise VidpipeError(f"batch must be at least 1, got {batch!r}")
        if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
            raise VidpipeError(f"max_frames must be at least 1, got {max_frames!r}")
        self.source = source
        self.detector = detector
        self.batch = batch
        self.max_wait = max_wait
        self.sinks = list(sinks)
        self.classes = self._check_classes(classes)
        self.max_frames = max_frames
        self.on_result = list(on_result)
        self.on_event = list(on_event)
        self.stats = Stats()
        self._frames: queue.Queue = queue.Queue(maxsize=2 * batch)
        self._results: queue.Queue = queue.Queue(maxsize=2 * batch)
        self._stop = threading.Event()  # stop reading; finish what is in flight
        self._abandon = threading.Event()  # nobody consumes any more: drop everything
        self._threads: list[threading.Thread] = []
        self._started = False
        self.stopped = False  # set by stop(): the run ended early on request

    def _check_classes(self, classes: Iterable[str] | None) -> set[str] | None:
        if classes is None:
            return None
        if isinstance(classes, str):
            classes = classes.split(",")
        wanted = {c.strip() for c in classes if c.strip()}
        if not wanted:
            raise VidpipeError("classes: no class name given (expected names such as person,car)")
        unknown = wanted - set(self.detector.classes)
        if unknown:
            known = ", ".join(c for c in self.detector.classes if c not in ("N/A", "__background__"))
            raise VidpipeError(
                f"unknown class(es) {', '.join(sorted(unknown))} for {self.detector.name} (known: {known})"
            )
        return wanted

    def stop(self) -> None:
        """Stop reading new frames; frames already read are still processed and delivered. Returns
        at once; a source that is waiting for a frame (a frozen stream) gives up within 50 ms."""
        self.stopped = True
        self._stop.set()
        self.source.stop()

    # -- threads ------------------------------------------------------------------------------------

    def _put(self, q: queue.Queue, item: object) -> bool:
        while not self._abandon.is_set():
            try:
                q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue, timeout: float | None = None) -> object:
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not self._abandon.is_set():
            wait = _POLL if deadline is None else min(_POLL, deadline - time.perf_counter())
            if wait <= 0:
                raise queue.Empty
            try:
                return q.get(timeout=wait)
            except queue.Empty:
                continue
        return _End()

    def _read(self) -> None:
        error = None
        gaps = self.source.gaps
        reported = 0
        try:
            for count, frame in enumerate(self.source, start=1):
                while reported < len(gaps):  # damaged data just before this frame
                    if not self._put(self._frames, _gap_event(self.source, frame, gaps[reported])):
                        return
                    reported += 1
                if not self._put(self._frames, frame):
                    return
                if self._stop.is_set() or (self.max_frames is not None and count >= self.max_frames):
                    break
        except BaseException as exc:  # delivered after the frames read before it
            error = exc
        self._put(self._frames, _End(error))

    def _next_batch(self) -> tuple[list[Frame], _End | Event | None, float]:
        """Up to ``batch`` frames, waiting at most ``max_wait`` after the first; a batch ends early at
        an event or the end of the stream (returned second, to be handled after the batch)."""
        started = time.perf_counter()
        first = self._get(self._frames)
        waited = time.perf_counter() - started
        if isinstance(first, (_End, Event)):
            return [], first, waited
        frames, deadline = [first], time.perf_counter() + self.max_wait
        while len(frames) < self.batch:
            try:
                item = self._get(self._frames, timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                break
            if isinstance(item, (_End, Event)):
                return frames, item, waited
            frames.append(item)
        return frames, None, waited

    def _detected(self) -> Iterator[Result | Event]:
        """Batch, detect and yield results (and events) in frame order, in the calling thread; at the
        end of the stream, raise the error that ended it (after every frame before it)."""
        while True:
            frames, marker, waited = self._next_batch()
            if frames:
                yield from self._detect(frames, waited)
            if isinstance(marker, Event):
                yield marker
            elif marker is not None:
                if marker.error is not None:
                    raise marker.error
                return

    def _count(self, item: Result | Event) -> None:
        if isinstance(item, Event):
            self.stats.events.append(item)
            for callback in self.on_event:
                callback(item)
            return
        self.stats.frames += 1
        self.stats.labels.update(item.detections.labels)

    def _infer(self) -> None:
        """Inference loop feeding the results queue (for :meth:`run`)."""
        end = _End()
        try:
            for result in self._detected():
                if not self._put(self._results, result):
                    return
        except BaseException as exc:
            end = _End(exc)
        self._put(self._results, end)

    def _detect(self, frames: list[Frame], waited: float) -> list[Result]:
        det, n = self.detector, len(frames)
        t0 = time.perf_counter()
        batch = det.preprocess([f.tensor for f in frames])
        t1 = time.perf_counter()
        outputs = det.forward(batch)
        if det.device.type == "cuda":
            torch.cuda.synchronize(det.device)
        t2 = time.perf_counter()
        with torch.inference_mode():
            detections = det.postprocess(outputs, batch)
        t3 = time.perf_counter()
        for stage, seconds in zip(STAGES[:4], (waited, t1 - t0, t2 - t1, t3 - t2), strict=True):
            self.stats.add(stage, seconds, n)
        results = []
        for frame, found in zip(frames, detections, strict=True):
            if self.classes is not None:
                found = found[torch.tensor([label in self.classes for label in found.labels], dtype=torch.bool)]
            results.append(Result(frame, found))
        return results

    def _start(self) -> None:
        if self._started:
            raise VidpipeError("a pipeline runs once")
        self._started = True
        self.stats = Stats()
        self._spawn(self._read, "vidpipe-read")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _shutdown(self) -> None:
        self._stop.set()
        self._abandon.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=10)
        self.source.close()
        self.stats.finished = self.stats.finished or time.perf_counter()

    def _results_in_order(self) -> Iterator[Result | Event]:
        while True:
            item = self._get(self._results)
            if isinstance(item, _End):
                self.stats.finished = time.perf_counter()
                if item.error is not None:
                    raise item.error
                return
            self._count(item)
            yield item

    def __iter__(self) -> Iterator[Result]:
        """Results in frame order. Decoding overlaps everything; inference runs in the iterating
        thread, batch by batch, between the steps of the caller's loop (as in Ultralytics' stream mode)."""
        self._start()
        try:
            for item in self._detected():
                self._count(item)
                if isinstance(item, Result):
                    yield item
        finally:
            self._shutdown()

    def run(self, progress: FrameProgress | None = None) -> Stats:
        """Run to the end (or until :meth:`stop`), writing every result to the sinks; the sinks are
        finalised whatever happens. Returns the figures; re-raises the error that ended the stream.

        Inference runs in the calling thread (PyTorch's CPU kernels run measurably faster in the
        thread that owns their OpenMP pool), the sinks are written in an output thread."""
        opened: list[Sink] = []
        failure: list[BaseException] = []

        def write_outputs() -> None:
            try:
                for result in self._results_in_order():
                    if isinstance(result, Event):
                        for sink in self.sinks:
                            if hasattr(sink, "event"):
                                sink.event(result)
                        continue
                    t0 = time.perf_counter()
                    for sink in self.sinks:
                        sink.write(result)
                    for callback in self.on_result:
                        callback(result)
                    self.stats.add("output", time.perf_counter() - t0)
                    if progress is not None:
                        progress.advance()
            except BaseException as exc:
                failure.append(exc)
                self._abandon.set()  # nobody takes results any more: stop the other stages

        try:
            check_output_paths(
                [self.source.path] if self.source.path else [],
                [(type(sink).__name__, sink.path) for sink in self.sinks if getattr(sink, "path", None)],
            )
            for sink in self.sinks:
                sink.open(self.source.info)
                opened.append(sink)
            self._start()
            self._spawn(write_outputs, "vidpipe-output")
            self._infer()
            self._threads[-1].join()
            if failure:
                raise failure[0]
        finally:
            self._shutdown()
            errors = []
            for sink in opened:  # every sink is finalised, whatever another one did
                try:
                    sink.close()
                except VidpipeError as exc:
                    errors.append(exc)
                except Exception as exc:  # a sink of the user's: report it as an output error
                    errors.append(OutputError(f"{type(sink).__name__}: cannot finish ({exc})"))
            if errors and sys.exc_info()[0] is None:
                raise errors[0]
        return self.stats


def detect(
    source: str | os.PathLike | Source,
    model: str | Detector = models.DEFAULT_MODEL,
    *,
    weights: str | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    batch: int = 4,
    threshold: float | None = None,
    classes: Iterable[str] | None = None,
    max_frames: int | None = None,
) -> Iterator[Result]:
    """Detect objects in every frame: ``for result in vidpipe.detect("clip.mp4"): ...``.

    Yields one :class:`Result` per frame, in order (``result.frame``, ``result.detections``), while
    decoding, inference and your loop overlap. ``model`` is a name (see ``vidpipe models``) or a
    :class:`~vidpipe.models.Detector`.
    """
    detector = (
        model
        if isinstance(model, Detector)
        else models.load(model, weights=weights, device=device, precision=precision, threshold=threshold)
    )
    src = source if isinstance(source, Source) else open_source(source)
    yield from Pipeline(src, detector, batch=batch, classes=classes, max_frames=max_frames)


# -- command line ---------------------------------------------------------------------------------------


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _install_stop_signals(pipeline: Pipeline) -> tuple[Callable[[], None], list[int]]:
    """First SIGINT (Ctrl-C), SIGTERM (docker, systemd, Kubernetes, ``timeout``) or SIGHUP: stop reading,
    finish the frames in flight and finalise every output. A second one: exit at once. Returns a
    function that restores the previous handlers, and the list the received signal numbers go to."""
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) > 1:
            os._exit(128 + received[0])
        name = signal.Signals(signum).name
        print(f"\nvidpipe: {name}: stopping, finishing the outputs (again to quit at once)", file=sys.stderr)
        pipeline.stop()

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    return lambda: [signal.signal(sig, old) for sig, old in previous.items()], received


def check_detect_args(args) -> None:
    """Refuse bad option values with one line naming the option, before any work is done."""
    if args.batch < 1:
        raise VidpipeError(f"--batch must be at least 1, got {args.batch}")
    if args.max_frames is not None and args.max_frames < 1:
        raise VidpipeError(f"--max-frames must be at least 1, got {args.max_frames}")
    if args.threshold is not None:
        try:
            check_threshold(args.threshold)
        except VidpipeError:
            raise VidpipeError(f"--threshold must be a number between 0 and 1, got {args.threshold}") from None
    if args.classes is not None and not [c for c in args.classes.split(",") if c.strip()]:
        raise VidpipeError(f"--classes {args.classes!r}: no class name given (expected e.g. person,car)")
    outputs = [
        (f"--{name}", path)
        for name, path in (("json", args.json_out), ("video", args.video), ("graph", args.graph))
        if path
    ]
    input_path = source_path(args.source)
    check_output_paths([input_path] if input_path else [], outputs)


def run_cli(args) -> int:
    """``vidpipe detect``: see ``vidpipe detect --help``."""
    check_detect_args(args)
    sinks: list[Sink] = []
    if args.video:
        sinks.append(VideoSink(args.video))  # checks the format before any work is done
    if args.json_out:
        sinks.insert(0, JsonlSink(args.json_out))
    classes = args.classes.split(",") if args.classes else None
    with open_source(args.source) as src:  # a bad source fails before the model is loaded
        detector = models.load(
            args.model, weights=args.weights, device=args.device, precision=args.precision, threshold=args.threshold
        )
        pipeline = Pipeline(
            src, detector, batch=args.batch, sinks=sinks, classes=classes, max_frames=args.max_frames,
            on_event=[lambda event: print(f"vidpipe: warning: {event.message}", file=sys.stderr)],
        )  # fmt: skip
        if args.graph:
            write_graph(src.graph_dot(), args.graph)
        total = expected_frames(src.info.frames, args.max_frames)
        restore, received = _install_stop_signals(pipeline)
        error: VidpipeError | None = None
        try:
            with FrameProgress(total, enabled=not args.quiet, description="detect") as progress:
                pipeline.run(progress)
        except VidpipeError as exc:
            error = exc
        finally:
            restore()
        print(pipeline.stats.summary(), file=sys.stderr)
        if src.frames_dropped:
            print(f"dropped     {src.frames_dropped} frames (live source faster than the pipeline)", file=sys.stderr)
    if error is not None:
        raise error
    if received:
        return 128 + received[0]
    return 0
