"""Sources: open any video through GStreamer and iterate its frames as tensors.

``open(source)`` builds ``<source> ! decode ! videoconvertscale ! RGB caps ! appsink``, starts it, waits
for the first frame (so ``.info`` is known and bad input fails at once), and yields :class:`Frame`
objects from the caller's thread while GStreamer decodes in its own threads. Bus errors become
:mod:`vidpipe.errors` exceptions that name the input and the cause.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ._gst import GLib, Gst, GstPbutils
from .errors import (
    DecodeError,
    MissingDecoderError,
    NotAVideoError,
    NoVideoStreamError,
    SourceError,
    SourceNotFoundError,
    StreamUnreachableError,
    TruncatedSourceError,
    UnsupportedSourceError,
)
from .frames import BufferReader, Frame

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtspt", "http", "https")
TEST_PATTERNS = ("smpte", "ball", "snow", "black", "white", "gradient", "checkers-8", "colors", "smpte100")

# Debian/Ubuntu packages that carry a decoder for a caps name (the first one listed is suggested).
DECODER_PACKAGES = {
    "video/x-h264": "gstreamer1.0-libav",
    "video/x-h265": "gstreamer1.0-libav",
    "video/x-vp8": "gstreamer1.0-plugins-good",
    "video/x-vp9": "gstreamer1.0-plugins-good",
    "video/x-av1": "gstreamer1.0-libav",
    "image/jpeg": "gstreamer1.0-plugins-good",
    "video/mpeg": "gstreamer1.0-libav",
    "video/x-divx": "gstreamer1.0-libav",
    "video/x-xvid": "gstreamer1.0-libav",
    "video/x-theora": "gstreamer1.0-plugins-base",
    "video/x-msmpeg": "gstreamer1.0-libav",
    "video/x-wmv": "gstreamer1.0-libav",
    "video/x-prores": "gstreamer1.0-libav",
}


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What is known about an opened source once its first frame is decoded.

    ``width``/``height`` are those of the yielded tensors; ``fps`` is None for variable frame rates;
    ``duration`` (seconds) and ``frames`` are None when unknown (live streams, some containers).
    ``frames`` is the count the container promises (duration × fps), not a count of decoded frames.
    """

    source: str
    width: int
    height: int
    fps: float | None
    duration: float | None
    frames: int | None
    codec: str | None
    container: str | None
    live: bool

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "container": self.container,
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "duration": self.duration,
            "frames": self.frames,
            "live": self.live,
        }


@dataclass(frozen=True, slots=True)
class _Spec:
    """A parsed source string: the GStreamer description of its first part and how to treat it."""

    text: str
    kind: str  # "file", "network", "v4l2", "test"
    description: str
    path: Path | None = None
    live: bool = False


def _parse_test_uri(text: str) -> _Spec:
    parts = urllib.parse.urlsplit(text)
    pattern = parts.netloc or "smpte"
    if pattern not in TEST_PATTERNS:
        raise UnsupportedSourceError(f"{text}: unknown test pattern {pattern!r} (known: {', '.join(TEST_PATTERNS)})")
    query = dict(urllib.parse.parse_qsl(parts.query))
    try:
        width = int(query.pop("width", 640))
        height = int(query.pop("height", 480))
        fps = float(query.pop("fps", 30))
        frames = int(query.pop("frames", 300))
        live = query.pop("live", "0").lower() in ("1", "true", "yes")
    except ValueError as exc:
        raise UnsupportedSourceError(f"{text}: bad test source parameter ({exc})") from None
    if query:
        raise UnsupportedSourceError(
            f"{text}: unknown test source parameter(s) {', '.join(query)} (known: width, height, fps, frames, live)"
        )
    rate = Gst.util_double_to_fraction(fps)
    description = (
        f"videotestsrc pattern={pattern} num-buffers={frames} is-live={str(live).lower()} "
        f"! video/x-raw,width={width},height={height},framerate={rate[0]}/{rate[1]}"
    )
    return _Spec(text, "test", description, live=live)


def _check_file(text: str, path: Path) -> None:
    if path.is_dir():
        raise SourceNotFoundError(f"{text}: is a directory, not a video file")
    if not path.exists():
        raise SourceNotFoundError(f"{text}: no such file")
    if not os.access(path, os.R_OK):
        raise SourceNotFoundError(f"{text}: permission denied")
    if path.stat().st_size == 0:
        raise NotAVideoError(f"{text}: the file is empty (0 bytes)")
    if _mp4_lacks_index(path):
        raise TruncatedSourceError(
            f"{text}: MP4 without its index ('moov' box missing: the file was cut off before it was "
            "finalised); no frame can be decoded"
        )


def parse_source(source: str | os.PathLike) -> _Spec:
    """Parse a source string: a path, ``file://``, ``rtsp://``, ``http(s)://``, ``/dev/videoN`` or
    ``testsrc://PATTERN?width=W&height=H&fps=F&frames=N&live=0``."""
    text = os.fspath(source)
    scheme = urllib.parse.urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme == "testsrc":
        return _parse_test_uri(text)
    if scheme in NETWORK_SCHEMES:
        live = scheme.startswith("rtsp")  # http(s) serves files (or HLS/DASH, which pace themselves)
        return _Spec(text, "network", f"uridecodebin name=decode uri={_quote(text)}", live=live)
    if scheme and scheme != "file":
        raise UnsupportedSourceError(
            f"{text}: unsupported source scheme {scheme!r} "
            "(use a file path, file://, rtsp://, http(s)://, /dev/videoN or testsrc://)"
        )
    path = Path(urllib.parse.unquote(urllib.parse.urlsplit(text).path)) if scheme == "file" else Path(text)
    if text.startswith("/dev/video"):
        if not path.exists():
            raise StreamUnreachableError(f"{text}: no such video device")
        return _Spec(text, "v4l2", f"v4l2src device={text} ! decodebin name=decode", path=path, live=True)
    _check_file(text, path)
    uri = Gst.filename_to_uri(str(path.resolve()))
    return _Spec(text, "file", f"uridecodebin name=decode uri={_quote(uri)}", path=path)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mp4_lacks_index(path: Path) -> bool:
    """True for an ISO-BMFF (MP4/MOV) file whose top-level boxes hold no ``moov`` index."""
    try:
        with path.open("rb") as fh:
            size = path.stat().st_size
            pos, seen = 0, []
            while pos + 8 <= size:
                fh.seek(pos)
                box_size, box_type = struct.unpack(">I4s", fh.read(8))
                if box_size == 1:
                    box_size = struct.unpack(">Q", fh.read(8))[0]
                seen.append(box_type)
                if box_size < 8:
                    break
                pos += box_size
    except OSError:
        return False
    return bool(seen) and seen[0] == b"ftyp" and b"moov" not in seen


class Source:
    """An opened video source: iterable over :class:`Frame`, a context manager, with ``.info``.

    Create it with :func:`vidpipe.open`. Iterate it once, from one thread.
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
    ) -> None:
        self._spec = parse_source(source)
        self.live = self._spec.live if live is None else live
        self._timeout = timeout
        self._delivered = 0
        self._last_pts = 0.0
        self._arrived = 0
        self._drained = False
        self._max_buffers = 2 if self.live else max_buffers
        self._missing: list[Gst.Message] = []
        self._video_linked = False
        self._no_more_pads = False
        self._closed = False
        self._pipeline = self._build(size, keep_aspect)
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
            f"appsink name=sink sync=false max-buffers={self._max_buffers} drop={str(self.live).lower()} "
            "enable-last-sample=false"
        )
        description = (
            f"{self._spec.description} ! queue name=frames max-size-buffers=4 max-size-bytes=0 "
            f"max-size-time=0 ! videoconvertscale name=convert add-borders={str(keep_aspect).lower()} "
            f"! {caps} ! {sink}"
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
            decode.connect("pad-added", self._on_pad_added, pipeline)
            decode.connect("no-more-pads", self._on_no_more_pads)
            decode.connect("source-setup", self._on_source_setup)
        else:
            self._video_linked = True
        if self.live:
            pad = pipeline.get_by_name("sink").get_static_pad("sink")
            pad.add_probe(Gst.PadProbeType.BUFFER, self._count_arrival)
        return pipeline

    def _count_arrival(self, _pad: Gst.Pad, _info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        self._arrived += 1
        return Gst.PadProbeReturn.OK

    def _on_source_setup(self, _bin: Gst.Element, element: Gst.Element) -> None:
        factory = element.get_factory().get_name() if element.get_factory() else ""
        if factory == "rtspsrc":
            element.set_property("latency", 200)
            element.set_property("tcp-timeout", int(self._timeout * 1_000_000))
            element.set_property("timeout", int(self._timeout * 1_000_000))

    def _on_pad_added(self, _bin: Gst.Element, pad: Gst.Pad, pipeline: Gst.Pipeline) -> None:
        caps = pad.get_current_caps() or pad.query_caps(None)
        name = caps.get_structure(0).get_name() if caps and caps.get_size() else ""
        if name.startswith("video/x-raw") and not self._video_linked:
            pad.link(pipeline.get_by_name("frames").get_static_pad("sink"))
            self._video_linked = True
        else:
            sink = Gst.ElementFactory.make("fakesink", None)
            sink.set_property("sync", False)
            sink.set_property("async", False)
            pipeline.add(sink)
            sink.sync_state_with_parent()
            pad.link(sink.get_static_pad("sink"))

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
        self._first = sample
        self._caps = sample.get_caps()
        self._reader = BufferReader(self._caps)
        self.info = self._make_info(sample.get_caps())

    def _make_info(self, caps: Gst.Caps) -> SourceInfo:
        structure = caps.get_structure(0)
        ok, num, den = structure.get_fraction("framerate")
        fps = num / den if ok and num > 0 and den > 0 else None
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
        return SourceInfo(
            source=self._spec.text,
            width=self._reader.width,
            height=self._reader.height,
            fps=fps,
            duration=duration,
            frames=frames,
            codec=codec,
            container=container,
            live=self.live,
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
        stall = time.monotonic()
        while True:
            if sample is not None:
                stall = time.monotonic()
                buf = sample.get_buffer()
                caps = sample.get_caps()
                if not caps.is_equal(self._caps):
                    self._caps, self._reader = caps, BufferReader(caps)
                yield self._frame(buf)
            else:
                self._check_bus()
                if self._appsink.is_eos():
                    self._drained = True
                    self._check_bus()
                    self._check_complete()
                    return
                if self.live and time.monotonic() - stall > self._timeout:
                    raise StreamUnreachableError(f"{self._spec.text}: no frame for {self._timeout:g} s (stream lost)")
            sample = self._appsink.try_pull_sample(50 * Gst.MSECOND)

    def _frame(self, buf: Gst.Buffer) -> Frame:
        index = self._delivered
        self._delivered += 1
        pts = (
            buf.pts / Gst.SECOND
            if buf.pts != Gst.CLOCK_TIME_NONE
            else (index / self.info.fps if self.info.fps else 0.0)
        )
        self._last_pts = pts
        return Frame(self._reader.to_tensor(buf), index, pts)

    @property
    def frames_delivered(self) -> int:
        """Frames yielded so far."""
        return self._delivered

    @property
    def frames_dropped(self) -> int:
        """Frames a live source dropped because the consumer was slower than the stream (0 for files);
        exact at the end of the stream, within the few frames queued in the appsink before."""
        if not self.live:
            return 0
        queued = 0 if self._drained else min(self._max_buffers, max(0, self._arrived - self._delivered))
        return max(0, self._arrived - self._delivered - queued)

    def _check_complete(self) -> None:
        """At end of stream: compare what was decoded with what the container promised."""
        if self._delivered == 0:
            self._raise_no_frames()
        info = self.info
        if self._spec.kind != "file" or not info.duration or not info.fps:
            return
        missing = (info.duration - self._last_pts) * info.fps - 1  # frame times not covered
        if missing > 2:
            raise TruncatedSourceError(
                f"{self._spec.text}: stream ended after {self._delivered} frames at {self._last_pts:.2f} s of "
                f"{info.duration:.2f} s (about {round(missing)} frames missing: file truncated or damaged)",
                frames_decoded=self._delivered,
            )

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
        err, debug = msg.parse_error()
        log.debug("GStreamer error from %s: %s (%s)", msg.src.get_name(), err.message, debug)
        text = self._spec.text
        if self._missing or err.matches(Gst.StreamError.quark(), Gst.StreamError.CODEC_NOT_FOUND):
            raise self._missing_decoder_error()
        if err.matches(Gst.StreamError.quark(), Gst.StreamError.TYPE_NOT_FOUND) or err.matches(
            Gst.StreamError.quark(), Gst.StreamError.WRONG_TYPE
        ):
            raise NotAVideoError(f"{text}: not a video file (GStreamer cannot recognise its format)")
        if self._spec.kind in ("network", "v4l2") and err.domain == GLib.quark_to_string(Gst.ResourceError.quark()):
            raise StreamUnreachableError(f"{text}: cannot connect ({err.message})")
        if "no playable streams" in err.message or "no known streams" in err.message:
            raise NoVideoStreamError(f"{text}: no playable video stream ({err.message})")
        if err.domain == GLib.quark_to_string(Gst.ResourceError.quark()) and self._spec.kind == "file":
            raise SourceNotFoundError(f"{text}: cannot read file ({err.message})")
        raise DecodeError(
            f"{text}: decoding failed after {self._delivered} frames: {err.message} (from {msg.src.get_name()})"
        )

    def _missing_decoder_error(self) -> MissingDecoderError:
        text = self._spec.text
        if not self._missing:
            return MissingDecoderError(f"{text}: no decoder installed for this stream")
        msg = self._missing[0]
        description = GstPbutils.missing_plugin_message_get_description(msg)
        detail = msg.get_structure().get_value("detail")
        caps_name = detail.get_structure(0).get_name() if isinstance(detail, Gst.Caps) else ""
        package = DECODER_PACKAGES.get(caps_name)
        hint = f"install the Debian/Ubuntu package {package}" if package else "install a GStreamer plugin for it"
        return MissingDecoderError(
            f"{text}: no decoder installed for {description} ({caps_name}); {hint}",
            codec=caps_name,
            package=package,
        )

    # -- lifetime -----------------------------------------------------------------------------------

    def graph_dot(self) -> str:
        """The GStreamer pipeline graph in Graphviz ``dot`` syntax (all details)."""
        return Gst.debug_bin_to_dot_data(self._pipeline, Gst.DebugGraphDetails.ALL)

    def close(self) -> None:
        """Stop the pipeline and release its resources. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._pipeline.set_state(Gst.State.NULL)

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
) -> Source:
    """Open a video source and return a :class:`Source` (iterable of :class:`Frame`, context manager).

    ``source``: a path, ``file://``, ``rtsp://``, ``http(s)://`` URL, ``/dev/videoN`` or
    ``testsrc://PATTERN?width=W&height=H&fps=F&frames=N``.
    ``size=(w, h)`` scales inside GStreamer; ``keep_aspect=True`` letterboxes instead of stretching.
    ``live`` overrides the live/file decision: live sources drop the oldest frames when the consumer is
    slow (counted in ``frames_dropped``); file sources apply back-pressure and never drop a frame.
    ``timeout`` bounds the wait for the first frame (and, for live sources, for any frame).
    Raises a :class:`vidpipe.errors.SourceError` subclass that names the input and the cause.
    """
    return Source(source, size=size, keep_aspect=keep_aspect, live=live, max_buffers=max_buffers, timeout=timeout)
