"""Which decoder GStreamer uses: NVIDIA's (nvcodec) when frames go to a CUDA device and the machine has
them, the software ones otherwise, and a way to tell which one a running source picked."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from . import Gst

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


def nvidia_decoding() -> Decoding:
    """Whether this machine's GStreamer can decode on an NVIDIA GPU and convert there (and why not)."""
    decoders = _present(NVIDIA_DECODERS)
    if not decoders:
        return Decoding(
            False,
            "software decoding: GStreamer has no NVIDIA decoder here (nvh264dec and the others come with "
            "gstreamer1.0-plugins-bad and appear where the NVIDIA driver's libnvcuvid loads)",
        )
    missing = sorted(set(CUDA_ELEMENTS) - set(_present(CUDA_ELEMENTS)), key=CUDA_ELEMENTS.index)
    if missing:  # (the CUDA converters need NVRTC, which GStreamer loads at run time)
        return Decoding(True, f"NVIDIA decoding ({', '.join(decoders)}), converted on the CPU: no {', '.join(missing)}")
    return Decoding(True, f"NVIDIA decoding ({', '.join(decoders)}), converted to RGB on the GPU", True)


def prefer_nvidia_decoders() -> None:
    """Rank NVIDIA's decoders above the software ones in this process, so that decodebin picks them."""
    with _lock:
        for name in _present(NVIDIA_DECODERS):
            factory = Gst.ElementFactory.find(name)
            if factory.get_rank() < PREFERRED_RANK:
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
