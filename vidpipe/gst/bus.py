"""Bus messages into vidpipe errors: one pure function that unit tests can call without a pipeline."""

from __future__ import annotations

import logging

from ..errors import (
    DecodeError,
    MissingDecoderError,
    NotAVideoError,
    NoVideoStreamError,
    SourceError,
    SourceNotFoundError,
    StreamUnreachableError,
)
from . import GLib, Gst, GstPbutils
from .uri import SourceSpec

log = logging.getLogger(__name__)

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


def error_from_message(
    msg: Gst.Message, spec: SourceSpec, *, missing: list[Gst.Message] = (), delivered: int = 0
) -> SourceError:
    """The :class:`~vidpipe.errors.SourceError` for an ERROR message on a source's bus: names the input
    and the cause. ``missing`` are the missing-plugin messages seen before; ``delivered`` the frame count."""
    err, debug = msg.parse_error()
    log.debug("GStreamer error from %s: %s (%s)", msg.src.get_name() if msg.src else "?", err.message, debug)
    text = spec.text
    if missing or err.matches(Gst.StreamError.quark(), Gst.StreamError.CODEC_NOT_FOUND):
        return missing_decoder_error(text, missing)
    if err.matches(Gst.StreamError.quark(), Gst.StreamError.TYPE_NOT_FOUND) or err.matches(
        Gst.StreamError.quark(), Gst.StreamError.WRONG_TYPE
    ):
        return NotAVideoError(f"{text}: not a video file (GStreamer cannot recognise its format)")
    resource = err.domain == GLib.quark_to_string(Gst.ResourceError.quark())
    if spec.kind in ("network", "v4l2") and resource:
        return StreamUnreachableError(f"{text}: cannot connect ({err.message})")
    if "no playable streams" in err.message or "no known streams" in err.message:
        return NoVideoStreamError(f"{text}: no playable video stream ({err.message})")
    if resource and spec.kind == "file":
        return SourceNotFoundError(f"{text}: cannot read file ({err.message})")
    origin = msg.src.get_name() if msg.src else "pipeline"
    return DecodeError(f"{text}: decoding failed after {delivered} frames: {err.message} (from {origin})")


def missing_decoder_error(text: str, missing: list[Gst.Message]) -> MissingDecoderError:
    """The error for a stream no installed decoder handles, naming the Debian/Ubuntu package to install."""
    if not missing:
        return MissingDecoderError(f"{text}: no decoder installed for this stream")
    msg = missing[0]
    description = GstPbutils.missing_plugin_message_get_description(msg)
    detail = msg.get_structure().get_value("detail")
    caps_name = detail.get_structure(0).get_name() if isinstance(detail, Gst.Caps) else ""
    package = DECODER_PACKAGES.get(caps_name)
    hint = f"install the Debian/Ubuntu package {package}" if package else "install a GStreamer plugin for it"
    return MissingDecoderError(
        f"{text}: no decoder installed for {description} ({caps_name}); {hint}", codec=caps_name, package=package
    )
