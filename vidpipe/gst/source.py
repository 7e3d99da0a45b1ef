"""Sources: ``<source> ! decode ! videoconvertscale ! RGB caps ! appsink``, started, its first frame awaited
(``.info`` known, bad input failing at once), its frames yielded as tensors in the caller's thread while
GStreamer decodes in its own; bus errors become :mod:`vidpipe.errors` exceptions naming input and cause."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import DecodeError, NoVideoStreamError, OpenCancelledError, SourceError, StreamUnreachableError
from ..options import MotionOptions
from ..types import Frame, SourceInfo
from . import GLib, Gst, GstPbutils
from .buffers import BufferReader, arrival
from .bus import error_from_message
from .decoders import Decoding, nvidia_decoding, prefer_nvidia_decoders, video_decoder
from .describe import source_info
from .gate import POLL, Gate, Held
from .launch import (
    appsink_buffers,
    check_fds,
    configure_element,
    configure_network_source,
    decoder_sink,
    description,
    discard,
    teardown,
    weak,
)
from .ledger import DamageLedger, check_length
from .uri import parse_source

log = logging.getLogger(__name__)


class Source:
    """An opened video source (made by :func:`vidpipe.open`): iterable once, from one thread, over
    :class:`Frame`; a context manager, with ``.info``; garbage collected unclosed, it stops all the same."""

    def __init__(
        self,
        source: str | os.PathLike,
        *,
        size: tuple[int, int] | None = None,
        keep_aspect: bool = False,
        live: bool | None = None,
        max_buffers: int | None = None,
        timeout: float = 10.0,
        max_fps: float | None = None,
        stream: str = "0",
        stall_timeout: float | None = None,
        gpu_decode: bool = False,
        cancel: threading.Event | None = None,
        pace: bool = False,
        tap: Callable[[Gst.Pipeline], None] | None = None,
        motion: MotionOptions | None = None,
    ) -> None:
        self.opened_at = time.time()  # when opening began (before any frame of it)
        self._spec = parse_source(source)
        self._cancel = cancel
        check_fds(self._spec.text)
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
        self._asked_buffers = max_buffers  # (None: the default for a live source or a file)
        self._max_buffers = appsink_buffers(max_buffers, self.live, self._spec.text)
        self._pace = pace  # a file played at its own speed (a looped demo stream), not as fast as it decodes
        self._missing: list[Gst.Message] = []
        self._video_linked = False
        self._no_more_pads = False
        self._closed = False
        self._stopping = threading.Event()
        self._stream_ends: dict[str, float] = {}  # the end (s) of each decoded stream besides the video
        self._ledger = DamageLedger(self._spec.text)
        self.gaps = self._ledger.gaps  # frames the decoder could not decode (damaged data), where and how many
        self._handlers: list[tuple[Gst.Object, int]] = []
        self._probes: list[tuple[Gst.Pad, int]] = []
        self.decoding = nvidia_decoding() if gpu_decode else Decoding(False, "software decoding")
        if self.decoding.gpu:
            prefer_nvidia_decoders()
        self._gate = self._make_gate(motion)
        self._pipeline = self._build(size, keep_aspect)
        if tap is not None:  # (before it starts: the tap sees the stream from its first buffer)
            tap(self._pipeline)
        self._finalizer = weakref.finalize(self, teardown, self._pipeline, self._handlers, self._probes)
        self._bus = self._pipeline.get_bus()
        self._appsink = self._pipeline.get_by_name("sink")
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    # -- construction -------------------------------------------------------------------------------

    def _make_gate(self, motion: MotionOptions | None) -> Gate | None:
        """The motion gate when ``motion`` gates this source (in ``auto`` mode an HTTP stream's gate is
        switched on once it is found to be live); never with conversion on the GPU."""
        if motion is None or self.decoding.convert_on_gpu or not motion.enabled(self.live or self._maybe_live):
            return None
        return Gate(motion, weak(self._stamp), active=motion.enabled(self.live))

    def _stamp(self, buf: Gst.Buffer) -> float:
        return arrival(self._pipeline if self._clocked else None, buf, time.time())

    def _build(self, size: tuple[int, int] | None, keep_aspect: bool) -> Gst.Pipeline:
        decode_in_bin = self._spec.kind in ("file", "network")
        text = description(
            self._spec.description, size=size, keep_aspect=keep_aspect, max_fps=self._max_fps,
            convert_on_gpu=self.decoding.convert_on_gpu, max_buffers=self._max_buffers, live=self.live,
            pace=self._pace, decode_in_bin=decode_in_bin, gate=self._gate is not None,
        )  # fmt: skip
        try:
            pipeline = Gst.parse_launch(text)
        except GLib.Error as exc:
            raise SourceError(f"{self._spec.text}: cannot build the pipeline ({exc.message})") from None
        if decode_in_bin:
            decode = pipeline.get_by_name("decode")
            for signal_name, method in (
                ("pad-added", self._on_pad_added),
                ("no-more-pads", self._on_no_more_pads),
                ("source-setup", self._on_source_setup),
            ):
                self._handlers.append((decode, decode.connect(signal_name, weak(method))))
            self._handlers.append((decode, decode.connect("deep-element-added", configure_element)))
        else:
            self._video_linked = True
        # frames may be dropped (or held back by the motion gate)
        self._numbered = self.live or self._maybe_live or self._max_fps is not None or self._gate is not None
        if self._numbered:  # (a Python callback per frame: only where needed)
            decoded = pipeline.get_by_name("frames").get_static_pad("sink")
            self._probes.append((decoded, decoded.add_probe(Gst.PadProbeType.BUFFER, weak(self._on_decoded))))
        if self._gate is not None:
            pad = pipeline.get_by_name("convert").get_static_pad("sink")
            self._probes.append((pad, pad.add_probe(Gst.PadProbeType.BUFFER, weak(self._gate.probe))))
        if self.live or self._maybe_live or self._gate is not None:
            pad = pipeline.get_by_name("sink").get_static_pad("sink")
            self._probes.append((pad, pad.add_probe(Gst.PadProbeType.BUFFER, weak(self._count_arrival))))
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
        if self._spec.kind == "file":  # (only a file's every compressed frame is seen going in)
            self._ledger.decoded(pts, index)

    def _count_arrival(self, _pad: Gst.Pad, _info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        self._arrived += 1
        if self._gate is not None:
            self._gate.wake.set()
        return Gst.PadProbeReturn.OK

    def _note_stream_end(self, pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        buf = info.get_buffer()
        if buf is not None and buf.pts != Gst.CLOCK_TIME_NONE:
            end = buf.pts + (buf.duration if buf.duration != Gst.CLOCK_TIME_NONE else 0)
            self._stream_ends[pad.get_name()] = max(self._stream_ends.get(pad.get_name(), 0.0), end / Gst.SECOND)
        return Gst.PadProbeReturn.OK

    def _on_source_setup(self, _bin: Gst.Element, element: Gst.Element) -> None:
        configure_network_source(element, self._timeout)

    def _on_pad_added(self, _bin: Gst.Element, pad: Gst.Pad) -> None:
        pipeline = self._pipeline
        caps = pad.get_current_caps() or pad.query_caps(None)
        name = caps.get_structure(0).get_name() if caps and caps.get_size() else ""
        if name.startswith("video/x-raw") and not self._video_linked:
            pad.link(pipeline.get_by_name("frames").get_static_pad("sink"))
            self._video_linked = True
            sink = decoder_sink(pad) if self._spec.kind == "file" else None
            if sink is not None:  # (every compressed frame into the decoder: the damaged ones are counted)
                self._probes.append((sink, sink.add_probe(Gst.PadProbeType.BUFFER, weak(self._ledger.note_input))))
        else:
            if self._spec.kind == "file":  # the other streams' ends count too, for the truncation check
                self._probes.append((pad, pad.add_probe(Gst.PadProbeType.BUFFER, weak(self._note_stream_end))))
            discard(pipeline, pad)

    def _on_no_more_pads(self, _bin: Gst.Element) -> None:
        self._no_more_pads = True

    # -- running ------------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self._check_bus()  # (raises the bus's error where there is one)
            raise SourceError(f"{self._spec.text}: cannot start the pipeline")
        deadline = time.monotonic() + self._timeout
        while True:
            sample = self._appsink.try_pull_sample(POLL)
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
        self._max_buffers = appsink_buffers(self._asked_buffers, True, self._spec.text)
        self._appsink.set_property("max-buffers", self._max_buffers)
        self._appsink.set_property("drop", True)
        if self._gate is not None:
            self._gate.active = self._gate.options.enabled(True)

    def _make_info(self, caps: Gst.Caps) -> SourceInfo:
        return source_info(
            self._pipeline, caps, self._spec, width=self._reader.width, height=self._reader.height, live=self.live,
            stream=self.stream,
        )  # fmt: skip

    def __iter__(self) -> Iterator[Frame]:
        if self._closed:
            raise SourceError(f"{self._spec.text}: source is closed")
        sample, self._first = self._first, None
        if sample is None:
            raise SourceError(f"{self._spec.text}: a source can be iterated only once")
        stall, wall, gate, arrived = time.monotonic(), self._first_wall, self._gate, 0
        while True:
            if sample is not None:
                stall = time.monotonic()
                buf = sample.get_buffer()
                caps = sample.get_caps()
                if not caps.is_equal(self._caps):
                    self._caps, self._reader = caps, BufferReader(caps)
                if gate is not None:
                    yield from map(self._held_frame, gate.before(buf.pts))
                yield self._frame(buf, wall)
            else:
                if self._stopping.is_set():
                    return
                for held in gate.settled(arrived) if gate is not None else ():
                    stall = time.monotonic()  # (a still scene's frames are frames too)
                    yield self._held_frame(held)
                self._check_bus()
                if self._appsink.is_eos():
                    if gate is not None:
                        yield from map(self._held_frame, gate.rest())
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
            arrived = self._arrived  # (before the pull: those that find it empty are all out of the appsink)
            sample = gate.pull(self._appsink, arrived) if gate is not None else self._appsink.try_pull_sample(POLL)
            wall = time.time()

    def _frame(self, buf: Gst.Buffer, pulled: float) -> Frame:
        """The frame of a pulled buffer; its index is the one the source gave it (live drops and
        ``max_fps`` leave gaps in the indices, damaged data does not)."""
        index, pts = self._number(buf.pts)
        wall = arrival(self._pipeline if self._clocked else None, buf, pulled)
        tensor = self._last_tensor = self._reader.to_tensor(buf)
        return Frame(tensor, index, pts, self.stream, wall, motion=None if self._gate is None else True)

    def _held_frame(self, held: Held) -> Frame:
        """A frame the motion gate held back: numbered in its place, with the last detected picture."""
        index, pts = self._number(held.pts)
        return Frame(self._last_tensor, index, pts, self.stream, held.wall, motion=False)

    def _number(self, nanos: int) -> tuple[int, float]:
        """The index and pts (s) of the next frame delivered, at ``nanos`` (ns, or CLOCK_TIME_NONE)."""
        index = self._delivered
        if self._numbered and nanos != Gst.CLOCK_TIME_NONE:
            waiting = self._indices.get(nanos)
            index = waiting.pop(0) if waiting else index
            if waiting is not None and not waiting:
                del self._indices[nanos]
            for older in [pts for pts in list(self._indices) if pts < nanos]:  # frames dropped on the way
                self._indices.pop(older, None)
        elif nanos != Gst.CLOCK_TIME_NONE:  # every decoded frame is delivered: count the lost ones here
            self._produced += 1
            self._count_lost(nanos, index)
        self._delivered += 1
        fps = self.info.fps
        pts = nanos / Gst.SECOND if nanos != Gst.CLOCK_TIME_NONE else (index / fps if fps else 0.0)
        self._last_pts = pts
        return index, pts

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
        if self._gate is not None:
            self._gate.wake.set()

    @property
    def frames_gated(self) -> int:
        """Frames the motion gate held back from the detector so far (0 when not gated)."""
        return 0 if self._gate is None else self._gate.gated

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
        delivered = self._delivered - (self._gate.released if self._gate is not None else 0)  # (from the appsink)
        queued = 0 if self._drained else min(self._max_buffers, max(0, self._arrived - delivered))
        return max(0, self._arrived - delivered - queued)

    def _check_complete(self) -> None:
        """At end of stream: report frames the decoder could not decode, and compare what was decoded
        with what the container promised."""
        if self._delivered == 0:
            self._raise_no_frames()
        info = self.info
        self._ledger.check()
        if self._spec.kind != "file" or not info.duration or not info.fps:
            return
        self._wait_for_other_streams()
        check_length(info, self._delivered, self._last_pts or 0.0, self._stream_ends.values())

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
        if self._gate is not None and self._gate.error is not None:
            raise SourceError(f"{self._spec.text}: {self._gate.error}")
        while True:
            msg = self._bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.ELEMENT)
            if msg is None:
                return
            if msg.type == Gst.MessageType.ELEMENT:
                if GstPbutils.is_missing_plugin_message(msg):
                    self._missing.append(msg)
                continue
            self._raise_error(msg)

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
