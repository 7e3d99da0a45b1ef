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
import os
import socket
import threading
import time
import urllib.parse
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import VidpipeError
from ..gst.uri import parse_source
from ..pipeline.outputs import Outputs
from ..sinks import Sink
from ..types import Event, Result, SourceInfo
from .worker import StreamWorker

log = logging.getLogger(__name__)

START_TIMEOUT = 300.0  # seconds for the workers to start and load their model
STOP_TIMEOUT = 120.0  # seconds for the workers to finish their outputs


class ClusterError(VidpipeError):
    """The cluster cannot be used (Ray missing, an address that does not answer, every worker gone)."""


def _ray():
    try:
        import ray
    except ImportError:
        raise ClusterError("--cluster needs Ray: pip install 'vidpipe[ray]'") from None
    return ray


def connect(cluster: str) -> bool:
    """Join (``auto``, ``ray://HOST:PORT``, ``HOST:PORT``) or start (``ray``) a Ray cluster; True when
    this process started it (and stops it at the end)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": True,
             "logging_level": logging.ERROR}  # fmt: skip
    try:
        if cluster == "ray":
            ray.init(num_cpus=os.cpu_count(), **quiet)
            return True
        if cluster == "auto":
            ray.init(address="auto", **{k: v for k, v in quiet.items() if k != "include_dashboard"})
            return False
        _check_reachable(cluster)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ray.init(address=cluster, **{k: v for k, v in quiet.items() if k not in ("include_dashboard",)})
        return False
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(f"--cluster {cluster}: cannot connect ({first})") from None


def _check_reachable(address: str) -> None:
    """Fail in seconds, in one line, when nothing listens at a ``ray://HOST:PORT`` address."""
    parts = urllib.parse.urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port or 10001
    except ValueError:
        raise ClusterError(f"--cluster {address}: not an address (expected ray://HOST:PORT)") from None
    if not host:
        raise ClusterError(f"--cluster {address}: not an address (expected ray://HOST:PORT)")
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise ClusterError(f"--cluster {address}: cannot connect ({exc.strerror or exc})") from None


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


@dataclass
class ClusterFigures:
    """What a cluster run did: frames per stream and per worker, moves, wall time."""

    frames: Counter = field(default_factory=Counter)
    per_worker: Counter = field(default_factory=Counter)
    duplicates: int = 0
    moves: list[str] = field(default_factory=list)
    wall: float = 0.0
    workers: dict[int, int] = field(default_factory=dict)  # worker index -> pid

    @property
    def fps(self) -> float:
        return sum(self.frames.values()) / self.wall if self.wall > 0 else 0.0

    def summary(self) -> str:
        total = sum(self.frames.values())
        lines = [f"frames      {total} in {self.wall:.2f} s ({self.fps:.1f} FPS) on {len(self.workers)} workers"]
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
    gathered records go to ``sinks``; ``on_event`` hears every event (moves included)."""

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
    ) -> None:
        if workers < 1:
            raise ClusterError(f"--workers must be at least 1, got {workers}")
        if streams_per_worker is not None:
            workers = max(1, min(workers, -(-len(streams) // streams_per_worker)))
        self.settings = settings
        self.count = max(1, min(workers, len(streams)))
        self.resources = resources or {"num_cpus": 1}
        self.outputs = Outputs(list(sinks))
        self.on_event = on_event
        self.on_result = on_result
        self.streams = {
            name: _Stream(name, uri, _is_live(uri), i % self.count) for i, (name, uri) in enumerate(streams)
        }
        self.figures = ClusterFigures()
        self._actors: dict[int, object] = {}
        self._finished: set[int] = set()
        self._stopping = False
        self._first: float | None = None

    # -- running ------------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> ClusterFigures:
        """Run to the end (or until ``stop`` is set): every output finished, every actor gone."""
        ray = _ray()
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
        self._actors = actors
        self.figures.workers = pids
        for stream in self.streams.values():
            actors[stream.worker].add.remote(stream.name, stream.uri)

    def _gather(self, ray, stop: threading.Event) -> None:
        pending = {self._actors[i].take.remote(): i for i in self._actors}
        deadline: float | None = None
        while pending:
            if stop.is_set() and not self._stopping:
                self._stop_workers()
                deadline = time.monotonic() + STOP_TIMEOUT
            if not self._stopping and all(s.ended for s in self.streams.values()):
                self._stop_workers()  # every stream is done: the workers finish their outputs
                deadline = time.monotonic() + STOP_TIMEOUT
            if deadline is not None and time.monotonic() > deadline:
                log.warning("workers did not finish within %g s", STOP_TIMEOUT)
                return
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in done:
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
        self._stopping = True
        for index, actor in self._actors.items():
            if index not in self._finished:
                actor.stop.remote()

    # -- records ------------------------------------------------------------------------------------

    def _handle(self, index: int, record: dict) -> None:
        if record.get("_finished"):
            self._finished.add(index)
            return
        stream = self.streams.get(record.get("stream"))
        if stream is None or stream.worker != index:
            return  # (a stream that moved away from a worker thought dead)
        if "event" in record:
            ended = record.pop("_end", False)
            if ended and record["event"] == "stopped" and not self._stopping:
                return
            self._tell(Event.from_dict(record))
            if ended:
                stream.ended = True
                self.outputs.close_stream(stream.name)
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
        self._finished.add(index)
        self._actors.pop(index, None)
        alive = [i for i in self._actors if i not in self._finished]
        orphans = [s for s in self.streams.values() if s.worker == index and not s.ended]
        pid = self.figures.workers.get(index)
        log.warning("worker %d (pid %s) died: %s", index, pid, _cause(exc))
        if not orphans:
            return
        if not alive:
            raise ClusterError(f"every worker died (the last: worker {index}, {_cause(exc)})")
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
            self._actors[target].add.remote(stream.name, stream.uri)


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
