"""Test media made with real GStreamer encoders and muxers, and reference decodes made by gst-launch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

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
    result = subprocess.run(
        ["gst-launch-1.0", "-q", *description.split()], capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"gst-launch-1.0 {description} failed:\n{result.stdout}\n{result.stderr}")


def encode(path: Path, chain: str, width: int, height: int, frames: int = 30, pattern: str = "ball") -> Path:
    gst_launch(
        f"videotestsrc num-buffers={frames} pattern={pattern} ! "
        f"video/x-raw,width={width},height={height},framerate=30/1 ! videoconvert ! {chain} ! "
        f"filesink location={path}"
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
