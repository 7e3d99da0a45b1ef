"""What tracking and counting cost: the same crowded clip detected plain, with ``--track``, and with
``--track`` plus a line and a zone, in alternating rounds, in one run.

The clip: 8 people (a person cut out of the bundled clip) walking in two rows in opposite directions
over an empty frame of it, 300 frames at 384x288 (made once, next to the system's temp files).
Prints FPS of each variant (median of the rounds), the time per frame each adds (median of the rounds'
ratios; target for ``--track``: under 5 %), and the stages' own cost in ms per frame (they run in the
output thread, beside inference).
``--objects 8,30,60``: then, the tracker stage alone on N synthetic boxes moving in rows, 300 frames,
with ByteTrack's own Kalman filters and with vidpipe's batched ones (``vidpipe/analytics/kalman.py``).

    python benchmarks/tracking.py [--frames 300] [--rounds 4] [--objects 8,30,60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT

sys.path.insert(0, str(ROOT / "tests"))
import numpy as np
import scenes  # the test footage generator
import torch

import vidpipe
from vidpipe import models
from vidpipe.analytics import Tracker
from vidpipe.sinks import JsonlSink
from vidpipe.types import Detections, Frame, Result


def crowd(path: Path, frames: int) -> Path:
    """8 walkers: 4 to the right along y=270, 4 to the left along y=150, wrapping around the frame."""
    if path.exists():
        return path
    paths = []
    for row, (y, speed) in enumerate(((270, 2.0), (150, -2.0))):
        for k in range(4):
            start = 20 + k * 96 + row * 48
            paths.append([((start + speed * i) % 420 - 18, y) for i in range(frames)])
    return scenes.scene(path, paths)


VARIANTS = {
    "detect": {},
    "detect --track": {"track": True},
    "detect --track --line --zone": {"lines": ["mid=192,0,192,288"], "zones": ["left=0,100,150,100,150,288,0,288"]},
}


def run(det, clip: Path, variant: dict) -> tuple[float, float, int]:
    out = Path(tempfile.gettempdir()) / "vidpipe-bench-tracking.jsonl"
    start = time.perf_counter()
    pipeline = vidpipe.Pipeline(clip, det, sinks=[JsonlSink(out)], classes=["person"], **variant)
    stats = pipeline.run()
    fps = stats.frames / (time.perf_counter() - start)
    stage_ms = statistics.median(stats.samples["stages"]) if stats.samples["stages"] else 0.0
    return fps, stage_ms, sum(stats.labels.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--objects", type=lambda text: [int(n) for n in text.split(",")], default=[])
    args = parser.parse_args()
    clip = crowd(Path(tempfile.gettempdir()) / f"vidpipe-crowd-{args.frames}.mp4", args.frames)
    det = models.load(models.DEFAULT_MODEL, precision="auto")
    print(f"clip: {args.frames} frames, 8 walkers; model {det.name} {det.precision}; {args.rounds} rounds")
    fps: dict[str, list[float]] = {name: [] for name in VARIANTS}
    stage: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, variant in VARIANTS.items():
            rate, stage_ms, found = run(det, clip, variant)
            fps[name].append(rate)
            stage[name].append(stage_ms)
    print(f"detections per frame: {found / args.frames:.1f}")
    for name in VARIANTS:
        rate = statistics.median(fps[name])
        # each round's variants ran back to back: the ratio within a round cancels the machine's drift
        ratios = [p / r - 1 for p, r in zip(fps["detect"], fps[name], strict=True)]
        added = "" if name == "detect" else f"  {statistics.median(ratios) * 100:+5.1f} % time per frame"
        stages = f", stages {statistics.median(stage[name]):.2f} ms/frame" if name != "detect" else ""
        print(f"{name:<29} {rate:6.1f} FPS{added}{stages}")
    print("(the stages run in the output thread, beside inference; the target for --track is under 5 %)")
    for count in args.objects:
        print(stage_only(count))


def stage_only(count: int, frames: int = 300, passes: int = 3) -> str:
    """ms/frame of the tracker stage alone on ``count`` boxes moving in 6 rows: ByteTrack with its own
    Kalman filters against vidpipe's batched ones (best of ``passes``, alternating)."""
    from trackers import ByteTrackTracker

    rng = np.random.default_rng(0)
    blank = torch.zeros((480, 640, 3), dtype=torch.uint8)
    results = []
    for i in range(frames):
        xy = [((20 + 40 * k + 2 * i) % 1800, 50 + (k % 6) * 70 + rng.normal(0, 1)) for k in range(count)]
        boxes = torch.tensor([[x, y, x + 30, y + 60] for x, y in xy], dtype=torch.float32)
        found = Detections(boxes, torch.full((count,), 0.9), torch.ones(count, dtype=torch.int64), ["person"] * count)
        results.append(Result(Frame(blank, i, i / 30), found))
    best = {"ByteTrack's filters": float("inf"), "batched filters": float("inf")}
    for _ in range(passes):
        for name in best:
            tracker = Tracker()
            if name == "ByteTrack's filters":
                tracker._make = lambda **settings: ByteTrackTracker(**settings)
            start = time.perf_counter()
            for result in results:
                tracker(result)
            best[name] = min(best[name], (time.perf_counter() - start) / frames * 1e3)
    times = ", ".join(f"{name} {ms:.3f}" for name, ms in best.items())
    return f"tracker alone, {count} objects: {times} ms/frame"


if __name__ == "__main__":
    main()
