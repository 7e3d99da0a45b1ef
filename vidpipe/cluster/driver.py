"""The driver of a run spread over a Ray cluster: it starts worker actors, assigns them streams, gathers
their records into the outputs (in order per stream, one file as in one process), and moves the streams
of a worker that dies to the others: a live stream reconnects there (its frame numbers go on), a file
starts again from its beginning and the frames delivered already are dropped by (stream, frame), so
nothing is lost and nothing is written twice.

Only pixel-free records cross the object store; each worker has one ``take`` call in flight at a time,
so a slow driver slows the workers and memory stays bounded on both sides.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import VidpipeError
from ..gst.uri import parse_source
from ..pipeline.outputs import Outputs
from ..pipeline.specs import check_name_free
from ..pipeline.stats import StreamStats
from ..redact import mask_secrets
from ..sinks import Sink
from ..types import Event, Result, SourceInfo
from .connect import ANSWER_TIMEOUT, ClusterError, import_ray
from .worker import StreamWorker

log = logging.getLogger(__name__)

START_TIMEOUT = 300.0  # seconds for the workers to start and load their model
STOP_TIMEOUT = 120.0  # seconds for the workers to finish their outputs
FIGURES_EVERY = 1.0  # seconds between asking each worker for its streams' figures


@dataclass
class _Stream:
    name: str
    uri: str
    live: bool
    worker: int
    last: int = -1  # the highest frame number written
    offset: int = 0  # added to a live stream's frame numbers after it moved
    ended: bool = False
    moves: int = 0
    info: SourceInfo | None = None
    options: dict = field(default_factory=dict)  # Pipeline.add_stream's keywords (sent again on a move)
    removing: bool = False
    gone: threading.Event = field(default_factory=threading.Event)  # its last record is in


@dataclass
class ClusterFigures:
    """What a cluster run did: frames per stream and per worker, moves, wall time."""

    frames: Counter = field(default_factory=Counter)
    per_worker: Counter = field(default_factory=Counter)
    duplicates: int = 0
    moves: list[str] = field(default_factory=list)
    wall: float = 0.0
    workers: dict[int, int] = field(default_factory=dict)  # worker index -> pid
    failed: dict[str, str] = field(default_factory=dict)  # stream -> its failed event's message

    @property
    def fps(self) -> float:
        return sum(self.frames.values()) / self.wall if self.wall > 0 else 0.0

    def summary(self) -> str:
        total = sum(self.frames.values())
        workers = f"{len(self.workers)} worker{'s' if len(self.workers) != 1 else ''}"
        lines = [f"frames      {total} in {self.wall:.2f} s ({self.fps:.1f} FPS) on {workers}"]
        for index, pid in sorted(self.workers.items()):
            lines.append(f"  worker {index} (pid {pid}): {self.per_worker[index]} frames")
        for name, n in sorted(self.frames.items()):
            lines.append(f"  stream {name}: {n} frames")
        if self.duplicates:
            lines.append(f"  {self.duplicates} frames delivered twice after a move were dropped")
        lines.extend(f"  {move}" for move in self.moves)
        return "\n".join(lines)


class ClusterRun:
    """Run ``streams`` (``(name, uri)`` pairs) over ``workers`` Ray actors, each needing ``resources``
    (``{"num_cpus": 1}``, or ``{"num_gpus": 1}``), with ``settings`` for :class:`StreamWorker`; the
    gathered records go to ``sinks`` (``isolate``: a failing one is counted and the rest goes on);
    ``on_event`` hears every event (moves included). With
    ``keep_alive`` it runs until stopped, its streams added (:meth:`add`) and removed (:meth:`remove`)
    while it runs, from any thread."""

    def __init__(
        self,
        streams: Sequence[tuple[str, str]],
        settings: dict,
        *,
        workers: int = 2,
        streams_per_worker: int | None = None,
        resources: dict | None = None,
        sinks: Sequence[Sink] = (),
        on_event: Callable[[Event], None] | None = None,
        on_result: Callable[[Result], None] | None = None,
        keep_alive: bool = False,
        isolate: bool = False,
    ) -> None:
        if workers < 1:
            raise ClusterError(f"--workers must be at least 1, got {workers}")
        if streams_per_worker is not None:
            workers = max(1, min(workers, -(-len(streams) // streams_per_worker)))
        self.settings = settings
        self.keep_alive = keep_alive
        self.count = max(1, workers if keep_alive else min(workers, len(streams)))
        self.resources = resources or {"num_cpus": 1}
        self.outputs = Outputs(list(sinks), isolate=isolate)
        self.on_event = on_event
        self.on_result = on_result
        self.streams = {
            name: _Stream(name, uri, _is_live(uri), i % self.count) for i, (name, uri) in enumerate(streams)
        }
        self.figures = ClusterFigures()
        self._lock = threading.RLock()  # streams are added and removed from any thread
        self._ready = threading.Event()  # the workers are up
        self._actors: dict[int, object] = {}
        self._finished: set[int] = set()
        self._worker_figures: dict[int, dict] = {}  # each worker's latest figures (see StreamWorker.figures)
        self._stopping = False
        self._first: float | None = None
        self._close_later: set[str] = set()  # removed streams whose end never came: outputs to finish

    # -- streams ------------------------------------------------------------------------------------

    def add(self, name: str, uri: str, options: dict | None = None) -> int:
        """Add a stream on the least-loaded worker (``options``: :meth:`Pipeline.add_stream`'s keywords);
        returns the worker's index."""
        with self._lock:
            if self._stopping:
                raise ClusterError("the cluster run has stopped: no stream can be added")
            check_name_free(name, self.streams)
            options = dict(options or {})
            live = _is_live(uri) or bool(options.get("loop"))  # (a looped file goes on after a move)
            alive = [i for i in range(self.count) if i not in self._finished]
            if not alive:
                raise ClusterError("no worker is left to take the stream")
            load = Counter(s.worker for s in self.streams.values() if not s.ended)
            stream = _Stream(name, uri, live, min(alive, key=lambda i: load[i]), options=options)
            self.streams[name] = stream
            if self._ready.is_set():
                self._actors[stream.worker].add.remote(name, uri, options)
            return stream.worker

    def remove(self, name: str, timeout: float = 30.0) -> None:
        """Remove a stream: its worker stops it and finishes its outputs, then the driver's outputs of
        it are finished; ``KeyError`` for an unknown name."""
        with self._lock:
            stream = self.streams[name]
            stream.removing = True
            actor = self._actors.get(stream.worker)
            if actor is not None and self._ready.is_set() and not stream.ended:
                actor.remove.remote(name)
            else:
                stream.gone.set()
        finished = stream.gone.wait(timeout)
        with self._lock:
            if not finished:  # (its outputs here are finished by the gathering thread, which writes them)
                log.warning("stream %s: not finished %g s after its removal", name, timeout)
                self._close_later.add(name)
            if self.streams.get(name) is stream:
                del self.streams[name]

    def stream_figures(self) -> list[dict]:
        """Every stream's figures as its worker last reported them (frames as delivered here, the
        worker's index and process id added); a stream its worker has not reported yet is ``starting``."""
        with self._lock:
            streams = list(self.streams.values())
            reported = {
                (index, figures["name"]): figures
                for index, worker in self._worker_figures.items()
                for figures in worker.get("streams", ())
            }
        listed = []
        for stream in streams:
            figures = dict(reported.get((stream.worker, stream.name)) or StreamStats(stream.name).snapshot())
            figures["source"] = figures.get("source") or mask_secrets(stream.uri)
            figures.update(
                frames=self.figures.frames[stream.name], worker=stream.worker,
                worker_pid=self.figures.workers.get(stream.worker),
            )  # fmt: skip
            listed.append(figures)
        return listed

    def counts(self, name: str) -> dict:
        """A stream's line and zone counts as its worker last reported them ({} when it has none)."""
        with self._lock:
            stream = self.streams.get(name)
            worker = self._worker_figures.get(stream.worker, {}) if stream is not None else {}
        return worker.get("counts", {}).get(name, {})

    def jpeg(self, name: str, height: int | None = None, timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The stream's latest annotated frame as JPEG, encoded by its worker (``settings["live"]``)."""
        with self._lock:
            stream = self.streams.get(name)
            actor = self._actors.get(stream.worker) if stream is not None else None
        if actor is None:
            return None
        try:
            return import_ray().get(actor.jpeg.remote(name, height), timeout=timeout)
        except Exception as exc:  # a worker gone or busy: the viewer skips a picture
            log.debug("stream %s: no picture from its worker (%s)", name, _cause(exc))
            return None

    # -- running ------------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> ClusterFigures:
        """Run to the end (or until ``stop`` is set): every output finished, every actor gone."""
        ray = import_ray()
        stop = stop or threading.Event()
        try:
            self._start(ray)
            self._gather(ray, stop)
        finally:
            for actor in self._actors.values():
                with contextlib.suppress(Exception):  # already gone
                    ray.kill(actor)
            close_errors = self.outputs.close()
            if self._first is not None:  # from the first result (as one process counts: model loads apart)
                self.figures.wall = time.perf_counter() - self._first
        if close_errors:
            raise close_errors[0]
        return self.figures

    def _start(self, ray) -> None:
        remote = ray.remote(StreamWorker).options(max_concurrency=4, max_restarts=0, **self.resources)
        actors = {i: remote.remote(self.settings) for i in range(self.count)}
        ready = {i: actor.ready.remote() for i, actor in actors.items()}
        try:
            pids = dict(zip(ready, ray.get(list(ready.values()), timeout=START_TIMEOUT), strict=True))
        except Exception as exc:
            for actor in actors.values():
                ray.kill(actor)
            raise ClusterError(f"the workers did not start: {_cause(exc)}") from None
        with self._lock:
            self._actors = actors
            self.figures.workers = pids
            for stream in self.streams.values():
                actors[stream.worker].add.remote(stream.name, stream.uri, stream.options)
            self._ready.set()

    def _gather(self, ray, stop: threading.Event) -> None:
        pending = {self._actors[i].take.remote(): i for i in self._actors}
        asked: dict = {}  # figures asked of each worker, at most one call each in flight
        deadline: float | None = None
        next_figures = 0.0
        while pending:
            if stop.is_set() and not self._stopping:
                self._stop_workers()
                deadline = time.monotonic() + STOP_TIMEOUT
            if not self._stopping and not self.keep_alive and all(s.ended for s in self.streams.values()):
                self._stop_workers()  # every stream is done: the workers finish their outputs
                deadline = time.monotonic() + STOP_TIMEOUT
            if deadline is not None and time.monotonic() > deadline:
                log.warning("workers did not finish within %g s", STOP_TIMEOUT)
                return
            with self._lock:
                late, self._close_later = self._close_later, set()
            for name in late:
                self.outputs.close_stream(name)
            if time.monotonic() >= next_figures and not self._stopping:
                next_figures = time.monotonic() + FIGURES_EVERY
                busy = set(asked.values())
                with self._lock:
                    asked.update({a.figures.remote(): i for i, a in self._actors.items() if i not in busy})
            done, _ = ray.wait([*pending, *asked], num_returns=1, timeout=0.5)
            for ref in done:
                if ref in asked:
                    index = asked.pop(ref)
                    with contextlib.suppress(Exception):  # (a dead worker is found by its take call)
                        figures = ray.get(ref)
                        with self._lock:
                            self._worker_figures[index] = figures
                    continue
                index = pending.pop(ref)
                try:
                    records = ray.get(ref)
                except Exception as exc:  # the actor died
                    self._worker_died(index, exc)
                    continue
                for record in records:
                    self._handle(index, record)
                if index not in self._finished:
                    pending[self._actors[index].take.remote()] = index

    def _stop_workers(self) -> None:
        with self._lock:
            self._stopping = True
            for index, actor in self._actors.items():
                if index not in self._finished:
                    actor.stop.remote()

    # -- records ------------------------------------------------------------------------------------

    def _handle(self, index: int, record: dict) -> None:
        if record.get("_finished"):
            self._finished.add(index)
            return
        with self._lock:
            stream = self.streams.get(record.get("stream"))
        if stream is None or stream.worker != index:
            return  # (a stream that moved away from a worker thought dead)
        if "event" in record:
            ended = record.pop("_end", False)
            if ended and record["event"] == "stopped" and not self._stopping:
                return
            if record["event"] == "failed":
                self.figures.failed[stream.name] = record.get("message", "")
            self._tell(Event.from_dict(record))
            if ended:
                stream.ended = True
                self.outputs.close_stream(stream.name)
                stream.gone.set()
            return
        number = record["frame"] + stream.offset
        if number <= stream.last:
            self.figures.duplicates += 1  # delivered before the move
            return
        record["frame"] = number
        stream.last = number
        result = Result.from_record(record)
        if self._first is None:
            self._first = time.perf_counter()
        if not self.outputs.is_open(stream.name):
            self.outputs.open_stream(_info(stream, record))
        self.outputs.write(result)
        self.figures.frames[stream.name] += 1
        self.figures.per_worker[index] += 1
        if self.on_result is not None:
            self.on_result(result)

    def _tell(self, event: Event) -> None:
        self.outputs.event(event)
        if self.on_event is not None:
            self.on_event(event)

    def _worker_died(self, index: int, exc: BaseException) -> None:
        """Move the dead worker's unfinished streams to the surviving workers."""
        with self._lock:
            self._finished.add(index)
            self._actors.pop(index, None)
            self._worker_figures.pop(index, None)
            alive = [i for i in self._actors if i not in self._finished]
            orphans = [s for s in self.streams.values() if s.worker == index and not s.ended]
            for stream in [s for s in orphans if s.removing]:  # (nothing more to finish on the driver)
                stream.ended = True
                self.outputs.close_stream(stream.name)
                stream.gone.set()
            orphans = [s for s in orphans if not s.removing]
        pid = self.figures.workers.get(index)
        log.warning("worker %d (pid %s) died: %s", index, pid, _cause(exc))
        if not orphans:
            return
        alive = [i for i in alive if self._answers(i)]  # (others may have died too, not yet found so)
        if not alive:
            raise ClusterError(f"every worker died (worker {index}: {_cause(exc)}); none is left to take its streams")
        load = Counter(s.worker for s in self.streams.values() if not s.ended and s.worker in alive)
        for stream in orphans:
            target = min(alive, key=lambda i: load[i])
            load[target] += 1
            stream.worker, stream.moves = target, stream.moves + 1
            if stream.live:
                stream.offset = stream.last + 1  # its frame numbers go on
            how = "reconnects" if stream.live else "starts again from its beginning (frames delivered are dropped)"
            message = f"{stream.name}: worker {index} (pid {pid}) died; it {how} on worker {target}"
            self.figures.moves.append(message)
            self._tell(Event(stream.name, "moved", message, fields={"from_worker": index, "to_worker": target}))
            self._actors[target].add.remote(stream.name, stream.uri, stream.options)

    def _answers(self, index: int) -> bool:
        """Whether worker ``index`` answers a call within ``ANSWER_TIMEOUT`` seconds."""
        with self._lock:
            actor = self._actors.get(index)
        if actor is None:
            return False
        try:
            import_ray().get(actor.ready.remote(), timeout=ANSWER_TIMEOUT)
        except Exception:  # dead, or as good as
            return False
        return True


def _info(stream: _Stream, record: dict) -> SourceInfo:
    return SourceInfo(stream.uri, record["width"], record["height"], None, None, None, None, None, stream.live,
                      stream.name)  # fmt: skip


def _is_live(uri: str) -> bool:
    try:
        spec = parse_source(uri)
    except VidpipeError:
        return False
    return spec.live or spec.kind in ("network", "v4l2")


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
