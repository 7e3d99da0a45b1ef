"""Streams: naming the sources of a run, and reading each one in its own thread, reconnecting live
network streams with exponential back-off while the others go on."""

from __future__ import annotations

import functools
import logging
import os
import resource
import threading

from ..errors import SourceError, UnsupportedSourceError, VidpipeError
from ..gst.opening import open as open_source
from ..gst.source import Source
from ..memory import trim_heap
from ..options import FILE_QUEUE, LIVE_QUEUE, RECONNECT_FIRST, RECONNECT_MAX, StreamOptions
from ..redact import mask_secrets
from ..types import Event, Gap
from .batcher import Batcher, End
from .specs import StreamSpec
from .stats import StreamStats

log = logging.getLogger(__name__)

MAX_FRAME_PIXELS = 8192 * 8192  # a stream's decoded-frame budget (8K UHD is half of it)


# Open files a run needs (measured: 9 for a file stream, its decoder's threads' pipes among them; a
# network stream adds its sockets; 4 for an annotated video's encoder), and a reserve for the model,
# the libraries it loads and the other outputs.
FDS_PER_STREAM = 12
FDS_PER_VIDEO = 6
FDS_RESERVED = 64


def check_open_files(streams: int, videos: int = 0) -> None:
    """Make sure a run of ``streams`` streams (``videos`` of them with an annotated video) can open the
    files it needs: the soft limit is raised up to the hard one when that is enough, else the run is
    refused before any work, with the ``ulimit -n`` to set."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        return
    needed = used + streams * FDS_PER_STREAM + videos * FDS_PER_VIDEO + FDS_RESERVED
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return
    if hard == resource.RLIM_INFINITY or needed <= hard:
        target = needed * 2 if hard == resource.RLIM_INFINITY else min(hard, needed * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        log.info("raised the open-files limit from %d to %d for %d streams", soft, target, streams)
        return
    suggest = 1 << (needed - 1).bit_length()
    raise VidpipeError(
        f"{streams} streams need about {needed} open files ({FDS_PER_STREAM} a stream"
        f"{f', {FDS_PER_VIDEO} an annotated video' if videos else ''}, {FDS_RESERVED} for the model and "
        f"outputs), more than this process may open ({hard}): raise the limit (ulimit -n {suggest}) or run "
        "fewer streams"
    )


def connect(uri: str | os.PathLike, name: str, options: StreamOptions, cancel: threading.Event | None = None) -> Source:
    """Open one stream's source as the options say (rate limit, timeouts), its frames named ``name``;
    ``cancel`` gives up the opening (see :func:`vidpipe.open`). Frames over ``MAX_FRAME_PIXELS`` are
    refused (closed after the first)."""
    source = open_source(
        uri,
        timeout=options.open_timeout,
        stall_timeout=options.stall_timeout,
        max_fps=options.detect_fps,
        stream=name,
        gpu_decode=options.gpu_decode,
        cancel=cancel,
        pace=options.loop,
        tap=functools.partial(options.tap, name) if options.tap is not None else None,
        motion=options.motion,
    )
    info = source.info
    if info is not None and info.width * info.height > MAX_FRAME_PIXELS:
        source.close()
        raise UnsupportedSourceError(
            f"{source.name}: frames of {info.width}x{info.height} pixels, more than the decoded-frame budget "
            f"({MAX_FRAME_PIXELS:,} pixels, 8192x8192)"
        )
    return source


def stream_error(uri: object, exc: BaseException) -> VidpipeError:
    """``exc`` as a stream's one-line error: vidpipe's own as it is, any other naming the source (its
    traceback in the debug log)."""
    if isinstance(exc, VidpipeError):
        return exc
    log.debug("%s: unexpected error", mask_secrets(str(uri)), exc_info=exc)
    return VidpipeError(f"{uri}: {type(exc).__name__}: {exc}")


def open_streams(
    specs: list[StreamSpec], options: StreamOptions, cancel: threading.Event | None = None
) -> tuple[list[StreamSpec], dict[str, BaseException]]:
    """Open every source at once (in parallel: a slow camera does not hold up the others); return the
    specs with their opened sources, and the errors of the sources that could not be opened. Setting
    ``cancel`` gives up the openings still waiting within 50 ms."""
    opened: dict[str, Source] = {}
    errors: dict[str, BaseException] = {}

    def open_one(spec: StreamSpec) -> None:
        try:
            opened[spec.name] = (
                spec.source if isinstance(spec.source, Source) else connect(spec.source, spec.name, options, cancel)
            )
        except Exception as exc:  # whatever it is, it is this stream's error
            errors[spec.name] = stream_error(spec.source, exc)

    threads = [threading.Thread(target=open_one, args=(spec,), daemon=True) for spec in specs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [StreamSpec(s.name, opened[s.name]) for s in specs if s.name in opened], errors


class StreamReader:
    """Reads one stream into the batcher from its own thread.

    The stream's lane in the batcher exists from the reader's creation until its end is taken. The
    first connection happens in the reader's thread (or before, with an opened source), so a slow
    camera holds up nobody; a source that cannot be opened ends its stream with a ``failed`` event. A
    live network stream (RTSP, a V4L2 device, an HTTP stream without a length) that then fails, stalls
    or is ended by its server is reopened with exponential back-off (``RECONNECT_FIRST`` doubling up to
    ``RECONNECT_MAX`` seconds) until it is stopped; its frame indices continue across the gap. A file
    that fails ends its stream alone.
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
        self.removed = False  # stopped for good by Pipeline.remove_stream
        self.done = threading.Event()  # its end went through the outputs
        self._batcher = batcher
        self._stop = threading.Event()
        self._failure: VidpipeError | None = None  # why :meth:`fail` stopped it
        self._source: Source | None = spec.source if isinstance(spec.source, Source) else None
        self._uri = spec.source.name if isinstance(spec.source, Source) else spec.source
        self.stats.source = mask_secrets(str(self._uri))
        self._thread: threading.Thread | None = None
        self._delivered = 0
        self.info = None
        self._pts_offset = 0.0  # a looped file's earlier rounds: its times go on
        self._last_pts: float | None = None
        batcher.add_stream(stats)

    # -- lifetime -----------------------------------------------------------------------------------

    @property
    def source(self) -> Source | None:
        """The source being read (a new one after each reconnection)."""
        return self._source

    def _connect(self) -> Source:
        return connect(self._uri, self.name, self.options, cancel=self._stop)

    def _opened(self, source: Source) -> None:
        self.info = source.info
        self.stats.source = source.name
        self.stats.live = source.live
        self.stats.status = "running"

    def _configure(self) -> None:
        live = self._source.live
        self._batcher.configure(
            self.name,
            live=live,
            max_latency=self.options.latency_bound(live),
            capacity=LIVE_QUEUE if live else FILE_QUEUE,
        )

    @property
    def reconnectable(self) -> bool:
        source = self._source
        return self.options.reconnect and source is not None and source.live and source.kind != "test"

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=f"vidpipe-read-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading (within 50 ms, also while a stream is opening, frozen or reconnecting)."""
        self._stop.set()
        source = self._source
        if source is not None:
            source.stop()

    def fail(self, error: VidpipeError) -> None:
        """Stop reading because its frames cannot be used (a line outside them): the stream ends
        ``failed`` with ``error`` (the first one given)."""
        if self._failure is None:
            self._failure = error
        self.stop()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        if self._source is not None:
            self._source.close()

    # -- the thread ---------------------------------------------------------------------------------

    def _event(self, kind: str, message: str, wall: float | None = None, **fields) -> bool:
        event = (
            Event(self.name, kind, message, fields=fields)
            if wall is None
            else Event(self.name, kind, message, wall=wall, fields=fields)
        )
        return self._batcher.put(self.name, event)

    def _end(self, status: str, error: BaseException | None = None) -> None:
        self.stats.status = "removed" if self.removed else status
        if error is not None:
            self.stats.error = str(error)
            # kept as the stream's error until it is removed: without the frames of the failed opening
            # (its GStreamer pipeline, whose bus holds two sockets)
            error.__traceback__, error.__context__ = None, None
        self._batcher.put(self.name, End(self.name, error))

    def _stopped(self) -> None:
        """The end of a stream stopped: ``failed`` when :meth:`fail` stopped it."""
        if self._failure is None:
            self._end("stopped")
        else:
            self._event("failed", f"{self.name}: {self._failure}")
            self._end("failed", self._failure)

    def _main(self) -> None:
        """The thread: any exception ends the stream as ``failed`` with it as the error (never a thread
        that dies and leaves its stream starting for ever)."""
        try:
            self._read()
        except Exception as exc:
            error = stream_error(self._uri, exc)
            self._event("failed", f"{self.name}: {error}")
            self._end("failed", error)

    def _read(self) -> None:
        """The first connection (unless opened already), then the frames."""
        if self._source is None:
            try:
                self._source = self._connect()
            except VidpipeError as exc:
                if self._stop.is_set():
                    self._stopped()
                else:
                    self._event("failed", f"{self.name}: {exc}")
                    self._end("failed", exc)
                return
        self._opened(self._source)
        self._configure()
        self._run()

    def _run(self) -> None:
        offset = 0  # frames produced by earlier connections: indices go on across reconnects
        # stamped when the connection opened: before its first frame (events and frames in time order)
        self._event("connected", f"{self.name}: connected to {self._uri}", wall=self._source.opened_at)
        while True:
            source = self._source
            error = self._pump(source, offset)
            self.stats.drop("source", source.frames_dropped)
            offset += source.frames_produced
            source.close()
            if self._stop.is_set():
                self._stopped()
                return
            if error is None and self.options.loop and not self._limit_reached() and source.kind == "file":
                if not self._loop(source):
                    self._stopped()
                    return
                continue
            if error is None and (self._limit_reached() or not self.reconnectable):
                read = self._delivered
                self._event("ended", f"{self.name}: ended after {read} frames read", frames_read=read)
                self._end("ended")
                return
            if error is not None and not (self.reconnectable and isinstance(error, SourceError)):
                self._event("failed", f"{self.name}: {error}")
                self._end("failed", error)
                return
            cause = str(error) if error is not None else f"{self._uri}: the server ended the stream"
            self._event("disconnected", f"{self.name}: disconnected ({cause}); reconnecting")
            self.stats.status = "reconnecting"
            if not self._reconnect():
                self._stopped()
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
                frame.pts += self._pts_offset
                self._last_pts = frame.pts
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

    def _loop(self, ended: Source) -> bool:
        """Open a looped file again at its end (False: it cannot be, or the run stops)."""
        info = ended.info
        step = 1 / info.fps if info is not None and info.fps else 0.0
        self._pts_offset = (self._last_pts if self._last_pts is not None else self._pts_offset) + step
        try:
            source = self._connect()
        except VidpipeError as exc:
            self._event("failed", f"{self.name}: cannot loop: {exc}")
            return False
        if self._stop.is_set():
            source.close()
            return False
        self._source = source
        self._opened(source)
        return True

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
            trim_heap()  # the closed connection's memory goes back to the system
            self.stats.reconnects += 1
            self._event("reconnected", f"{self.name}: reconnected to {self._uri}", wall=source.opened_at)
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
