"""An event's clip: consecutive MPEG-TS ring segments (one timeline) remuxed, never re-encoded, into one
fragmented MP4 that browsers play (``appsrc ! tsdemux ! h264parse ! mp4mux ! filesink``)."""

from __future__ import annotations

import os
from pathlib import Path

from . import Gst, GstPbutils

CHUNK = 1 << 20  # bytes pushed at a time
TS_CAPS = "video/mpegts,systemstream=true,packetsize=188"


class ClipError(Exception):
    """A clip could not be written (its one line says why: disk full, a damaged segment)."""


def cut(parts: list[Path], out: Path, parser: str = "h264parse", timeout: float = 30.0) -> None:
    """Write the segments ``parts`` (in order; ``parser`` for their codec) as one fragmented MP4 at
    ``out`` (whole or not at all: written beside it, then renamed); :class:`ClipError`."""
    partial = out.with_name(out.name + ".part")
    pipeline = Gst.parse_launch(
        f"appsrc name=src caps={TS_CAPS} format=bytes ! tsdemux ! {parser} ! "
        f'mp4mux fragment-duration=1000 ! filesink name=file location="{partial}"'
    )
    src = pipeline.get_by_name("src")
    try:
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise ClipError(f"{out}: cannot start the clip's pipeline")
        for part in parts:
            with open(part, "rb") as file:
                while chunk := file.read(CHUNK):
                    if src.emit("push-buffer", Gst.Buffer.new_wrapped(chunk)) != Gst.FlowReturn.OK:
                        break
        src.emit("end-of-stream")
        message = pipeline.get_bus().timed_pop_filtered(
            int(timeout * Gst.SECOND), Gst.MessageType.EOS | Gst.MessageType.ERROR
        )
        if message is None:
            raise ClipError(f"{out}: not finished within {timeout:g} s")
        if message.type == Gst.MessageType.ERROR:
            error, _debug = message.parse_error()
            raise ClipError(f"{out}: {error.message}")
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ClipError(f"{out}: {exc.strerror or exc}") from None
    except ClipError:
        partial.unlink(missing_ok=True)
        raise
    finally:
        pipeline.set_state(Gst.State.NULL)
    try:
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ClipError(f"{out}: {exc.strerror or exc}") from None


def duration(path: Path, timeout: float = 10.0) -> float:
    """A media file's duration in seconds (GStreamer's discoverer)."""
    info = GstPbutils.Discoverer.new(int(timeout * Gst.SECOND)).discover_uri(Path(path).resolve().as_uri())
    return info.get_duration() / Gst.SECOND
