"""Building a source's GStreamer pipeline: the launch description, the file-descriptor check before it,
callbacks that hold their owner weakly, and the teardown that cuts every link back to Python."""

from __future__ import annotations

import os
import resource
import threading
import weakref

from ..errors import SourceError, SourceOutOfResourcesError
from ..rules import MIN_FPS
from . import Gst
from .decoders import CUDA_CHAIN
from .gate import GATE_CHAIN

# File descriptors one source needs at most (bus, decoder threads, file); checked before building.
FDS_PER_SOURCE = 32
MIN_RATE = "1/10000"  # the lower end of the frame rates a max_fps lets through (rules.MIN_FPS, a fraction)
LIVE_BUFFERS = 2  # decoded frames a live source keeps unless told: the newest, so latency stays low
FILE_BUFFERS = 8  # a file's: room for the consumer's pauses (back-pressure, never a drop)


def appsink_buffers(asked: int | None, live: bool, source: str) -> int:
    """How many decoded frames wait for the consumer: ``asked`` (``vidpipe.open(max_buffers=...)``), or
    the default for a live source or a file; a live source drops its oldest frame beyond them."""
    if asked is None:
        return LIVE_BUFFERS if live else FILE_BUFFERS
    if isinstance(asked, bool) or not isinstance(asked, int) or asked < 1:
        raise SourceError(f"{source}: max_buffers must be a whole number of frames from 1, got {asked!r}")
    return asked


def description(
    source: str, *, size: tuple[int, int] | None, keep_aspect: bool, max_fps: float | None, convert_on_gpu: bool,
    max_buffers: int, live: bool, pace: bool, decode_in_bin: bool, gate: bool = False,
) -> str:  # fmt: skip
    """``SOURCE ! [videorate !] queue ! convert ! videoflip ! videoscale ! RGB caps ! appsink``; the first
    element after the source is named ``frames``.

    Frames are turned upright (the orientation tag phones write) after the conversion to RGB and before
    scaling, so that ``size`` is the size of the upright picture; both are pass-through when there is
    nothing to do. ``max_fps``: frames above the rate are dropped in the decoder's thread, before the
    queue to the converter's thread and any conversion, so they cost nothing. NVIDIA decoding: the frame
    is converted to RGB on the GPU and comes back once, as RGB.
    ``decode_in_bin``: the source is a uridecodebin whose pads appear at run time and are linked by hand,
    so its first link is left out. ``gate``: the frames reach the converter in a format with a luma plane,
    for the motion gate's probe on its sink pad (see :mod:`vidpipe.gst.gate`)."""
    caps = "video/x-raw,format=RGB"
    if size is not None:
        width, height = size
        caps += f",width={int(width)},height={int(height)},pixel-aspect-ratio=1/1"
    sink = (
        f"appsink name=sink sync={str(pace).lower()} max-buffers={max_buffers} "
        f"drop={str(live).lower()} enable-last-sample=false"
    )
    queue = "max-size-buffers=4 max-size-bytes=0 max-size-time=0"
    head = f"queue name=frames {queue} ! "
    if max_fps is not None:
        # a maximum: a stream at or below it passes every frame (a fixed rate above the stream's
        # own would fail to negotiate, since drop-only never adds frames)
        num, den = Gst.util_double_to_fraction(max_fps)
        rates = f"[{MIN_RATE},{num}/{den}]" if max_fps > MIN_FPS else f"{num}/{den}"
        memory = "(ANY)" if convert_on_gpu else ""  # frames in GPU memory too
        head = f"videorate name=frames drop-only=true ! video/x-raw{memory},framerate={rates} ! queue {queue} ! "
    borders = str(keep_aspect).lower()
    convert = (
        CUDA_CHAIN
        if convert_on_gpu
        # (caps negotiation lets this element scale too, in the same pass: it must stretch or
        # letterbox as asked, like the videoscale after it)
        else f"videoconvertscale name=convert add-borders={borders} ! video/x-raw,format=RGB"
    )
    if gate and not convert_on_gpu:
        head += GATE_CHAIN
    text = (
        f"{source} ! {head}{convert} "
        f"! videoflip name=orient video-direction=auto ! videoscale name=scale add-borders={borders} ! {caps} ! {sink}"
    )
    if decode_in_bin:
        head, _, tail = text.partition(" ! ")
        text = f"{head} {tail}"
    return text


def check_fds(text: str) -> None:
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


def weak(method):
    """A GObject callback that calls ``method`` through a weak reference: a signal handler or pad probe
    then does not keep its Python owner (and with it the whole pipeline) alive in a reference cycle."""
    ref = weakref.WeakMethod(method)

    def call(*args):
        bound = ref()
        if bound is not None:
            return bound(*args)
        return Gst.PadProbeReturn.OK if args and isinstance(args[-1], Gst.PadProbeInfo) else None

    return call


def teardown(pipeline: Gst.Pipeline, handlers: list[tuple[Gst.Object, int]], probes: list[tuple[Gst.Pad, int]]):
    """Stop a pipeline and cut every link from GStreamer back to Python (runs on close and on collection).

    A source dropped without ``close()`` may be collected in one of GStreamer's own streaming threads
    (the last reference can go away inside a callback), where changing the pipeline's state would
    deadlock: the teardown then runs in a short-lived thread of its own."""
    if isinstance(threading.current_thread(), threading._DummyThread):  # not a thread Python started
        threading.Thread(target=teardown, args=(pipeline, handlers, probes), name="vidpipe-teardown").start()
        return
    pipeline.set_state(Gst.State.NULL)
    for element, handler in handlers:
        if element.handler_is_connected(handler):
            element.disconnect(handler)
    for pad, probe in probes:
        pad.remove_probe(probe)
    handlers.clear()
    probes.clear()


def configure_network_source(element: Gst.Element, timeout: float) -> None:
    """uridecodebin's ``source-setup``: RTSP runs RTP over its TCP connection (a server that goes away is
    noticed at once, over UDP only by a timeout, and no packet is lost to a full socket buffer)."""
    factory = element.get_factory().get_name() if element.get_factory() else ""
    if factory == "rtspsrc":
        element.set_property("protocols", "tcp")
        element.set_property("latency", 200)
        element.set_property("tcp-timeout", int(timeout * 1_000_000))
        element.set_property("timeout", int(timeout * 1_000_000))


def configure_element(_bin: Gst.Bin, _parent: Gst.Bin, element: Gst.Element) -> None:
    """uridecodebin's ``deep-element-added``: an MJPEG camera's multipart reply holds one stream; say so,
    or decodebin waits for more streams, holding every frame back until the connection ends."""
    factory = element.get_factory()
    if factory is not None and factory.get_name() == "multipartdemux":
        element.set_property("single-stream", True)


def decoder_sink(pad: Gst.Pad) -> Gst.Pad | None:
    """The sink pad of the video decoder behind uridecodebin's ``pad`` (None for raw video)."""
    while isinstance(pad, Gst.GhostPad) and pad.get_target() is not None:
        pad = pad.get_target()
    decoder = pad.get_parent_element()
    klass = decoder.get_factory().get_metadata("klass") if decoder and decoder.get_factory() else ""
    return decoder.get_static_pad("sink") if "Decoder" in (klass or "") else None


def discard(pipeline: Gst.Pipeline, pad: Gst.Pad) -> None:
    """Link ``pad`` (a stream that is not the video: audio, subtitles) to a fakesink of its own."""
    sink = Gst.ElementFactory.make("fakesink", None)
    sink.set_property("sync", False)
    sink.set_property("async", False)
    pipeline.add(sink)
    sink.sync_state_with_parent()
    pad.link(sink.get_static_pad("sink"))
