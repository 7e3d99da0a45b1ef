"""Streams: naming the sources of a run, and reading each one in its own thread, reconnecting live
network streams with exponential back-off while the others go on."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError, VidpipeError
from ..gst.source import Source
from ..gst.source import open as open_source
from ..options import FILE_QUEUE, LIVE_QUEUE, RECONNECT_FIRST, RECONNECT_MAX, StreamOptions
from ..types import Event, Gap
from .batcher import Batcher, End
from .stats import StreamStats

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A named source: ``source`` is a source string (path, URL, ``testsrc://``) or an opened Source."""

    name: str
    source: str | Source


def parse_stream(text: str, position: int) -> StreamSpec:
    """``NAME=URI`` names a stream (``gate=rtsp://cam1/stream``); otherwise its name is its position."""
    name, sep, rest = text.partition("=")
    if sep and _NAME.match(name) and rest and not Path(text).exists() and "://" not in name:
        return StreamSpec(name, rest)
    return StreamSpec(str(position), text)


def read_sources_file(path: str | os.PathLike) -> list[str]:
    """Sources listed one per line; ``#`` starts a comment; blank lines are ignored."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise VidpipeError(f"--sources {path}: cannot read ({exc.strerror})") from None
    sources = [line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else "" for line in lines]
    sources = [line for line in sources if line]
    if not sources:
        raise VidpipeError(f"--sources {path}: lists no source")
    return sources


def stream_specs(sources: Iterable[str | os.PathLike | Source | tuple[str, str]]) -> list[StreamSpec]:
    """Name every source (``NAME=URI``, a ``(name, source)`` pair, or its position) and check that the
    names are unique."""
    specs = []
    for position, item in enumerate(sources):
        if isinstance(item, Source):
            specs.append(StreamSpec(item.stream if item.stream != "0" else str(position), item))
        elif isinstance(item, tuple):
            specs.append(StreamSpec(str(item[0]), item[1]))
        else:
            specs.append(parse_stream(os.fspath(item), position))
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise VidpipeError(f"stream name {spec.name!r} is given twice: each stream needs its own name")
        seen.add(spec.name)
    if not specs:
        raise VidpipeError("no source given")
    return specs


def connect(uri: str | os.PathLike, name: str, options: StreamOptions) -> Source:
    """Open one stream's source as the options say (rate limit, timeouts), its frames named ``name``."""
    return open_source(
        uri,
        timeout=options.open_timeout,
        stall_timeout=options.stall_timeout,
        max_fps=options.detect_fps,
        stream=name,
        gpu_decode=options.gpu_decode,
    )


def open_streams(specs: list[StreamSpec], options: StreamOptions) -> tuple[list[StreamSpec], dict[str, BaseException]]:
    """Open every source at once (in parallel: a slow camera does not hold up the others); return the
    specs with their opened sources, and the errors of the sources that could not be opened."""
    opened: dict[str, Source] = {}
    errors: dict[str, BaseException] = {}

    def open_one(spec: StreamSpec) -> None:
        try:
            opened[spec.name] = (
                spec.source if isinstance(spec.source, Source) else connect(spec.source, spec.name, options)
            )
        except VidpipeError as exc:
            errors[spec.name] = exc

    threads = [threading.Thread(target=open_one, args=(spec,), daemon=True) for spec in specs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [StreamSpec(s.name, opened[s.name]) for s in specs if s.name in opened], errors


class StreamReader:
    """Reads one stream into the batcher from its own thread.

    The first connection happens in :meth:`open` (so a bad source fails before any work). A live
    network stream (RTSP, a V4L2 device) that then fails, stalls or is ended by its server is reopened
    with exponential back-off (``RECONNECT_FIRST`` doubling up to ``RECONNECT_MAX`` seconds) until the
    run stops; its frame indices continue across the gap. A file that fails ends its stream alone.
    """

    def __init__(
        self,
        spec: StreamSpec,
        options: StreamOptions,
        batcher: Batcher,
        stats: StreamStats,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.options = options
        self.stats = stats
        self._batcher = batcher
        self._stop = threading.Event()
        self._source: Source | None = spec.source if isinstance(spec.source, Source) else None
        self._uri = spec.source.name if isinstance(spec.source, Source) else spec.source
        self._thread: threading.Thread | None = None
        self._delivered = 0
        self.info = None

    # -- lifetime -----------------------------------------------------------------------------------

    @property
    def source(self) -> Source | None:
        """The source being read (a new one after each reconnection)."""
        return self._source

    def open(self, source: Source | None = None) -> Source:
        """The first connection (or ``source``, opened already); raises
        :class:`~vidpipe.errors.SourceError` naming the source."""
        if source is not None:
            self._source = source
        if self._source is None:
            self._source = self._connect()
        self._opened(self._source)
        batcher_capacity = LIVE_QUEUE if self._source.live else FILE_QUEUE
        self._batcher.add_stream(self.stats, batcher_capacity)
        self._configure()
        return self._source

    def _connect(self) -> Source:
        return connect(self._uri, self.name, self.options)

    def _opened(self, source: Source) -> None:
        self.info = source.info
        self.stats.source = source.name
        self.stats.live = source.live

    def _configure(self) -> None:
        live = self._source.live
        self._batcher.configure(self.name, live=live, max_latency=self.options.latency_bound(live))

    @property
    def reconnectable(self) -> bool:
        source = self._source
        return self.options.reconnect and source is not None and source.live and source.kind != "test"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"vidpipe-read-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading (within 50 ms, also while a stream is frozen or reconnecting)."""
        self._stop.set()
        source = self._source
        if source is not None:
            source.stop()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        if self._source is not None:
            self._source.close()

    # -- the thread ---------------------------------------------------------------------------------

    def _event(self, kind: str, message: str, **fields) -> bool:
        event = Event(self.name, kind, message, fields=fields)
        return self._batcher.put(self.name, event)

    def _run(self) -> None:
        offset = 0  # frames produced by earlier connections: indices go on across reconnects
        self._event("connected", f"{self.name}: connected to {self._uri}")
        while True:
            source = self._source
            error = self._pump(source, offset)
            self.stats.dropped += source.frames_dropped
            offset += source.frames_produced
            source.close()
            if self._stop.is_set():
                self.stats.status = "stopped"
                self._batcher.put(self.name, End(self.name))
                return
            if error is None and (self._limit_reached() or not self.reconnectable):
                self.stats.status = "ended"
                self._event("ended", f"{self.name}: ended after {self._delivered} frames")
                self._batcher.put(self.name, End(self.name))
                return
            if error is not None and not (self.reconnectable and isinstance(error, SourceError)):
                self.stats.status, self.stats.error = "failed", str(error)
                self._event("failed", f"{self.name}: {error}")
                self._batcher.put(self.name, End(self.name, error))
                return
            cause = str(error) if error is not None else f"{self._uri}: the server ended the stream"
            self._event("disconnected", f"{self.name}: disconnected ({cause}); reconnecting")
            if not self._reconnect():
                self.stats.status = "stopped"
                self._batcher.put(self.name, End(self.name))
                return

    def _limit_reached(self) -> bool:
        limit = self.options.max_frames
        return limit is not None and self._delivered >= limit

    def _pump(self, source: Source, offset: int) -> BaseException | None:
        """Frames (and the damaged-data events before them) into the batcher; the error that ended
        the connection, if any."""
        reported = 0
        gaps = source.gaps
        try:
            for frame in source:
                frame.index += offset
                while reported < len(gaps) and gaps[reported].after_frame + offset < frame.index:
                    if not self._batcher.put(self.name, _gap_event(self.name, source.name, gaps[reported], offset)):
                        return None
                    reported += 1
                if not self._batcher.put(self.name, frame):
                    return None
                self._delivered += 1
                if self._stop.is_set() or self._limit_reached():
                    return None
        except BaseException as exc:  # delivered after the frames read before it
            for gap in gaps[reported:]:
                self._batcher.put(self.name, _gap_event(self.name, source.name, gap, offset))
            return exc
        return None

    def _reconnect(self) -> bool:
        """Reopen with exponential back-off until it works (True) or the run stops (False)."""
        delay = RECONNECT_FIRST
        while not self._stop.wait(delay):
            try:
                source = self._connect()
            except SourceError as exc:
                log.info("%s: reconnection failed: %s", self.name, exc)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            if self._stop.is_set():
                source.close()
                return False
            self._source = source
            self._opened(source)
            self.stats.reconnects += 1
            self._event("reconnected", f"{self.name}: reconnected to {self._uri}")
            return True
        return False


def _gap_event(stream: str, source: str, gap: Gap, offset: int) -> Event:
    return Event(
        stream=stream,
        kind="frames_missing",
        message=f"{source}: {gap.describe()} (damaged data)",
        fields={
            "frame": gap.after_frame + 1 + offset,
            "pts": round(gap.end, 6),
            "after_pts": round(gap.start, 6),
            "missing": gap.missing,
        },
    )
