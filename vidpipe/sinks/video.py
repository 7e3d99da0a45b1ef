"""Annotated video: frames with boxes drawn, encoded by GStreamer (appsrc → convert → encoder → muxer)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .._gst import GLib, Gst
from ..errors import OutputError
from .draw import draw

if TYPE_CHECKING:
    from ..runner import Result
    from ..source import SourceInfo

log = logging.getLogger(__name__)

# suffix -> (encoder ! muxer, Debian package of the encoder)
FORMATS = {
    ".mp4": ("x264enc speed-preset=veryfast key-int-max=60 ! h264parse ! mp4mux", "gstreamer1.0-plugins-ugly"),
    ".mkv": ("x264enc speed-preset=veryfast key-int-max=60 ! h264parse ! matroskamux", "gstreamer1.0-plugins-ugly"),
    ".webm": ("vp8enc deadline=1 cpu-used=8 ! webmmux", "gstreamer1.0-plugins-good"),
}


class VideoSink:
    """Draws each result's detections on its frame and encodes the frames at the source's frame rate.

    ``.mp4``/``.mkv`` → H.264, ``.webm`` → VP8. ``close()`` sends end-of-stream and waits until the muxer
    has finalised the file, so an interrupted run still leaves a playable video.
    """

    def __init__(self, path: str | Path, *, annotate: bool = True) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in FORMATS:
            raise OutputError(f"{self.path}: unknown video format {suffix or '(none)'} (use {', '.join(FORMATS)})")
        self._chain, self._package = FORMATS[suffix]
        self.annotate = annotate
        self._pipeline: Gst.Pipeline | None = None
        self._count = 0

    def open(self, info: SourceInfo) -> None:
        fps = info.fps or 30.0
        self._rate = Gst.util_double_to_fraction(fps)
        self._size = (info.width, info.height)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot create its folder ({exc.strerror})") from None
        even = info.width % 2 == 0 and info.height % 2 == 0
        convert = "videoconvert ! video/x-raw,format=I420" if even else "videoconvert"
        caps = (
            f"video/x-raw,format=RGB,width={info.width},height={info.height},framerate={self._rate[0]}/{self._rate[1]}"
        )
        location = str(self.path).replace("\\", "\\\\").replace('"', '\\"')
        description = (
            f"appsrc name=src format=time block=true max-bytes={info.width * info.height * 3 * 8} caps={caps} "
            f'! {convert} ! {self._chain} ! filesink location="{location}"'
        )
        try:
            self._pipeline = Gst.parse_launch(description)
        except GLib.Error as exc:
            raise OutputError(
                f"{self.path}: cannot build the encoder ({exc.message}; install {self._package})"
            ) from None
        self._src = self._pipeline.get_by_name("src")
        self._bus = self._pipeline.get_bus()
        if self._pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self._check_bus()
            raise OutputError(f"{self.path}: cannot start the encoder")

    def write(self, result: Result) -> None:
        frame = result.frame.tensor
        if self.annotate:
            frame = draw(frame, result.detections)
        if (frame.shape[1], frame.shape[0]) != self._size:
            raise OutputError(f"{self.path}: frame size changed mid-stream ({frame.shape[1]}x{frame.shape[0]})")
        buf = Gst.Buffer.new_wrapped(frame.numpy().tobytes())
        num, den = self._rate
        buf.pts = Gst.util_uint64_scale(self._count, den * Gst.SECOND, num)
        buf.duration = Gst.util_uint64_scale(1, den * Gst.SECOND, num)
        self._count += 1
        if self._src.emit("push-buffer", buf) != Gst.FlowReturn.OK:
            self._check_bus()
            raise OutputError(f"{self.path}: the encoder stopped accepting frames")
        if self._count % 32 == 0:
            self._check_bus()

    def _check_bus(self) -> None:
        msg = self._bus.pop_filtered(Gst.MessageType.ERROR)
        if msg is not None:
            err, _ = msg.parse_error()
            raise OutputError(f"{self.path}: encoding failed: {err.message}")

    def close(self) -> None:
        """Finish the file: end-of-stream, wait for the muxer, stop. Safe to call twice."""
        if self._pipeline is None:
            return
        pipeline, self._pipeline = self._pipeline, None
        try:
            self._src.emit("end-of-stream")
            msg = self._bus.timed_pop_filtered(60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
            if msg is None:
                raise OutputError(f"{self.path}: the encoder did not finish within 60 s")
            if msg.type == Gst.MessageType.ERROR:
                raise OutputError(f"{self.path}: encoding failed: {msg.parse_error()[0].message}")
        finally:
            pipeline.set_state(Gst.State.NULL)
        log.info("wrote %d frames to %s", self._count, self.path)

    @property
    def frames_written(self) -> int:
        return self._count
