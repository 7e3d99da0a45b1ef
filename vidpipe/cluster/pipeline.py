"""``vidpipe.Pipeline(..., cluster=...)``: the pipeline's interface over a Ray cluster. Its streams run on
worker actors (each a vidpipe pipeline: batching, tracking and counting stay inside it); the pixel-free
results come back here in order per stream, to the sinks, the callbacks, the figures and iteration.
Streams come and go while it runs, as in one process; a worker that dies hands its streams to the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from ..analytics.motion import check_motion
from ..errors import StreamsFailedError, VidpipeError
from ..options import DEFAULT_BATCH, MotionOptions, StreamOptions
from ..pipeline.config import model_config, stream_config
from ..pipeline.specs import check_arguments, check_name_free, check_stream_name, split_name, stream_specs
from ..pipeline.stats import Stats
from ..sinks import Sink, VideoSink
from ..types import Event, Result
from .connect import ClusterError, check_worker_counts, connect, worker_plan
from .driver import ClusterRun

_END_KINDS = ("ended", "failed", "stopped", "removed")


def model_settings(detector: object) -> dict:
    """``models.load``'s arguments for the workers, from a detector made by ``models.load``, a model
    name, or the arguments themselves (a mapping with ``name``)."""
    if isinstance(detector, str):
        return {"name": detector, "precision": "auto", "backend": "auto"}
    if isinstance(detector, Mapping) and "name" in detector:
        return model_config(**detector).load_args()
    args = getattr(detector, "load_args", None)
    if args is None:
        raise VidpipeError(
            "with cluster=..., give the detector as made by vidpipe.models.load, or the model's name: "
            "each worker loads its own"
        )
    return dict(args)


@dataclasses.dataclass
class ClusterStats(Stats):
    """The driver's figures (frames and labels as gathered); each stream's figures in :meth:`snapshot`
    are its worker's (drops, reconnects, latency), as :meth:`ClusterPipeline.streams` gives them."""

    reported: Callable[[], list[dict]] | None = None

    def snapshot(self) -> dict:
        figures = super().snapshot()
        if self.reported is not None:
            figures["streams"] = {stream["name"]: stream for stream in self.reported()}
        return figures


class ClusterPipeline:
    """What ``vidpipe.Pipeline(..., cluster="ray" | "auto" | "ray://HOST:PORT")`` returns: the same
    methods (:meth:`run`, :meth:`start`, :meth:`stop`, :meth:`wait`, :meth:`add_stream`,
    :meth:`remove_stream`, :meth:`streams`, :meth:`counts`, iteration), with the streams spread over
    ``workers`` Ray actors (default: one per ``cpus_per_worker`` CPUs of the cluster, or one per GPU
    with a CUDA device). Results carry no pixels (``frame.tensor`` is empty). A :class:`VideoSink` is
    written by the workers (its path must be on storage they share, with ``{stream}``); other sinks
    that need pixels cannot run here. ``live`` (a JPEG quality) makes the workers keep their streams'
    latest frames for :meth:`jpeg`; ``output_dir`` is where they write the service's video recordings.
    """

    def __init__(
        self,
        source: object = None,
        detector: object = None,
        *,
        cluster: str = "ray",
        sources: Sequence[object] | None = None,
        workers: int | None = None,
        streams_per_worker: int | None = None,
        cpus_per_worker: int = 1,
        batch: int = DEFAULT_BATCH,
        sinks: Sequence[Sink] = (),
        classes: Iterable[str] | None = None,
        track: bool = False,
        lines: Sequence[object] = (),
        zones: Sequence[object] = (),
        anchor: str = "bottom_center",
        stages: Sequence[Callable[[Result], Result]] = (),
        privacy: Sequence[str] = (),
        blur: Sequence[str] = (),
        max_frames: int | None = None,
        options: StreamOptions | None = None,
        on_result: Sequence[Callable[[Result], None]] = (),
        on_event: Sequence[Callable[[Event], None]] = (),
        keep_alive: bool = False,
        sink_errors: str = "stop",
        live: int | None = None,
        output_dir: str | os.PathLike | None = None,
    ) -> None:
        check_arguments(
            detector, source, sources, keep_alive=keep_alive, batch=batch, max_frames=max_frames,
            sink_errors=sink_errors,
        )  # fmt: skip
        specs = stream_specs([source] if sources is None else sources) if (source or sources) else []
        for spec in specs:
            if not isinstance(spec.source, (str, os.PathLike)):
                raise VidpipeError(f"stream {spec.name}: with cluster=..., give sources as text (workers open them)")
        video = [sink for sink in sinks if isinstance(sink, VideoSink)]
        if len(video) > 1:
            raise VidpipeError("with cluster=..., one VideoSink at most (the workers write it)")
        for sink in sinks:
            if getattr(sink, "needs_pixels", True) and not isinstance(sink, VideoSink):
                raise VidpipeError(
                    f"{type(sink).__name__} needs the frames' pixels, which stay on the cluster's workers "
                    "(only a VideoSink runs there)"
                )
        if video and len(specs) > 1 and "{stream}" not in str(video[0].path):
            raise VidpipeError("a VideoSink with cluster=... needs {stream} in its path (workers write the streams)")
        options = options or StreamOptions()
        if max_frames is not None:
            options = dataclasses.replace(options, max_frames=max_frames)
        check_motion(options.motion)
        self.cluster = cluster
        self.keep_alive = keep_alive
        self.settings = {
            "model": model_settings(detector),
            "analysis": {"classes": list(classes) if classes else None, "track": track, "lines": list(lines),
                         "zones": list(zones), "anchor": anchor, "stages": list(stages),
                         "privacy": list(privacy), "blur": list(blur)},
            "options": dataclasses.asdict(options),
            "batch": batch,
            "video": str(video[0].path) if video else None,
            "live": live,
            "output_dir": os.fspath(output_dir) if output_dir is not None else None,
        }  # fmt: skip
        self._specs = [_Spec(spec.name, os.fspath(spec.source)) for spec in specs]
        check_worker_counts(workers=workers, streams_per_worker=streams_per_worker, cpus_per_worker=cpus_per_worker)
        self._workers, self._per_worker, self._cpus = workers, streams_per_worker, cpus_per_worker
        self._sinks = [sink for sink in sinks if not isinstance(sink, VideoSink)]
        self._isolate = sink_errors == "isolate"
        self.on_result = list(on_result)
        self.on_event = list(on_event)
        self.stats = ClusterStats(reported=self.streams)
        self.stopped = False
        self._run: ClusterRun | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()  # the run exists (the workers may still be starting)
        self._failure: list[BaseException] = []
        self._errors: dict[str, VidpipeError] = {}  # the streams that failed (raised at the end, as Pipeline does)
        self._results: queue.Queue | None = None
        self._started_ray = self._connected = False

    # -- streams ------------------------------------------------------------------------------------

    def add_stream(
        self,
        source: str | os.PathLike,
        name: str | None = None,
        *,
        detect_fps: float | None = None,
        max_latency: float | None = None,
        max_frames: int | None = None,
        lines: Sequence[object] = (),
        zones: Sequence[object] = (),
        track: bool = False,
        loop: bool = False,
        privacy: Sequence[str] = (),
        blur: Sequence[str] = (),
        record: tuple | None = None,
        motion: MotionOptions | None = None,
    ) -> str:
        """Add a stream on the least-loaded worker (see :meth:`Pipeline.add_stream`); ``record`` is the
        service's (``Record``, file name) for the worker's video recording."""
        if not isinstance(source, (str, os.PathLike)):
            raise VidpipeError("with cluster=..., give sources as text (each worker opens its own)")
        given, uri = split_name(os.fspath(source))
        name = check_stream_name(name if name is not None else given or self._free_name())
        config = stream_config(
            detect_fps=detect_fps, max_latency=max_latency, max_frames=max_frames, lines=list(lines),
            zones=list(zones), track=track, loop=loop, privacy=list(privacy), blur=list(blur), motion=motion,
        )  # fmt: skip
        options = {key: getattr(config, key) for key in config.model_fields_set}  # (checked again by the worker)
        options = {key: value for key, value in options.items() if value not in (None, [], False)}
        if record is not None:
            options["record"] = record
        if self._run is None:
            if self._thread is not None:
                self._ready.wait()
            if self._run is None:  # not started: it goes with the first streams
                check_name_free(name, [spec.name for spec in self._specs])
                self._specs.append(_Spec(name, uri, options))
                return name
        self.stats.stream(name).status = "starting"
        # (a failed stream added again: its earlier failure is no longer the end; dropped before the add, for
        # the new one's failure may come back, in the events' thread, before the add returns)
        earlier = self._errors.pop(name, None)
        try:
            self._run.add(name, uri, options)
        except BaseException:
            if earlier is not None:
                self._errors.setdefault(name, earlier)
            raise
        return name

    def _free_name(self) -> str:
        taken = {spec.name for spec in self._specs} | (set(self._run.streams) if self._run else set())
        return next(str(i) for i in range(len(taken) + 1) if str(i) not in taken)

    def remove_stream(self, name: str, timeout: float = 30.0) -> None:
        """Remove a stream: its worker finishes its outputs, then the driver's; ``KeyError`` if unknown."""
        if self._run is None:
            before = len(self._specs)
            self._specs = [spec for spec in self._specs if spec.name != name]
            if len(self._specs) == before:
                raise KeyError(name)
            return
        self._run.remove(name, timeout)
        self.stats.drop_stream(name)

    def streams(self) -> list[dict]:
        """Every stream's figures as its worker last reported them (see :meth:`Pipeline.streams`), with
        the worker's index."""
        if self._run is None:
            return [{"name": spec.name, "state": "starting", "frames": 0} for spec in self._specs]
        listed = self._run.stream_figures()
        for figures in listed:  # (what the driver knows first: an end it has just been told)
            mine = self.stats.streams.get(figures["name"])
            if mine is not None and mine.status in _END_KINDS:
                figures["state"] = mine.status
        return listed

    def counts(self, stream: str) -> dict:
        """A stream's line and zone counts, as its worker last reported them (about once a second)."""
        return self._run.counts(stream) if self._run is not None else {}

    def jpeg(self, stream: str, height: int | None = None) -> tuple[int, bytes] | None:
        """The stream's latest annotated frame as JPEG, from its worker (needs ``live``)."""
        return self._run.jpeg(stream, height) if self._run is not None else None

    # -- running ------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Join or start the cluster (once; :meth:`start` does it too): a :class:`ClusterError` that says
        why when it cannot."""
        if not self._connected:
            self._started_ray = connect(self.cluster)
            self._connected = True

    def start(self) -> ClusterPipeline:
        """Join or start the cluster and its workers, and run in the background until :meth:`stop` (or,
        without ``keep_alive``, until the last stream ends)."""
        if self._thread is not None:
            raise VidpipeError("the pipeline has started already")
        self.connect()
        workers, resources = worker_plan(str(self.settings["model"].get("device", "cpu")), self._workers, self._cpus)
        self._thread = threading.Thread(
            target=self._main, args=(workers, resources), name="vidpipe-cluster", daemon=True
        )
        self._thread.start()
        return self

    def _main(self, workers: int, resources: dict) -> None:
        try:
            specs, self._specs = self._specs, []
            run = ClusterRun(
                [(spec.name, spec.uri) for spec in specs], self.settings, workers=workers,
                streams_per_worker=self._per_worker, resources=resources, sinks=self._sinks,
                on_event=self._event, on_result=self._result, keep_alive=self.keep_alive, isolate=self._isolate,
            )  # fmt: skip
            for spec in specs:
                run.streams[spec.name].options = spec.options
                run.streams[spec.name].live = run.streams[spec.name].live or bool(spec.options.get("loop"))
                self.stats.stream(spec.name).status = "starting"
            self._run = run
            self._ready.set()
            self.stats.started = time.perf_counter()
            run.run(self._stop)
        except BaseException as exc:
            self._failure.append(exc)
        finally:
            self._ready.set()
            self.stats.finished = time.perf_counter()
            if self._results is not None:
                self._results.put(None)
            if self._started_ray:
                import ray

                with contextlib.suppress(Exception):
                    ray.shutdown()

    def _result(self, result: Result) -> None:
        self.stats.count(result, latency=False).status = "running"  # (latency: the workers' figures)
        for callback in self.on_result:
            callback(result)
        if self._results is not None:
            self._results.put(result)

    def _event(self, event: Event) -> None:
        self.stats.note_event(event)
        if event.kind in _END_KINDS and event.stream in self.stats.streams:
            self.stats.streams[event.stream].status = event.kind
        if event.kind == "failed":
            self._errors[event.stream] = VidpipeError(event.message.removeprefix(f"{event.stream}: "))
        for callback in self.on_event:
            callback(event)

    def stop(self) -> None:
        """Stop reading; what the workers read is still delivered and every output finished."""
        self.stopped = True
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> Stats:
        """Wait for the run to end (every output finished, the workers gone); raises its error."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self._failure:
            raise self._failure[0]
        self._raise_failures()
        return self.stats

    def _raise_failures(self) -> None:
        """As :class:`Pipeline`: the error of a failed stream (a run of one stream), or
        :class:`StreamsFailedError` naming each (the others finished: their results were delivered)."""
        errors = dict(self._errors)
        if not errors:
            return
        if len(errors) == 1 and len(self.stats.streams) == 1:
            raise next(iter(errors.values()))
        raise StreamsFailedError(errors)

    def run(self, progress: object = None) -> Stats:
        """Run to the end in the background threads; returns the figures. Ctrl-C stops it cleanly."""
        self.start()
        try:
            while self.running:
                self._thread.join(0.2)
        except KeyboardInterrupt:
            self.stop()
        return self.wait()

    def __iter__(self) -> Iterator[Result]:
        """Each result as it is gathered, in order per stream (without pixels)."""
        self._results = queue.Queue(maxsize=256)
        self.start()
        try:
            while (result := self._results.get()) is not None:
                yield result
        finally:
            self.stop()
            while self.running:  # (take what is still coming, so the run is never blocked)
                with contextlib.suppress(queue.Empty):
                    self._results.get(timeout=0.1)
        if self._failure:
            raise self._failure[0]
        self._raise_failures()

    def summary(self) -> list[str]:
        return self._run.figures.summary().splitlines() if self._run is not None else []


@dataclasses.dataclass
class _Spec:
    name: str
    uri: str
    options: dict = dataclasses.field(default_factory=dict)


__all__ = ["ClusterError", "ClusterPipeline", "ClusterStats", "model_settings"]
