"""What tracking and counting cost: the same crowded clip detected with and without ``--track`` (plus a
line and a zone), in alternating rounds, in one run.

The clip: 8 people (a person cut out of the bundled clip) walking in two rows in opposite directions
over an empty frame of it, 300 frames at 384x288 (made once, next to the system's temp files).
Prints FPS of each variant (median of the rounds), the time per frame added by tracking (target: under
5 %), and the stage's own cost in ms per frame (it runs in the output thread, beside inference).

    python benchmarks/tracking.py [--frames 300] [--rounds 4]
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
import scenes  # the test footage generator

import vidpipe
from vidpipe import models
from vidpipe.sinks import JsonlSink


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


def run(det, clip: Path, track: bool) -> tuple[float, float, int]:
    out = Path(tempfile.gettempdir()) / "vidpipe-bench-tracking.jsonl"
    extra = {"lines": ["mid=192,0,192,288"], "zones": ["left=0,100,150,100,150,288,0,288"]} if track else {}
    start = time.perf_counter()
    pipeline = vidpipe.Pipeline(clip, det, sinks=[JsonlSink(out)], classes=["person"], track=track, **extra)
    stats = pipeline.run()
    fps = stats.frames / (time.perf_counter() - start)
    stage_ms = statistics.median(stats.samples["stages"]) if stats.samples["stages"] else 0.0
    return fps, stage_ms, sum(stats.labels.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    clip = crowd(Path(tempfile.gettempdir()) / f"vidpipe-crowd-{args.frames}.mp4", args.frames)
    det = models.load(models.DEFAULT_MODEL, precision="auto")
    print(f"clip: {args.frames} frames, 8 walkers; model {det.name} {det.precision}; {args.rounds} rounds")
    results = {False: [], True: []}
    stage = []
    for _ in range(args.rounds):
        for track in (False, True):
            fps, stage_ms, found = run(det, clip, track)
            results[track].append(fps)
            if track:
                stage.append(stage_ms)
    plain, tracked = statistics.median(results[False]), statistics.median(results[True])
    print(f"detections per frame: {found / args.frames:.1f}")
    print(f"detect                       {plain:6.1f} FPS")
    print(f"detect --track --line --zone {tracked:6.1f} FPS")
    print(f"time per frame added by tracking and counting: {(plain / tracked - 1) * 100:+.1f} %")
    print(f"tracker + line + zone stage: {statistics.median(stage):.2f} ms per frame (in the output thread)")


if __name__ == "__main__":
    main()
