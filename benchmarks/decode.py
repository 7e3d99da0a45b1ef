"""Frames into tensors: ``vidpipe.open`` against ``gst-launch-1.0 ... ! videoconvert ! RGB ! fakesink``.

Runs both on the bundled clip and on a generated 1080p H.264 clip, interleaved for several rounds, and
prints FPS and the ratio vidpipe / gst-launch (best round of each, and median of per-round ratios).
Also times the buffer-to-tensor step alone: the distribution's gst-python overrides map a buffer to a
``memoryview`` (one copy, into the tensor) against PyPI PyGObject's ``bytes`` (two copies), emulated
here with ``Gst.Buffer.extract_dup``.

    python benchmarks/decode.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import SAMPLE, make_1080p

import vidpipe
from vidpipe.gst import Gst
from vidpipe.gst.buffers import BufferReader


def gst_launch_fps(path: Path, frames: int) -> float:
    out = subprocess.run(
        ["gst-launch-1.0", "filesrc", f"location={path}", "!", "decodebin", "!", "videoconvert", "!",
         "video/x-raw,format=RGB", "!", "fakesink"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    h, m, s = re.search(r"Execution ended after (\d+):(\d+):([\d.]+)", out).groups()
    return frames / (int(h) * 3600 + int(m) * 60 + float(s))


def vidpipe_fps(path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    with vidpipe.open(path) as src:
        frames = sum(1 for _ in src)
    return frames / (time.perf_counter() - start), frames


def to_tensor_cost(width: int, height: int, repeats: int = 300) -> tuple[float, float]:
    """Microseconds per frame: memoryview path (vidpipe) and bytes path (PyPI PyGObject)."""
    caps = Gst.Caps.from_string(f"video/x-raw,format=RGB,width={width},height={height},framerate=30/1")
    reader = BufferReader(caps)
    buf = Gst.Buffer.new_wrapped(bytes(reader.stride * height))

    def via_bytes() -> torch.Tensor:
        data = np.frombuffer(buf.extract_dup(0, buf.get_size()), dtype=np.uint8)
        rows = np.lib.stride_tricks.as_strided(data, (height, width, 3), (reader.stride, 3, 1))
        out = torch.empty((height, width, 3), dtype=torch.uint8)
        np.copyto(out.numpy(), rows)
        return out

    costs = []
    for fn in (lambda: reader.to_tensor(buf), via_bytes):
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        costs.append((time.perf_counter() - start) / repeats * 1e6)
    return costs[0], costs[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    clips = {"sample 384x288": SAMPLE, "1080p H.264": make_1080p(Path(tempfile.gettempdir()) / "vidpipe-1080p.mp4")}
    print(f"frames into tensors, {args.rounds} rounds, best round shown\n")
    print(f"{'clip':<16} {'gst-launch FPS':>15} {'vidpipe FPS':>12} {'ratio best':>11} {'ratio median':>13}")
    for name, path in clips.items():
        ours, theirs, ratios = [], [], []
        for _ in range(args.rounds):
            fps, frames = vidpipe_fps(path)
            ref = gst_launch_fps(path, frames)
            ours.append(fps)
            theirs.append(ref)
            ratios.append(fps / ref)
        print(
            f"{name:<16} {max(theirs):>15.1f} {max(ours):>12.1f} {max(ours) / max(theirs):>11.2f} "
            f"{statistics.median(ratios):>13.2f}"
        )
    print("\nbuffer → tensor, µs per frame")
    print(f"{'size':<12} {'memoryview (vidpipe)':>22} {'bytes (PyPI PyGObject)':>24}")
    for width, height in ((384, 288), (1920, 1080)):
        view, copied = to_tensor_cost(width, height)
        print(f"{width}x{height:<7} {view:>22.1f} {copied:>24.1f}")


if __name__ == "__main__":
    main()
