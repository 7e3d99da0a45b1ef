"""What the motion gate costs per frame, against what a gated frame saves.

(1) The detector alone on the small grey frame (160×90 from 640×360), per frame.
(2) Reading a still 640×360 H.264 clip (900 frames) at --detect-fps-like 5 of 15 fps, as fast as it
    decodes: CPU seconds of the whole read with the gate on (nearly every frame held back: no RGB
    conversion, no copy into Python) and off (every frame converted to RGB and copied), side by side.

    python benchmarks/motion.py
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import gst_launch

import vidpipe
from vidpipe.analytics.motion import MotionDetector
from vidpipe.options import MotionOptions


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def detector_cost(frames: int = 2000) -> float:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (90, 160)).astype(np.uint8)
    detector = MotionDetector(25, 0.002)
    noisy = [np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8) for _ in range(16)]
    start = time.perf_counter()
    for i in range(frames):
        detector(noisy[i % 16])
    return (time.perf_counter() - start) / frames


def read_cost(clip: Path, motion: MotionOptions) -> tuple[float, int, int]:
    start = cpu()
    frames = gated = 0
    with vidpipe.open(clip, max_fps=5, motion=motion) as source:
        for frame in source:
            frames += 1
            gated += frame.gated
    return cpu() - start, frames, gated


def main() -> None:
    with open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    print(f"CPU: {model}")
    print(f"(1) motion detector on 160x90: {detector_cost() * 1e6:.1f} µs a frame")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "still.mp4"
        gst_launch(
            "videotestsrc pattern=colors num-buffers=900 ! video/x-raw,width=640,height=360,framerate=15/1 ! "
            f"x264enc speed-preset=veryfast ! mp4mux ! filesink location={clip}"
        )
        read_cost(clip, MotionOptions(mode="off"))  # warm-up
        print("(2) a still 640x360 clip, 900 frames at 15 fps, 5 a second kept: CPU seconds of the read")
        results = {}
        for mode in ("off", "on", "off", "on"):
            seconds, frames, gated = read_cost(clip, MotionOptions(mode=mode))
            results.setdefault(mode, []).append(seconds)
            print(f"  gate {mode:<3}: {seconds:.3f} s CPU, {frames} frames, {gated} gated")
        off, on = min(results["off"]), min(results["on"])
        print(f"  gate on / off: {on / off:.2f}")


if __name__ == "__main__":
    main()
