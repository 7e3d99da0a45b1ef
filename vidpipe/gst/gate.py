"""The motion gate of a source: a pad probe before the conversion to RGB that reads a small grey frame
from the decoded picture's luma plane and drops the frames where nothing moved, so they are neither
converted nor copied into Python. The source yields them as frames without new pixels
(``motion=False``), in their place among the others."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..analytics.motion import MotionGate, step_for
from ..errors import VidpipeError
from ..options import MotionOptions
from . import Gst, GstApp, GstVideo

# Formats whose first plane is 8-bit luma (every 8-bit decoder's output): others are converted to I420
# before the gate (raw RGB or packed YUY2 cameras; passed through untouched for the rest).
LUMA_FORMATS = "{I420,YV12,NV12,NV21,Y42B,Y444,Y41B,NV16,NV24,GRAY8}"
GATE_CHAIN = f"videoconvert name=luma ! video/x-raw,format={LUMA_FORMATS} ! "
POLL = 50 * Gst.MSECOND  # how long a reader's pull waits for a frame before it looks at the bus, a stop...
IDLE_WAIT = 0.25  # ... and how long a gated reader sleeps when no frame comes (woken early by one)
ARRIVAL_WAIT = 20 * Gst.MSECOND  # a frame counted at the appsink's pad is in its queue within this


@dataclass(slots=True)
class Held:
    """A frame the gate dropped: its pts (ns), when it left the decoder, and how many frames the gate
    had let through before it."""

    pts: int
    wall: float
    passed: int


class Gate:
    """The probe (:meth:`probe`, on the converter's sink pad) and the frames it held back, in order.

    ``stamp(buffer)`` is the UNIX time a buffer left the decoder. ``active`` can be switched on later
    (an HTTP stream found to be live); inactive, every frame passes. ``wake`` is set when a frame is held,
    reaches the appsink (the source sets it) or the source stops: the reader of a still scene sleeps
    until then instead of polling (see :meth:`pull`)."""

    def __init__(self, options: MotionOptions, stamp: Callable[[Gst.Buffer], float], active: bool = True) -> None:
        self.options = options
        self.active = active
        self.held: deque[Held] = deque()
        self.passed = 0  # frames let through (to the converter and the appsink)
        self.gated = 0  # frames held back
        self.released = 0  # held frames taken out (delivered by the source)
        self._stamp = stamp
        self._caps: Gst.Caps | None = None
        self._layout: tuple[int, int, int, int, int] | None = None  # offset, stride, width, height, step
        self._gate: MotionGate | None = None
        self.wake = threading.Event()
        self.error: VidpipeError | None = None  # masks these frames miss: the source raises it, no frame passes

    def probe(self, pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        """Every frame at the detection rate, in GStreamer's streaming thread."""
        buf = info.get_buffer()
        if self.error is not None:
            return Gst.PadProbeReturn.DROP
        if buf is None or not self.active or not self._read_caps(pad):
            if self.error is not None:  # (these caps' frames miss the masks: not even this one passes)
                return Gst.PadProbeReturn.DROP
            self.passed += 1
            return Gst.PadProbeReturn.OK
        offset, stride, width, height, step = self._layout
        with buf.map(Gst.MapFlags.READ) as mapping:
            data = np.frombuffer(mapping.data, dtype=np.uint8)
            small = np.lib.stride_tricks.as_strided(
                data[offset:], shape=((height - 1) // step + 1, (width - 1) // step + 1), strides=(stride * step, step),
                writeable=False,
            ).copy()  # fmt: skip
        pts = buf.pts / Gst.SECOND if buf.pts != Gst.CLOCK_TIME_NONE else None
        if self._gate(small, pts) or buf.pts == Gst.CLOCK_TIME_NONE:
            self.passed += 1
            return Gst.PadProbeReturn.OK
        self.held.append(Held(buf.pts, self._stamp(buf), self.passed))
        self.gated += 1
        self.wake.set()
        return Gst.PadProbeReturn.DROP

    def _read_caps(self, pad: Gst.Pad) -> bool:
        caps = pad.get_current_caps()
        if caps is None:
            return False
        if self._caps is None or not caps.is_equal(self._caps):
            self._caps = caps
            video = GstVideo.VideoInfo.new_from_caps(caps)
            luma = GstVideo.VideoFormatFlags.YUV | GstVideo.VideoFormatFlags.GRAY
            finfo = video.finfo if video is not None else None
            if finfo is None or finfo.depth[0] != 8 or finfo.pixel_stride[0] != 1 or not finfo.flags & luma:
                self._layout = None  # (not a planar 8-bit luma: every frame passes)
            else:
                step = step_for(video.width)
                self._layout = (video.offset[0], video.stride[0], video.width, video.height, step)
                try:
                    self._gate = MotionGate(self.options, video.width, video.height)
                except VidpipeError as exc:  # (in GStreamer's thread: said by the source's reader)
                    self.error, self._layout = exc, None
                    self.wake.set()
        return self._layout is not None

    def pull(self, appsink: GstApp.AppSink, arrived: int) -> Gst.Sample | None:
        """The appsink's next sample, or None: at once when a held frame is ready for ``arrived``; else,
        gating, after sleeping until :attr:`wake` (at most IDLE_WAIT); else after polling (POLL)."""
        if self.ready(arrived):
            return appsink.try_pull_sample(0)
        if not self.active:
            return appsink.try_pull_sample(POLL)
        self.wake.clear()
        sample = appsink.try_pull_sample(0)
        if sample is None and self.wake.wait(IDLE_WAIT):
            sample = appsink.try_pull_sample(0 if self.held else ARRIVAL_WAIT)
        return sample

    def before(self, pts: int) -> Iterator[Held]:
        """The held frames earlier than a frame at ``pts`` (ns), taken out in order."""
        while self.held and self.held[0].pts < pts:
            yield self._take()

    def ready(self, arrived: int) -> bool:
        """Whether the oldest held frame waits only for frames that reached the appsink (``arrived``)."""
        return bool(self.held) and self.held[0].passed <= arrived

    def settled(self, arrived: int) -> Iterator[Held]:
        """The held frames all of whose predecessors reached the appsink (``arrived`` of them, counted
        before a pull that found it empty): none of those can still come out after them."""
        while self.held and self.held[0].passed <= arrived:
            yield self._take()

    def rest(self) -> Iterator[Held]:
        while self.held:
            yield self._take()

    def _take(self) -> Held:
        self.released += 1
        return self.held.popleft()
