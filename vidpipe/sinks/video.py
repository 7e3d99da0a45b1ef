"""Annotated video: frames with boxes drawn, encoded by GStreamer (appsrc → convert → encoder → muxer)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import OutputError
from ..gst import GLib, Gst
from ..gst.graph import compact_dot
from .base import BaseSink, finish_each
from .draw import Annotator

if TYPE_CHECKING:
    from ..types import Result, SourceInfo

log = logging.getLogger(__name__)

# No B-frames: with reordering, frames whose timestamps are irregular (real sources) were measured to
# lose their last frame in mp4mux.
H264 = "x264enc speed-preset=veryfast key-int-max=60 bframes=0 ! h264parse"
MIN_STEP = Gst.MSECOND  # the least time between two frames of a video
MAX_TRAILS = 10_000  # frames of a track's path kept for drawing (about 5 minutes at 30 fps)
# Fragmented MP4 (a fragment a second): a run killed at any moment (SIGKILL, the OOM killer, a power
# cut) leaves a file that plays up to its last whole fragment; a plain MP4 is unreadable without the
# index written at its end. The file sink writes each fragment as it comes (no buffering in the process).
FRAGMENT_MS = 1000
# suffix -> (encoder ! muxer, Debian package of the encoder)
FORMATS = {
    ".mp4": (f"{H264} ! mp4mux fragment-duration={FRAGMENT_MS}", "gstreamer1.0-plugins-ugly"),
    ".mkv": (f"{H264} ! matroskamux", "gstreamer1.0-plugins-ugly"),
    ".webm": ("vp8enc deadline=1 cpu-used=8 ! webmmux", "gstreamer1.0-plugins-good"),
}


class VideoSink(BaseSink):
    """Draws each result's detections on its frame and encodes each stream's frames into its own file.

    ``path`` may contain ``{stream}`` (``out/{stream}.mp4``), which is replaced by the stream's name; it
    must, when several streams are written. ``.mp4``/``.mkv`` → H.264, ``.webm`` → VP8. Each frame keeps
    its time (a file's presentation time, a live frame's arrival time; relative to the stream's first
    frame), so a variable-rate file or a live stream that dropped frames or reconnected gives a video of
    the right duration. Frames whose size differs from the first (a stream that changed resolution) are
    scaled to the first size, so the video holds every frame. A stream's file is finalised when the
    stream ends or is removed (``close_stream``), and every file at ``close()`` (end-of-stream, then the
    muxer finishes), so an interrupted run still leaves playable videos. A stream added again after its
    file was finalised writes a new file, ``NAME-2.mp4`` (then ``-3``, ...), never the finished one.
    """

    needs_pixels = True

    def __init__(self, path: str | Path, *, annotate: bool = True, trails: int = 0, keep_graphs: bool = False) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in FORMATS:
            raise OutputError(f"{self.path}: unknown video format {suffix or '(none)'} (use {', '.join(FORMATS)})")
        if not isinstance(trails, int) or not 0 <= trails <= MAX_TRAILS:
            raise OutputError(f"trails must be 0 to {MAX_TRAILS} frames, got {trails!r}")
        self.annotate = annotate
        self.trails = trails  # draw each track's last N positions
        self.keep_graphs = keep_graphs  # capture each encoder's graph when it starts (for graph_dots)
        self._encoders: dict[str, _Encoder] = {}  # open, by stream
        self._finished: list[_Encoder] = []
        self._opened: dict[str, int] = {}  # files opened so far, by stream

    @property
    def per_stream(self) -> bool:
        return "{stream}" in str(self.path)

    def path_for(self, stream: str, take: int = 1) -> Path:
        """The file of ``stream`` (its ``take``-th file: 2 and on for a stream added again)."""
        path = Path(str(self.path).replace("{stream}", stream))
        return path if take == 1 else path.with_name(f"{path.stem}-{take}{path.suffix}")

    def open_stream(self, info: SourceInfo) -> None:
        if info.stream in self._encoders:
            return
        if (self._encoders or self._finished) and not self.per_stream:
            raise OutputError(f"{self.path}: several streams need a path with {{stream}} (e.g. out/{{stream}}.mp4)")
        take = self._opened.get(info.stream, 0) + 1
        used = {encoder.path for encoder in self._all()}
        while self.path_for(info.stream, take) in used:  # ("cam" added again beside a stream "cam-2")
            take += 1
        annotator = Annotator(self.trails) if self.annotate else None
        encoder = _Encoder(self.path_for(info.stream, take), annotator=annotator, keep_graphs=self.keep_graphs)
        encoder.open(info)
        self._opened[info.stream] = take
        self._encoders[info.stream] = encoder

    def write(self, result: Result) -> None:
        self._encoders[result.frame.stream].write(result)

    def close_stream(self, stream: str) -> None:
        """Finalise the stream's file now (it plays while the other streams go on)."""
        encoder = self._encoders.pop(stream, None)
        if encoder is not None:
            self._finished.append(encoder)
            encoder.close()

    def close(self) -> None:
        """Finalise every stream's file; raises the first error after trying them all."""
        finish_each(self._encoders, self.close_stream, OutputError)

    def _all(self) -> list[_Encoder]:
        return [*self._finished, *self._encoders.values()]

    @property
    def frames_written(self) -> int:
        return sum(encoder.frames_written for encoder in self._all())

    def files(self) -> list[tuple[str, int]]:
        """Each file written and its frame count."""
        return [(str(encoder.path), encoder.frames_written) for encoder in self._all()]

    def graph_dots(self, detail: bool = False) -> dict[str, str]:
        """Each file's encoder pipeline as Graphviz ``dot``, its elements only or (``detail``) as GStreamer
        draws it (captured when it started, with ``keep_graphs``; empty otherwise)."""
        return {str(e.path): e.graphs[detail] for e in self._all() if e.graphs}


class _Encoder:
    """One stream's annotated video: appsrc → convert → encoder → muxer → file."""

    def __init__(self, path: Path, *, annotator: Annotator | None = None, keep_graphs: bool = False) -> None:
        self.path = path
        self.keep_graphs = keep_graphs
        self._chain, self._package = FORMATS[path.suffix.lower()]
        self.annotator = annotator
        self._pipeline: Gst.Pipeline | None = None
        self.graphs: tuple[str, str] | None = None  # (elements only, GStreamer's full graph)
        self._count = 0
        self._first_pts: float | None = None
        self._last_ns = -MIN_STEP
        self._pending: Gst.Buffer | None = None
        self._last_duration = 0

    def open(self, info: SourceInfo) -> None:
        # The buffers' own timestamps give the timing. A variable rate is announced to the encoder as a
        # nominal 30/1: with 0/1, mp4mux was measured to lose the last frame.
        self._rate = Gst.util_double_to_fraction(info.fps) if info.fps else (30, 1)
        self._size = (info.width, info.height)
        self._live = info.live
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
            f'! {convert} ! {self._chain} ! filesink buffer-mode=unbuffered location="{location}"'
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
        if self.keep_graphs:
            self.graphs = (
                compact_dot(self._pipeline),
                Gst.debug_bin_to_dot_data(self._pipeline, Gst.DebugGraphDetails.MEDIA_TYPE),
            )

    def write(self, result: Result) -> None:
        frame = result.frame.tensor
        if self.annotator is not None:
            frame = self.annotator.draw(result)
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = _resize(frame, self._size)
        buf = Gst.Buffer.new_wrapped(frame.numpy().tobytes())
        buf.pts = self._timestamp(result.frame.wall if self._live else result.frame.pts)
        # Each frame lasts until the next one, so it is pushed when the next one arrives (the last
        # one at close, lasting as long as the one before it, at least half a nominal frame).
        if self._pending is not None:
            self._push(self._pending, buf.pts - self._pending.pts)
        self._pending = buf
        self._count += 1
        if self._count % 32 == 0:
            self._check_bus()

    def _push(self, buf: Gst.Buffer, duration: int) -> None:
        buf.duration = duration
        self._last_duration = duration
        if self._src.emit("push-buffer", buf) != Gst.FlowReturn.OK:
            self._check_bus()
            raise OutputError(f"{self.path}: the encoder stopped accepting frames")

    def _timestamp(self, pts: float) -> int:
        """The frame's time relative to the first frame, in ns, kept increasing by at least ``MIN_STEP``
        (a source may repeat a timestamp; mp4mux was measured to drop a last frame 1 ns after another)."""
        if self._first_pts is None:
            self._first_pts = pts
        ns = max(round((pts - self._first_pts) * Gst.SECOND), self._last_ns + MIN_STEP)
        self._last_ns = ns
        return ns

    def _check_bus(self) -> None:
        msg = self._bus.pop_filtered(Gst.MessageType.ERROR)
        if msg is not None:
            err, _ = msg.parse_error()
            raise OutputError(f"{self.path}: encoding failed: {err.message}")

    def close(self) -> None:
        """Finish the file: end-of-stream, wait for the muxer, stop. Safe to call twice."""
        if self._pipeline is None:
            return
        try:
            if self._pending is not None:
                buf, self._pending = self._pending, None
                num, den = self._rate
                # the last frame lasts a nominal frame: a near-zero duration (after a repeated timestamp)
                # was measured to make mp4mux drop it
                nominal = Gst.util_uint64_scale(1, den * Gst.SECOND, num)
                self._push(buf, max(self._last_duration, nominal // 2) or nominal)
        except OutputError:
            self._pipeline.set_state(Gst.State.NULL)
            self._pipeline = None
            raise
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


def _resize(frame: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Scale a ``uint8[H, W, 3]`` frame to ``size=(w, h)``, bilinearly."""
    chw = frame.permute(2, 0, 1)[None].float()
    out = torch.nn.functional.interpolate(chw, size=(size[1], size[0]), mode="bilinear", align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()
