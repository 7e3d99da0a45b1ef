"""``vidpipe.open``: a video source opened and iterable as frames (see :class:`~vidpipe.gst.source.Source`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from ..options import MotionOptions
from ..rules import checked, frame_rate, frame_size
from . import Gst
from .source import Source


def open(
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
    motion: MotionOptions | None = None,
    tap: Callable[[Gst.Pipeline], None] | None = None,
) -> Source:
    """Open a video source and return a :class:`Source` (iterable of :class:`Frame`, context manager).

    ``source``: a path, ``file://``, ``rtsp://``, ``http(s)://`` URL, ``/dev/videoN`` or
    ``testsrc://PATTERN?width=W&height=H&fps=F&frames=N``.
    ``size=(w, h)`` scales inside GStreamer; ``keep_aspect=True`` letterboxes instead of stretching.
    ``live`` overrides the live/file decision: live sources drop the oldest frames when the consumer is
    slow (counted in ``frames_dropped``); file sources apply back-pressure and never drop a frame.
    ``max_buffers``: decoded frames waiting for the consumer (default 2 for a live source, 8 for a file);
    a live source drops its oldest frame beyond them.
    ``timeout`` bounds the wait for the first frame (and, for live sources, for any frame).
    ``max_fps`` keeps at most that many frames per second of stream time, dropping the others inside
    GStreamer before conversion. ``stream`` names the source in every :class:`Frame` it yields.
    ``stall_timeout``: a live source with no frame for this long raises (default: ``timeout``).
    ``gpu_decode``: decode with NVIDIA's decoders and convert to RGB on the GPU where GStreamer has them
    (``source.decoding`` says what was chosen and why; software decoding otherwise).
    ``cancel``: an event that gives up the wait for the first frame (raising
    :class:`~vidpipe.errors.OpenCancelledError`) within 50 ms of being set.
    ``pace``: frames come at the file's own speed (by the clock), not as fast as they decode. ``tap`` is
    called with the GStreamer pipeline before it starts (a camera recorder hooks its encoded stream).
    ``motion``: gate the frames by motion as its mode says (:class:`~vidpipe.options.MotionOptions`): the
    frames where nothing moved come without new pixels and with ``motion=False`` (see docs/motion.md).
    Raises a :class:`vidpipe.errors.SourceError` subclass that names the input and the cause.
    """
    size = checked("size", frame_size, size) if size is not None else None
    max_fps = checked("max_fps", frame_rate, max_fps) if max_fps is not None else None
    return Source(
        source, size=size, keep_aspect=keep_aspect, live=live, max_buffers=max_buffers, timeout=timeout,
        max_fps=max_fps, stream=stream, stall_timeout=stall_timeout, gpu_decode=gpu_decode, cancel=cancel, pace=pace,
        motion=motion, tap=tap,
    )  # fmt: skip
