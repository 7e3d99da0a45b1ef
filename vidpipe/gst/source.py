"""Sources: open any video through GStreamer and iterate its frames as tensors.

``open(source)`` builds ``<source> ! decode ! videoconvertscale ! RGB caps ! appsink``, starts it, waits
for the first frame (so ``.info`` is known and bad input fails at once), and yields :class:`Frame`
objects from the caller's thread while GStreamer decodes in its own threads. Bus errors become
:mod:`vidpipe.errors` exceptions that name the input and the cause.
"""

from __future__ import annotations

import bisect
import logging
import os
import resource
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

from ..errors import (
    DamagedSourceError,
    DecodeError,
    NoVideoStreamError,
    OpenCancelledError,
    SourceError,
    SourceOutOfResourcesError,
    StreamUnreachableError,
    TruncatedSourceError,
)
from ..types import Frame, Gap, SourceInfo
from . import GLib, Gst, GstPbutils
from .buffers import BufferReader
from .bus import error_from_message
from .decoders import CUDA_CHAIN, Decoding, nvidia_decoding, prefer_nvidia_decoders, video_decoder
from .uri import parse_source

log = logging.getLogger(__name__)

# A frame rate above this is not a rate but a container's time base: the file has a variable rate.
MAX_PLAUSIBLE_FPS = 1000.0
# File descriptors one source needs at most (bus, decoder threads, file); checked before building.
FDS_PER_SOURCE = 32
_PTS_TOLERANCE = Gst.MSECOND  # decoders may round timestamps
MIN_RATE = "1/10000"  # the lower end of the frame rates a max_fps lets through


def _check_fds(text: str) -> None:
    """Fail clearly, before GStreamer does with a flood of CRITICAL lines, when fds run out."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        return
    if soft - used < FDS_PER_SOURCE:
        raise SourceOutOfResourcesError(
            f"{text}: too many open files ({used} of the limit {soft}): close sources no longer used, "
            "or raise the limit (ulimit -n)"
        )


def _weak(method):
    """A GObject callback that calls ``method`` through a weak reference: a signal handler or pad probe
    then does not keep its Python owner (and with it the whole pipeline) alive in a reference cycle."""
    ref = weakref.WeakMethod(method)

    def call(*args):
        bound = ref()
        if bound is not None:
            return bound(*args)
        return Gst.PadProbeReturn.OK if args and isinstance(args[-1], Gst.PadProbeInfo) else None

    return call


def _teardown(pipeline: Gst.Pipeline, handlers: list[tuple[Gst.Object, int]], probes: list[tuple[Gst.Pad, int]]):
    """Stop a pipeline and cut every link from GStreamer back to Python (runs on close and on collection).

    A source dropped without ``close()`` may be collected in one of GStreamer's own streaming threads
    (the last reference can go away inside a callback), where changing the pipeline's state would
    deadlock: the teardown then runs in a short-lived thread of its own."""
    if isinstance(threading.current_thread(), threading._DummyThread):  # not a thread Python started
        threading.Thread(target=_teardown, args=(pipeline, handlers, probes), name="vidpipe-teardown").start()
        return
    pipeline.set_state(Gst.State.NULL)
    for element, handler in handlers:
        if element.handler_is_connected(handler):
            element.disconnect(handler)
    for pad, probe in probes:
        pad.remove_probe(probe)
    handlers.clear()
    probes.clear()


class Source:
    """An opened video source: iterable over :class:`Frame`, a context manager, with ``.info``.

    Create it with :func:`vidpipe.open`. Iterate it once, from one thread. A source that is garbage
    collected without :meth:`close` stops its pipeline all the same.
    """

    def __init__(
        self,
        source: str | os.PathLike,
        *,
        size: tuple[int, int] | None = None,
        keep_aspect: bool = False,
        live: bool | None = None,
        max_buffers: int = 8,
        timeout: float = 10.0,
        max_fps: float | None = None,
        stream: str = "0",
        stall_timeout: float | None = None,
        gpu_decode: bool = False,
        cancel: threading.Event | None = None,
        pace: bool = False,
    ) -> None:
        self.opened_at = time.time()  # when opening began (before any frame of it)
        self._spec = parse_source(source)
        self._cancel = cancel
        _check_fds(self._spec.text)
        if max_fps is not None and not max_fps > 0:
            raise SourceError(f"{self._spec.text}: max_fps must be above 0, got {max_fps}")
        self.live = self._spec.live if live is None else live
        # An HTTP stream is live when it has no length (an MJPEG camera's never-ending multipart reply,
        # live HLS): known once it is open. Until then it is read as a file, with the live bookkeeping on.
        self._maybe_live = live is None and self._spec.kind == "network" and not self.live
        self._clocked = self.live  # frames are stamped with the pipeline clock's running time
        self.stream = stream
        self._timeout = timeout
        self._stall_timeout = timeout if stall_timeout is None else stall_timeout
        self._max_fps = max_fps
        self._produced = 0  # frames that came out of the decoder (before any rate limit or live drop)
        self._indices: dict[int, list[int]] = {}  # pts (ns) -> produced indices, for frames on their way
        self._delivered = 0
        self._last_pts: float | None = None
        self._arrived = 0
        self._drained = False
        self._max_buffers = 2 if self.live else max_buffers
        self._pace = pace  # a file played at its own speed (a looped demo stream), not as fast as it decodes
        self._missing: list[Gst.Message] = []
        self._video_linked = False
        self._no_more_pads = False
        self._closed = False
        self._stopping = threading.Event()
        self._stream_ends: dict[str, float] = {}  # the end (s) of each decoded stream besides the video
        self._decoder_input: list[int] = []  # pts (ns) of compressed frames that went into the decoder
        self._decoder_lock = threading.Lock()
        self.gaps: list[Gap] = []
        self._last_decoded: int | None = None
        self._handlers: list[tuple[Gst.Object, int]] = []
        self._probes: list[tuple[Gst.Pad, int]] = []
        self.decoding = nvidia_decoding() if gpu_decode else Decoding(False, "software decoding")
        if self.decoding.gpu:
            prefer_nvidia_decoders()
        self._pipeline = self._build(size, keep_aspect)
        self._finalizer = weakref.finalize(self, _teardown, self._pipeline, self._handlers, self._probes)
        self._bus = self._pipeline.get_bus()
        self._appsink = self._pipeline.get_by_name("sink")
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    # -- construction -------------------------------------------------------------------------------

    def _build(self, size: tuple[int, int] | None, keep_aspect: bool) -> Gst.Pipeline:
        caps = "video/x-raw,format=RGB"
        if size is not None:
            width, height = size
            caps += f",width={int(width)},height={int(height)},pixel-aspect-ratio=1/1"
        sink = (
            f"appsink name=sink sync={str(self._pace).lower()} max-buffers={self._max_buffers} "
            f"drop={str(self.live).lower()} enable-last-sample=false"
        )
        # Frames are turned upright (the orientation tag phones write) after the conversion to RGB and
        # before scaling, so that ``size`` is the size of the upright picture. Both are pass-through
        # when there is nothing to do.
        # --detect-fps: frames above the rate are dropped here, before any conversion, so they cost nothing.
        # NVIDIA decoding: the frame is converted to RGB on the GPU and comes back once, as RGB.
        rate = ""
        if self._max_fps is not None:
            # a maximum: a stream at or below it passes every frame (a fixed rate above the stream's
            # own would fail to negotiate, since drop-only never adds frames)
            num, den = Gst.util_double_to_fraction(self._max_fps)
            rates = f"[{MIN_RATE},{num}/{den}]" if self._max_fps > 1 / 10_000 else f"{num}/{den}"
            memory = "(ANY)" if self.decoding.convert_on_gpu else ""  # frames in GPU memory too
            rate = f"videorate name=rate drop-only=true ! video/x-raw{memory},framerate={rates} ! "
        convert = (
            CUDA_CHAIN
            if self.decoding.convert_on_gpu
            # (caps negotiation lets this element scale too, in the same pass: it must stretch or
            # letterbox as asked, like the videoscale after it)
            else f"videoconvertscale name=convert add-borders={str(keep_aspect).lower()} ! video/x-raw,format=RGB"
        )
        description = (
            f"{self._spec.description} ! queue name=frames max-size-buffers=4 max-size-bytes=0 "
            f"max-size-time=0 ! {rate}{convert} "
            "! videoflip name=orient video-direction=auto "
            f"! videoscale name=scale add-borders={str(keep_aspect).lower()} ! {caps} ! {sink}"
        )
        decode_in_bin = self._spec.kind in ("file", "network")
        if decode_in_bin:
            # uridecodebin's pads appear at run time and are linked by hand (video to the frames chain,
            # anything else to a fakesink), so the first link is left out of the description.
            head, _, tail = description.partition(" ! ")
            description = f"{head} {tail}"
        try:
            pipeline = Gst.parse_launch(description)
        except GLib.Error as exc:
            raise SourceError(f"{self._spec.text}: cannot build the pipeline ({exc.message})") from None
        if decode_in_bin:
            decode = pipeline.get_by_name("decode")
            for signal_name, method in (
                ("pad-added", self._on_pad_added),
                ("no-more-pads", self._on_no_more_pads),
                ("source-setup", self._on_source_setup),
                ("deep-element-added", self._on_element_added),
            ):
                self._handlers.append((decode, decode.connect(signal_name, _weak(method))))
        else:
            self._video_linked = True
        self._numbered = self.live or self._maybe_live or self._max_fps is not None  # frames may be dropped
        if self._numbered:  # (a Python callback per frame: only where needed)
            decoded = pipeline.get_by_name("frames").get_static_pad("sink")
            self._probes.append((decoded, decoded.add_probe(Gst.PadProbeType.BUFFER, _weak(self._on_decoded))))
        if self.live or self._maybe_live:
            pad = pipeline.get_by_name("sink").get_static_pad("sink")
            self._probes.append((pad, pad.add_probe(Gst.PadProbeType.BUFFER, _weak(self._count_arrival))))
        return pipeline

    def _on_decoded(self, _pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        """Every decoded frame, in GStreamer's streaming thread (for sources that drop frames on the
        way: live ones, or with ``max_fps``): number it as the source produced it."""
        buf = info.get_buffer()
        index = self._produced
        self._produced += 1
        if buf is not None and buf.pts != Gst.CLOCK_TIME_NONE:
            self._indices.setdefault(buf.pts, []).append(index)  # a damaged stream may repeat a pts
            self._count_lost(buf.pts, index)
        return Gst.PadProbeReturn.OK

    def _count_lost(self, pts: int, index: int) -> None:
        """Count the frames the decoder took in but could not decode (damaged data) before this one."""
        if self._spec.kind != "file":
            return
        lost = self._lost_before(pts)
        if lost and self._last_decoded is not None:
            gap = Gap(index - 1, self._last_decoded / Gst.SECOND, pts / Gst.SECOND, lost)
            self.gaps.append(gap)
            log.info("%s: %s", self._spec.text, gap.describe())
        self._last_decoded = pts

    def _count_arrival(self, _pad: Gst.Pad, _info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        self._arrived += 1
        return Gst.PadProbeReturn.OK

    def _note_stream_end(self, pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        buf = info.get_buffer()
        if buf is not None and buf.pts != Gst.CLOCK_TIME_NONE:
            end = buf.pts + (buf.duration if buf.duration != Gst.CLOCK_TIME_NONE else 0)
            self._stream_ends[pad.get_name()] = max(self._stream_ends.get(pad.get_name(), 0.0), end / Gst.SECOND)
        return Gst.PadProbeReturn.OK

    def _on_source_setup(self, _bin: Gst.Element, element: Gst.Element) -> None:
        factory = element.get_factory().get_name() if element.get_factory() else ""
        if factory == "rtspsrc":
            # RTP over the RTSP TCP connection: a server that goes away is noticed at once (over UDP
            # only by a timeout), and no packet is lost to a full socket buffer.
            element.set_property("protocols", "tcp")
            element.set_property("latency", 200)
            element.set_property("tcp-timeout", int(self._timeout * 1_000_000))
            element.set_property("timeout", int(self._timeout * 1_000_000))

    def _on_element_added(self, _bin: Gst.Bin, _parent: Gst.Bin, element: Gst.Element) -> None:
        factory = element.get_factory()
        if factory is not None and factory.get_name() == "multipartdemux":
            # an MJPEG camera's multipart reply holds one stream: say so, or decodebin waits for more
            # streams, holding every frame back until the connection ends
            element.set_property("single-stream", True)

    def _on_pad_added(self, _bin: Gst.Element, pad: Gst.Pad) -> None:
        pipeline = self._pipeline
        caps = pad.get_current_caps() or pad.query_caps(None)
        name = caps.get_structure(0).get_name() if caps and caps.get_size() else ""
        if name.startswith("video/x-raw") and not self._video_linked:
            pad.link(pipeline.get_by_name("frames").get_static_pad("sink"))
            self._video_linked = True
            if self._spec.kind == "file":
                self._watch_decoder_input(pad)
        else:
            if self._spec.kind == "file":  # the other streams' ends count too, for the truncation check
                self._probes.append((pad, pad.add_probe(Gst.PadProbeType.BUFFER, _weak(self._note_stream_end))))
            sink = Gst.ElementFactory.make("fakesink", None)
            sink.set_property("sync", False)
            sink.set_property("async", False)
            pipeline.add(sink)
            sink.sync_state_with_parent()
            pad.link(sink.get_static_pad("sink"))

    def _watch_decoder_input(self, pad: Gst.Pad) -> None:
        """Record the pts of every compressed frame that enters the video decoder, so that frames the
        decoder could not decode (damaged data) are counted, wherever they were in the file."""
        while isinstance(pad, Gst.GhostPad) and pad.get_target() is not None:
            pad = pad.get_target()
        decoder = pad.get_parent_element()
        klass = decoder.get_factory().get_metadata("klass") if decoder and decoder.get_factory() else ""
        sink = decoder.get_static_pad("sink") if "Decoder" in (klass or "") else None
        if sink is not None:
            self._probes.append((sink, sink.add_probe(Gst.PadProbeType.BUFFER, _weak(self._note_decoder_input))))

    def _note_decoder_input(self, _pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        buf = info.get_buffer()
        if buf is not None and buf.pts != Gst.CLOCK_TIME_NONE:
            with self._decoder_lock:
                bisect.insort(self._decoder_input, buf.pts)
        return Gst.PadProbeReturn.OK

    def _lost_before(self, pts_ns: int) -> int:
        """Forget the decoder inputs up to this output frame; return how many of them never came out."""
        with self._decoder_lock:
            done = bisect.bisect_right(self._decoder_input, pts_ns + _PTS_TOLERANCE)
            lost = bisect.bisect_left(self._decoder_input, pts_ns - _PTS_TOLERANCE, 0, done)
            del self._decoder_input[:done]
        return lost

    def _on_no_more_pads(self, _bin: Gst.Element) -> None:
        self._no_more_pads = True

    # -- running ------------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self._raise_bus_error(default=f"{self._spec.text}: cannot start the pipeline")
        deadline = time.monotonic() + self._timeout
        while True:
            sample = self._appsink.try_pull_sample(50 * Gst.MSECOND)
            if sample is not None:
                break
            if self._cancel is not None and self._cancel.is_set():
                raise OpenCancelledError(f"{self._spec.text}: stopped while opening")
            self._check_bus()
            if self._appsink.is_eos():
                self._raise_no_frames()
            if self._no_more_pads and not self._video_linked:
                raise NoVideoStreamError(f"{self._spec.text}: no video stream (audio only?)")
            if time.monotonic() > deadline:
                if self._spec.kind in ("network", "v4l2"):
                    raise StreamUnreachableError(
                        f"{self._spec.text}: no frame within {self._timeout:g} s (stream unreachable?)"
                    )
                raise DecodeError(f"{self._spec.text}: no frame decoded within {self._timeout:g} s")
        self._first, self._first_wall = sample, time.time()
        if self._maybe_live and not self._has_length():
            self._become_live()
        self._caps = sample.get_caps()
        self._reader = BufferReader(self._caps)
        self.info = self._make_info(sample.get_caps())

    def _has_length(self) -> bool:
        ok, nanos = self._pipeline.query_duration(Gst.Format.TIME)
        return ok and nanos > 0

    def _become_live(self) -> None:
        """A stream without a length is live: the oldest frames are dropped when the consumer is slow
        (counted), a stall ends the connection, and a reader reconnects it."""
        self.live = True
        self._max_buffers = 2
        self._appsink.set_property("max-buffers", self._max_buffers)
        self._appsink.set_property("drop", True)

    def _make_info(self, caps: Gst.Caps) -> SourceInfo:
        structure = caps.get_structure(0)
        ok, num, den = structure.get_fraction("framerate")
        fps = num / den if ok and num > 0 and den > 0 else None
        if fps is not None and fps > MAX_PLAUSIBLE_FPS:  # e.g. 1000000000/1 from a variable-rate MP4
            fps = None
        duration = None
        if not self.live:
            ok, nanos = self._pipeline.query_duration(Gst.Format.TIME)
            duration = nanos / Gst.SECOND if ok and nanos > 0 else None
        if self._spec.kind == "test" and not self.live:
            frames = self._test_frames()
            duration = frames / fps if fps else None
        else:
            frames = round(duration * fps) if duration and fps else None
        codec, container = self._describe_streams()
        width, height = self._reader.width, self._reader.height
        return SourceInfo(
            source=self._spec.text,
            width=width,
            height=height,
            fps=fps,
            duration=duration,
            frames=frames,
            codec=codec,
            container=container,
            live=self.live,
            stream=self.stream,
        )

    def _test_frames(self) -> int:
        for element in self._pipeline.iterate_elements():
            if element.get_factory() and element.get_factory().get_name() == "videotestsrc":
                return int(element.get_property("num-buffers"))
        return 0

    def _describe_streams(self) -> tuple[str | None, str | None]:
        codec = container = None
        iterator = self._pipeline.iterate_recurse()
        while True:
            result, element = iterator.next()
            if result != Gst.IteratorResult.OK:
                break
            factory = element.get_factory()
            if factory is None:
                continue
            klass = factory.get_metadata("klass") or ""
            if factory.get_name() == "typefind" and container is None:
                found = element.get_property("caps")
                if found is not None and not found.get_structure(0).get_name().startswith("video/x-raw"):
                    container = GstPbutils.pb_utils_get_codec_description(found)
                continue
            pad = element.get_static_pad("sink")
            caps = pad.get_current_caps() if pad else None
            if caps is None:
                continue
            if "Decoder" in klass and ("Video" in klass or "Image" in klass) and codec is None:
                codec = GstPbutils.pb_utils_get_codec_description(caps)
        if self._spec.kind == "test":
            codec = "raw video (test pattern)"
        return codec, container

    def __iter__(self) -> Iterator[Frame]:
        if self._closed:
            raise SourceError(f"{self._spec.text}: source is closed")
        sample, self._first = self._first, None
        if sample is None:
            raise SourceError(f"{self._spec.text}: a source can be iterated only once")
        stall, wall = time.monotonic(), self._first_wall
        while True:
            if sample is not None:
                stall = time.monotonic()
                buf = sample.get_buffer()
                caps = sample.get_caps()
                if not caps.is_equal(self._caps):
                    self._caps, self._reader = caps, BufferReader(caps)
                yield self._frame(buf, wall)
            else:
                if self._stopping.is_set():
                    return
                self._check_bus()
                if self._appsink.is_eos():
                    self._drained = True
                    self._check_bus()
                    self._check_complete()
                    return
                if self.live and time.monotonic() - stall > self._stall_timeout:
                    raise StreamUnreachableError(
                        f"{self._spec.text}: no frame for {self._stall_timeout:g} s (stream lost)"
                    )
            if self._stopping.is_set():
                return
            sample = self._appsink.try_pull_sample(50 * Gst.MSECOND)
            wall = time.time()

    def _arrival(self, buf: Gst.Buffer, pulled: float) -> float:
        """UNIX time at which a frame left the decoder: for a live source, when it arrived (its pts is
        running time on the pipeline clock), else when it was pulled."""
        clock = self._pipeline.get_clock() if self._clocked else None
        if clock is None or buf.pts == Gst.CLOCK_TIME_NONE:
            return pulled
        age = clock.get_time() - self._pipeline.get_base_time() - buf.pts
        return time.time() - max(0, age) / Gst.SECOND

    def _frame(self, buf: Gst.Buffer, pulled: float) -> Frame:
        """The frame of a pulled buffer; its index is the one the source gave it (live drops and
        ``max_fps`` leave gaps in the indices, damaged data does not)."""
        index = self._delivered
        if self._numbered and buf.pts != Gst.CLOCK_TIME_NONE:
            waiting = self._indices.get(buf.pts)
            index = waiting.pop(0) if waiting else index
            if waiting is not None and not waiting:
                del self._indices[buf.pts]
            for older in [pts for pts in list(self._indices) if pts < buf.pts]:  # frames dropped on the way
                self._indices.pop(older, None)
        elif buf.pts != Gst.CLOCK_TIME_NONE:  # every decoded frame is delivered: count the lost ones here
            self._produced += 1
            self._count_lost(buf.pts, index)
        self._delivered += 1
        fps = self.info.fps
        pts = buf.pts / Gst.SECOND if buf.pts != Gst.CLOCK_TIME_NONE else (index / fps if fps else 0.0)
        self._last_pts = pts
        tensor = self._reader.to_tensor(buf)
        return Frame(tensor, index, pts, stream=self.stream, wall=self._arrival(buf, pulled))

    @property
    def name(self) -> str:
        """The source as the user gave it."""
        return self._spec.text

    @property
    def decoder(self) -> str | None:
        """The video decoder GStreamer chose (``avdec_h264``, ``nvh264dec``, ...); None for raw sources."""
        return video_decoder(self._pipeline)

    @property
    def kind(self) -> str:
        """What the source is: ``file``, ``network``, ``v4l2`` or ``test``."""
        return self._spec.kind

    @property
    def path(self) -> Path | None:
        """The local file read, for file sources."""
        return self._spec.path

    def stop(self) -> None:
        """Make the iteration end (without error) at its next wait for a frame; safe from any thread."""
        self._stopping.set()

    @property
    def frames_delivered(self) -> int:
        """Frames yielded so far."""
        return self._delivered

    @property
    def frames_produced(self) -> int:
        """Frames the decoder produced so far (before ``max_fps`` and live drops)."""
        return self._produced

    @property
    def frames_dropped(self) -> int:
        """Frames a live source dropped because the consumer was slower than the stream (0 for files);
        exact at the end of the stream, within the few frames queued in the appsink before."""
        if not self.live:
            return 0
        queued = 0 if self._drained else min(self._max_buffers, max(0, self._arrived - self._delivered))
        return max(0, self._arrived - self._delivered - queued)

    def _check_complete(self) -> None:
        """At end of stream: report frames the decoder could not decode, and compare what was decoded
        with what the container promised."""
        if self._delivered == 0:
            self._raise_no_frames()
        info = self.info
        self._check_gaps()
        if self._spec.kind != "file" or not info.duration or not info.fps:
            return
        self._wait_for_other_streams()
        # The video stream may end before the file does (a shorter second track, a longer audio
        # track): only when no stream reached the container's end was the file cut off.
        end = max([self._last_pts or 0.0, *self._stream_ends.values()])
        missing = (info.duration - end) * info.fps - 1  # frame times not covered
        if missing > 2:
            raise TruncatedSourceError(
                f"{self._spec.text}: stream ended after {self._delivered} frames at {self._last_pts:.2f} s of "
                f"{info.duration:.2f} s (about {round(missing)} frames missing: file truncated or damaged)",
                frames_decoded=self._delivered,
            )

    def _check_gaps(self) -> None:
        if self.gaps:
            total = sum(g.missing for g in self.gaps)
            where = "; ".join(g.describe() for g in self.gaps[:3]) + ("; ..." if len(self.gaps) > 3 else "")
            raise DamagedSourceError(
                f"{self._spec.text}: {total} frame(s) could not be decoded, in {len(self.gaps)} place(s) "
                f"({where}): file damaged; every other frame was delivered",
                gaps=tuple(self.gaps),
            )

    def _wait_for_other_streams(self, timeout: float = 5.0) -> None:
        """Let the pipeline's other branches (fakesinks) reach their end, so their last pts are known."""
        if not self._stream_ends:
            return
        self._bus.timed_pop_filtered(int(timeout * Gst.SECOND), Gst.MessageType.EOS | Gst.MessageType.ERROR)

    def _raise_no_frames(self) -> None:
        if not self._video_linked:
            raise NoVideoStreamError(f"{self._spec.text}: no video stream (audio only?)")
        raise DecodeError(f"{self._spec.text}: the stream ended before any frame was decoded")

    # -- errors -------------------------------------------------------------------------------------

    def _check_bus(self) -> None:
        while True:
            msg = self._bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.ELEMENT)
            if msg is None:
                return
            if msg.type == Gst.MessageType.ELEMENT:
                if GstPbutils.is_missing_plugin_message(msg):
                    self._missing.append(msg)
                continue
            self._raise_error(msg)

    def _raise_bus_error(self, default: str) -> None:
        self._check_bus()
        raise SourceError(default)

    def _raise_error(self, msg: Gst.Message) -> None:
        raise error_from_message(msg, self._spec, missing=self._missing, delivered=self._delivered)

    # -- lifetime -----------------------------------------------------------------------------------

    @property
    def pipeline(self) -> Gst.Pipeline:
        """The GStreamer pipeline (for inspection: drawing it, reading its elements' properties)."""
        return self._pipeline

    def graph_dot(self, details: Gst.DebugGraphDetails = Gst.DebugGraphDetails.ALL) -> str:
        """The GStreamer pipeline graph in Graphviz ``dot`` syntax (all details, or ``details``)."""
        return Gst.debug_bin_to_dot_data(self._pipeline, details)

    def close(self) -> None:
        """Stop the pipeline and release its resources (threads, sockets, memory). Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._stopping.set()
            self._first = None
            self._finalizer()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<vidpipe.Source {self._spec.text!r}>"


def open(
    source: str | os.PathLike,
    *,
    size: tuple[int, int] | None = None,
    keep_aspect: bool = False,
    live: bool | None = None,
    max_buffers: int = 8,
    timeout: float = 10.0,
    max_fps: float | None = None,
    stream: str = "0",
    stall_timeout: float | None = None,
    gpu_decode: bool = False,
    cancel: threading.Event | None = None,
    pace: bool = False,
) -> Source:
    """Open a video source and return a :class:`Source` (iterable of :class:`Frame`, context manager).

    ``source``: a path, ``file://``, ``rtsp://``, ``http(s)://`` URL, ``/dev/videoN`` or
    ``testsrc://PATTERN?width=W&height=H&fps=F&frames=N``.
    ``size=(w, h)`` scales inside GStreamer; ``keep_aspect=True`` letterboxes instead of stretching.
    ``live`` overrides the live/file decision: live sources drop the oldest frames when the consumer is
    slow (counted in ``frames_dropped``); file sources apply back-pressure and never drop a frame.
    ``timeout`` bounds the wait for the first frame (and, for live sources, for any frame).
    ``max_fps`` keeps at most that many frames per second of stream time, dropping the others inside
    GStreamer before conversion. ``stream`` names the source in every :class:`Frame` it yields.
    ``stall_timeout``: a live source with no frame for this long raises (default: ``timeout``).
    ``gpu_decode``: decode with NVIDIA's decoders and convert to RGB on the GPU where GStreamer has them
    (``source.decoding`` says what was chosen and why; software decoding otherwise).
    ``cancel``: an event that gives up the wait for the first frame (raising
    :class:`~vidpipe.errors.OpenCancelledError`) within 50 ms of being set.
    ``pace``: frames come at the file's own speed (by the clock), not as fast as they decode.
    Raises a :class:`vidpipe.errors.SourceError` subclass that names the input and the cause.
    """
    return Source(
        source,
        size=size,
        keep_aspect=keep_aspect,
        live=live,
        max_buffers=max_buffers,
        timeout=timeout,
        max_fps=max_fps,
        stream=stream,
        stall_timeout=stall_timeout,
        gpu_decode=gpu_decode,
        cancel=cancel,
        pace=pace,
    )
