"""Which decoder GStreamer uses: NVIDIA's (nvcodec) when frames go to a CUDA device and the machine has
them, the software ones otherwise, and a way to tell which one a running source picked."""

from __future__ import annotations

import base64
import logging
import os
import threading
from dataclasses import dataclass

from . import GLib, Gst

log = logging.getLogger(__name__)

# NVIDIA's decoders in GStreamer 1.22's nvcodec plugin (gstreamer1.0-plugins-bad), stateful and stateless.
# The plugin registers them only where the NVIDIA driver and its decoding library (libnvcuvid) load.
NVIDIA_DECODERS = tuple(
    f"nv{codec}{kind}dec"
    for codec in ("h264", "h265", "vp8", "vp9", "av1", "jpeg", "mpeg2video", "mpeg4video", "mpegvideo")
    for kind in ("", "sl")
)
# The CUDA elements that convert to RGB on the device and bring one RGB frame back.
CUDA_ELEMENTS = ("cudaupload", "cudaconvertscale", "cudadownload")
CUDA_CHAIN = "cudaupload ! cudaconvertscale name=convert ! video/x-raw(memory:CUDAMemory),format=RGB ! cudadownload"
PREFERRED_RANK = Gst.Rank.PRIMARY + 64  # above every software decoder, so decodebin picks NVIDIA's
# One black 128x128 H.264 frame (constrained baseline, byte-stream; made with x264enc): what the check
# decodes through NVIDIA's decoder before trusting it (a decoder can register and still fail to decode:
# no libnvcuvid session, a driver too old, no GL libraries for the CUDA context).
PROBE_H264 = base64.b64decode(
    "AAAAAQkQAAAAAWdCwBXZAgRsBagwMDUoAAADAAgAAAMB5HixckAAAAABaMuMsgAAAAEGBf//tdxF6b3m2Ui3lizYINkj7u94MjY0"
    "IC0gY29yZSAxNjQgcjMwOTUgYmFlZTQwMCAtIEguMjY0L01QRUctNCBBVkMgY29kZWMgLSBDb3B5bGVmdCAyMDAzLTIwMjIgLSBo"
    "dHRwOi8vd3d3LnZpZGVvbGFuLm9yZy94MjY0Lmh0bWwgLSBvcHRpb25zOiBjYWJhYz0wIHJlZj0zIGRlYmxvY2s9MTowOjAgYW5h"
    "bHlzZT0weDE6MHgxMTEgbWU9aGV4IHN1Ym1lPTcgcHN5PTEgcHN5X3JkPTEuMDA6MC4wMCBtaXhlZF9yZWY9MSBtZV9yYW5nZT0x"
    "NiBjaHJvbWFfbWU9MSB0cmVsbGlzPTEgOHg4ZGN0PTAgY3FtPTAgZGVhZHpvbmU9MjEsMTEgZmFzdF9wc2tpcD0xIGNocm9tYV9x"
    "cF9vZmZzZXQ9LTIgdGhyZWFkcz0zIGxvb2thaGVhZF90aHJlYWRzPTEgc2xpY2VkX3RocmVhZHM9MCBucj0wIGRlY2ltYXRlPTEg"
    "aW50ZXJsYWNlZD0wIGJsdXJheV9jb21wYXQ9MCBjb25zdHJhaW5lZF9pbnRyYT0wIGJmcmFtZXM9MCB3ZWlnaHRwPTAga2V5aW50"
    "PTMwMCBrZXlpbnRfbWluPTMwIHNjZW5lY3V0PTQwIGludHJhX3JlZnJlc2g9MCByY19sb29rYWhlYWQ9NDAgcmM9Y2JyIG1idHJl"
    "ZT0xIGJpdHJhdGU9MjA0OCByYXRldG9sPTEuMCBxY29tcD0wLjYwIHFwbWluPTAgcXBtYXg9NjkgcXBzdGVwPTQgdmJ2X21heHJh"
    "dGU9MjA0OCB2YnZfYnVmc2l6ZT0xMjI4IG5hbF9ocmQ9bm9uZSBmaWxsZXI9MCBpcF9yYXRpbz0xLjQwIGFxPTE6MS4wMACAAAAA"
    "AWWIhAa///8PRQABV58nJycnJycnXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXgA=="
)
PROBE_TIMEOUT = 10.0  # seconds the test frame may take to come out (a first CUDA context, NVRTC)
NVDEC_ENV = "VIDPIPE_NVDEC"  # "0": never decode on the GPU (software decoding, as asked)

_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Decoding:
    """Where a source decodes: ``gpu`` when NVIDIA's decoders are used, ``convert_on_gpu`` when the frames
    are also converted to RGB there (CUDA elements present); ``note`` says what and why."""

    gpu: bool
    note: str
    convert_on_gpu: bool = False


def _present(names: tuple[str, ...]) -> list[str]:
    return [name for name in names if Gst.ElementFactory.find(name) is not None]


def probe_decoder(decoder: str, convert: str = "", timeout: float = PROBE_TIMEOUT) -> str | None:
    """Decode :data:`PROBE_H264` with the ``decoder`` element (then through ``convert``, a chain of
    elements); None when a frame came out, else why not, in a few words."""
    chain = f"{decoder} ! {convert} ! " if convert else f"{decoder} ! "
    description = (
        "appsrc name=src format=time caps=video/x-h264,stream-format=byte-stream,alignment=au "
        f"! h264parse ! {chain}appsink name=sink sync=false max-buffers=1"
    )
    try:
        pipeline = Gst.parse_launch(description)
    except GLib.Error as exc:
        return exc.message
    bus = pipeline.get_bus()
    try:
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            return _bus_error(bus) or "the pipeline did not start"
        buffer = Gst.Buffer.new_wrapped(PROBE_H264)
        buffer.pts, buffer.duration = 0, Gst.SECOND // 30
        source = pipeline.get_by_name("src")
        source.emit("push-buffer", buffer)
        source.emit("end-of-stream")
        if pipeline.get_by_name("sink").try_pull_sample(int(timeout * Gst.SECOND)) is not None:
            return None
        return _bus_error(bus) or f"no frame came out within {timeout:g} s"
    finally:
        pipeline.set_state(Gst.State.NULL)


def _bus_error(bus: Gst.Bus) -> str | None:
    message = bus.pop_filtered(Gst.MessageType.ERROR)
    if message is None:
        return None
    error, _debug = message.parse_error()
    origin = message.src.get_name() if message.src is not None else "?"
    return f"{error.message} (from {origin})"


_checked: Decoding | None = None
_failed: list[str] = []  # NVIDIA decoders present that could not decode the test frame


def nvidia_decoding() -> Decoding:
    """Whether this machine's GStreamer can decode on an NVIDIA GPU and convert there, and why (not):
    decided once per process by decoding a test frame through NVIDIA's H.264 decoder (and the CUDA
    conversion to RGB), not by the elements' presence alone. A fallback to software decoding is said in
    one warning line; ``VIDPIPE_NVDEC=0`` asks for software decoding (said in the note only)."""
    global _checked
    with _lock:
        if _checked is None:
            _checked = _check()
            if not _checked.gpu and not _checked.note.startswith("software decoding: as asked"):
                log.warning("%s", _checked.note)
        return _checked


def forget_check() -> None:
    """Check again at the next :func:`nvidia_decoding` (the tests change what is there)."""
    global _checked
    with _lock:
        _checked = None
        _failed.clear()


def _check() -> Decoding:
    if os.environ.get(NVDEC_ENV, "").strip() == "0":
        return Decoding(False, f"software decoding: as asked ({NVDEC_ENV}=0)")
    decoders = _present(NVIDIA_DECODERS)
    if not decoders:
        return Decoding(
            False,
            "software decoding: GStreamer has no NVIDIA decoder here (nvh264dec and the others come with "
            "gstreamer1.0-plugins-bad and appear where the NVIDIA driver's libnvcuvid loads)",
        )
    h264 = [name for name in decoders if name.startswith("nvh264")] or decoders[:1]
    reasons = {}
    for name in h264:
        reasons[name] = probe_decoder(name)
    working = [name for name in h264 if reasons[name] is None]
    _failed[:] = [name for name in h264 if reasons[name] is not None]
    if not working:
        why = "; ".join(f"{name}: {reason}" for name, reason in reasons.items())
        return Decoding(False, f"software decoding: NVIDIA's decoder could not decode a test frame ({why})")
    decoders = [name for name in decoders if name not in _failed]
    missing = sorted(set(CUDA_ELEMENTS) - set(_present(CUDA_ELEMENTS)), key=CUDA_ELEMENTS.index)
    if missing:  # (the CUDA converters need NVRTC, which GStreamer loads at run time)
        return Decoding(True, f"NVIDIA decoding ({', '.join(decoders)}), converted on the CPU: no {', '.join(missing)}")
    convert = CUDA_CHAIN.replace(" name=convert", "")
    failed = probe_decoder(working[0], convert)
    if failed is not None:
        return Decoding(
            True, f"NVIDIA decoding ({', '.join(decoders)}), converted on the CPU: CUDA conversion failed ({failed})"
        )
    return Decoding(True, f"NVIDIA decoding ({', '.join(decoders)}), converted to RGB on the GPU", True)


def prefer_nvidia_decoders() -> None:
    """Rank NVIDIA's decoders above the software ones in this process, so that decodebin picks them;
    those that failed the check (see :func:`nvidia_decoding`) are ranked out instead."""
    with _lock:
        for name in _present(NVIDIA_DECODERS):
            factory = Gst.ElementFactory.find(name)
            if name in _failed:
                factory.set_rank(Gst.Rank.NONE)
            elif factory.get_rank() < PREFERRED_RANK:
                factory.set_rank(PREFERRED_RANK)


def video_decoder(pipeline: Gst.Bin) -> str | None:
    """The factory name of the video decoder a running pipeline uses (None before it has one)."""
    iterator = pipeline.iterate_recurse()
    while True:
        result, element = iterator.next()
        if result == Gst.IteratorResult.RESYNC:
            iterator.resync()
            continue
        if result != Gst.IteratorResult.OK:
            return None
        factory = element.get_factory()
        klass = factory.get_metadata("klass") if factory is not None else ""
        if "Decoder" in klass and "Video" in klass:
            return factory.get_name()
