"""Test media made with real GStreamer encoders and muxers, and reference decodes made by gst-launch."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import torch

# x264 for clips whose detections are compared: one thread, so the same frames always give the same file
# (with its default threads, two runs of one encode differ in their decoded pixels).
X264 = "x264enc speed-preset=veryfast threads=1"
# name: (encoder ! muxer, width, height, extension)
CLIPS = {
    "h264_mp4": ("x264enc ! mp4mux", 321, 241, "mp4"),
    "vp9_webm": ("vp9enc deadline=1 ! webmmux", 176, 144, "webm"),
    "mjpeg_avi": ("jpegenc ! avimux", 321, 241, "avi"),
    "mpeg4_avi": ("avenc_mpeg4 ! avimux", 176, 144, "avi"),
    "h265_mkv": ("x265enc ! h265parse ! matroskamux", 321, 241, "mkv"),
}


def gst_launch(description: str, timeout: float = 120) -> None:
    """Run ``gst-launch-1.0 -q`` on a description; raise with its output on failure."""
    result = subprocess.run(["gst-launch-1.0", *description.split()], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"gst-launch-1.0 {description} failed:\n{result.stdout}\n{result.stderr}")


def encode(path: Path, chain: str, width: int, height: int, frames: int = 30, pattern: str = "ball") -> Path:
    gst_launch(
        f"videotestsrc num-buffers={frames} pattern={pattern} ! "
        f"video/x-raw,width={width},height={height},framerate=30/1 ! videoconvert ! {chain} ! "
        f"filesink location={path}"
    )
    return path


def first_frames(source: Path, path: Path, frames: int) -> Path:
    """The first ``frames`` frames of a clip (about: the encoder may add one or two), re-encoded as
    H.264/MP4 with its index first."""
    gst_launch(
        f"filesrc location={source} ! decodebin ! identity eos-after={frames} ! videoconvert ! "
        f"{X264} ! mp4mux faststart=true ! filesink location={path}"
    )
    return path


def reference_decode(path: Path, width: int, height: int) -> torch.Tensor:
    """Decode with ``gst-launch-1.0 ... ! videoconvert ! video/x-raw,format=RGB ! filesink`` and undo
    GStreamer's 4-byte row padding. Returns uint8[N, H, W, 3]."""
    raw = path.with_suffix(path.suffix + ".rgb")
    gst_launch(f"filesrc location={path} ! decodebin ! videoconvert ! video/x-raw,format=RGB ! filesink location={raw}")
    stride = (width * 3 + 3) // 4 * 4
    data = torch.frombuffer(bytearray(raw.read_bytes()), dtype=torch.uint8)
    frame_bytes = stride * height
    assert data.numel() % frame_bytes == 0, "reference output is not a whole number of frames"
    rows = data.view(-1, height, stride)[:, :, : width * 3]
    return rows.reshape(-1, height, width, 3)


def damage(path: Path, out: Path, fraction: float = 0.05, seed: int = 7) -> Path:
    """Overwrite ``fraction`` of a file, in its middle, with random bytes (a damaged download or disk)."""
    data = bytearray(path.read_bytes())
    start, nbytes = len(data) // 2, int(len(data) * fraction)
    data[start : start + nbytes] = torch.randint(0, 256, (nbytes,), generator=torch.Generator().manual_seed(seed),
                                                 dtype=torch.uint8).numpy().tobytes()  # fmt: skip
    out.write_bytes(bytes(data))
    return out


def rotate_mp4(path: Path, out: Path) -> Path:
    """Copy an MP4 and set its video track's matrix to a 90° rotation, as phones write it."""
    data = bytearray(path.read_bytes())
    tkhd = data.find(b"tkhd")
    assert tkhd > 0 and data[tkhd + 4] == 0, "expected a version-0 tkhd box"
    matrix = tkhd + 4 + 4 + 5 * 4 + 8 + 8  # version/flags, times, track id, reserved, duration, reserved, layer...
    data[matrix : matrix + 36] = struct.pack(">9I", 0, 0x10000, 0, 0xFFFF0000, 0, 0, 0, 0, 0x40000000)
    out.write_bytes(bytes(data))
    return out


def push_frames(path: Path, description: str, buffers) -> Path:
    """Run an ``appsrc name=src ! ...`` pipeline over ``(data, pts_s, duration_s)`` buffers to EOS."""
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    pipeline = Gst.parse_launch(description)
    src = pipeline.get_by_name("src")
    pipeline.set_state(Gst.State.PLAYING)
    for data, pts, duration in buffers:
        buf = Gst.Buffer.new_wrapped(data)
        buf.pts, buf.duration = round(pts * Gst.SECOND), round(duration * Gst.SECOND)
        src.emit("push-buffer", buf)
    src.emit("end-of-stream")
    msg = pipeline.get_bus().timed_pop_filtered(60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    assert msg is not None and msg.type == Gst.MessageType.EOS
    return path


def variable_rate(path: Path, mux: str, durations: list[float]) -> Path:
    """Encode frames that last ``durations`` seconds each (a variable frame rate, as phones record)."""
    starts = [sum(durations[:i]) for i in range(len(durations))]
    buffers = (
        (bytes([i * 4 % 256]) * (160 * 120 * 3 // 2), start, duration)
        for i, (start, duration) in enumerate(zip(starts, durations, strict=True))
    )
    return push_frames(
        path,
        "appsrc name=src format=time caps=video/x-raw,format=I420,width=160,height=120,framerate=0/1 "
        f"! x264enc ! h264parse ! {mux} ! filesink location={path}",
        buffers,
    )


def write_video(path: Path, frames, fps: int = 30) -> Path:
    """Encode ``uint8[H, W, 3]`` RGB frames (tensors) with x264 into an MP4 at ``fps``."""
    height, width = frames[0].shape[:2]
    return push_frames(
        path,
        f"appsrc name=src format=time caps=video/x-raw,format=RGB,width={width},height={height},framerate={fps}/1 "
        f"! videoconvert ! video/x-raw,format=I420 ! {X264} bframes=0 ! h264parse "
        f"! mp4mux ! filesink location={path}",
        ((frame.contiguous().numpy().tobytes(), i / fps, 1 / fps) for i, frame in enumerate(frames)),
    )


def segment(source: Path, path: Path, start: float, *, mirror: bool = False, width: int | None = None) -> Path:
    """``source`` from ``start`` seconds to its end, re-encoded as H.264/MP4 (mirrored left to right and
    scaled to ``width`` pixels wide, keeping the aspect, when asked): a held-out clip made of the same scene."""
    from vidpipe.gst import Gst

    flip = "videoflip method=horizontal-flip ! " if mirror else ""
    scale = f"videoscale ! video/x-raw,width={width},pixel-aspect-ratio=1/1 ! " if width else ""
    pipeline = Gst.parse_launch(
        f"filesrc location={source} ! decodebin ! videoconvert name=convert ! {flip}{scale}"
        f"{X264} ! mp4mux faststart=true ! filesink location={path}"
    )
    pipeline.set_state(Gst.State.PAUSED)
    pipeline.get_state(30 * Gst.SECOND)
    convert = pipeline.get_by_name("convert")  # (seeks the decoding part only: the muxer's segment is in bytes)
    convert.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.ACCURATE, int(start * Gst.SECOND))
    pipeline.set_state(Gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    assert message is not None and message.type == Gst.MessageType.EOS, "the segment was not written"
    return path
