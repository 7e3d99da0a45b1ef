"""Defaults in one place, and the options that shape how each stream is read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import rules

DEFAULT_BATCH = 4  # frames per inference batch (batch 8 gains nothing more on 2 CPU cores)
DEFAULT_GPU_BATCH = 32  # on a GPU (an H200 ran the default model 1.7x faster at batch 32 than at 8)


def default_batch(device: str) -> int:
    """The batch size for a device: small on the CPU (latency), large on a GPU (throughput)."""
    return DEFAULT_GPU_BATCH if str(device).startswith("cuda") else DEFAULT_BATCH


DEFAULT_MAX_WAIT = 0.05  # seconds a batch waits to fill after its first frame
DEFAULT_LIVE_MAX_LATENCY = 1.0  # seconds: older live frames are dropped instead of processed late
OPEN_TIMEOUT = 10.0  # seconds to wait for a source's first frame
STALL_TIMEOUT = 5.0  # seconds without a frame before a live stream counts as lost
RECONNECT_FIRST = 0.5  # seconds before the first reconnection attempt; doubles each time
RECONNECT_MAX = 30.0  # the longest wait between reconnection attempts
FILE_QUEUE = 8  # decoded frames buffered per file stream (back-pressure beyond)
LIVE_QUEUE = 4  # decoded frames buffered per live stream (the oldest is dropped beyond)


MOTION_MODES = ("auto", "on", "off")


@dataclass(frozen=True, slots=True)
class MotionOptions:
    """Motion gating (see docs/motion.md): frames where nothing moved skip the detector.

    ``mode``: ``auto`` gates live streams (cameras) and never files, ``on`` every stream, ``off`` none.
    ``threshold``: grey levels (1 to 255) a pixel of the small, blurred grey frame must differ from the
    background by to count as changed. ``min_area``: the fraction of the frame (0 to 1) that must change
    for motion. ``masks``: polygons to ignore (a clock overlay, a tree), each ``x1,y1,x2,y2,...`` in
    pixels or ``rel:`` fractions, like zones. ``hangover``: frames still detected after motion ends.
    ``refresh``: seconds after which a still stream is detected once anyway (0: never).
    Checked by :func:`vidpipe.analytics.motion.check_motion`.
    """

    mode: str = "auto"
    threshold: float = 25.0
    min_area: float = 0.002
    masks: tuple[str, ...] = ()
    hangover: int = 3
    refresh: float = 10.0

    def enabled(self, live: bool) -> bool:
        """Whether a stream (live or not) is gated."""
        return self.mode == "on" or (self.mode == "auto" and live)


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """How every stream of a run is read.

    ``detect_fps``: at most this many frames per second of stream time reach the detector (the others
    are dropped inside GStreamer before conversion). ``max_latency``: a live frame older than this when a
    batch would take it is dropped and counted (None: ``DEFAULT_LIVE_MAX_LATENCY`` for live streams;
    files never drop). ``reconnect``: reconnect a live network stream that fails, with back-off from
    ``RECONNECT_FIRST`` to ``RECONNECT_MAX`` seconds, for as long as the run lasts. ``max_frames``: stop
    each stream after this many frames. ``gpu_decode``: decode on an NVIDIA GPU where GStreamer can (see
    :func:`vidpipe.gst.decoders.nvidia_decoding`), in software otherwise. ``loop``: a file is played at
    its own speed and from the start again when it ends (frame numbers and times go on), like a camera.
    ``motion``: motion gating (:class:`MotionOptions`; by default live streams only).
    """

    detect_fps: float | None = None
    max_latency: float | None = None
    reconnect: bool = True
    max_frames: int | None = None
    open_timeout: float = OPEN_TIMEOUT
    stall_timeout: float = STALL_TIMEOUT
    gpu_decode: bool = False
    loop: bool = False  # a file plays at its own speed and starts again at its end (a demo camera)
    tap: Callable[[str, Any], None] | None = None  # called with each source's stream name and GStreamer pipeline
    motion: MotionOptions = field(default_factory=MotionOptions)

    def __post_init__(self) -> None:
        if self.detect_fps is not None:
            object.__setattr__(self, "detect_fps", rules.checked("detect_fps", rules.frame_rate, self.detect_fps))
        for name in ("max_latency", "open_timeout", "stall_timeout"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, rules.checked(name, rules.positive_number, getattr(self, name)))
        if self.max_frames is not None:
            object.__setattr__(self, "max_frames", rules.checked("max_frames", rules.count, self.max_frames))

    def latency_bound(self, live: bool) -> float | None:
        """The age above which a frame of this kind of stream is dropped (None: never)."""
        if not live:
            return None
        return DEFAULT_LIVE_MAX_LATENCY if self.max_latency is None else self.max_latency
