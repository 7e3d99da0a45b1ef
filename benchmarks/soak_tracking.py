"""Soak of the analytics stages: tracker, line and zone counters fed for hours of video time, watched for
memory and state growth, and checked against the truth of the simulated scene.

Each stream has 8 objects (60x150 boxes) walking left to right across a 640x480 frame at their own
speeds, each pass on a new row; every object vanishes for half a second now and then (an occlusion)
and after each pass waits a little before its next one. The truth is known: every pass crosses the
line x=320 once, "out" (counted here where the counter confirms it: the third frame past the line or
10 px past it), and enters and leaves the zone (the frame's left half) once. Prints, every
``--every`` frames per stream: RSS, the tracker's live tracks, the counters' remembered tracks, counts
against the truth. The stages run as the pipeline runs them (in one thread, each stream in order).

    python benchmarks/soak_tracking.py [--frames 108000] [--streams 2]
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from _common import rss_mb

from vidpipe.analytics import LineCounter, Tracker, ZoneCounter
from vidpipe.types import Detections, Frame, Result

FPS = 30.0
BLANK = torch.zeros((480, 640, 3), dtype=torch.uint8)


class Walker:
    def __init__(self, rng: random.Random, row: int) -> None:
        self.rng, self.row = rng, row
        self.passes = 0
        self.crossed = 0  # passes confirmed past the line: 3 frames beyond it or 10 px past it
        self.start_pass()

    def start_pass(self) -> None:
        self.x = -40.0
        self.y = 170.0 + 40 * self.row + self.rng.uniform(-10, 10)
        self.speed = self.rng.uniform(3.0, 7.0)
        self.hidden = 0
        self.wait = self.rng.randint(5, 60)
        self.beyond = 0  # frames past the line in this pass

    def step(self) -> list[float] | None:
        if self.wait > 0:
            self.wait -= 1
            return None
        self.x += self.speed
        if self.x > 320 and self.beyond >= 0:
            self.beyond += 1
            if self.beyond == 3 or self.x >= 330:
                self.crossed += 1
                self.beyond = -1  # counted for this pass
        if self.x > 680:
            self.passes += 1
            self.start_pass()
            return None
        if self.hidden > 0:
            self.hidden -= 1
            return None
        if 100 < self.x < 540 and abs(self.x - 320) > 40 and self.rng.random() < 0.004:
            self.hidden = 15  # occluded for half a second (not on the line)
        return [self.x - 30, self.y - 150, self.x + 30, self.y]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=108_000, help="frames per stream (108000: an hour at 30 fps)")
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--every", type=int, default=18_000)
    args = parser.parse_args()
    rng = random.Random(7)
    streams = [f"cam{i}" for i in range(args.streams)]
    walkers = {s: [Walker(rng, row) for row in range(8)] for s in streams}
    tracker = Tracker()
    lines = LineCounter(["mid=320,0,320,480"])
    zones = ZoneCounter(["left=0,0,320,0,320,480,0,480"])
    print(f"{'frames':>8} {'RSS MB':>7} {'tracks':>6} {'line mem':>8} {'zone mem':>8} "
          f"{'out':>6} {'truth':>6} {'entered':>7} {'ms/frame':>8}")  # fmt: skip
    started, first_rss = time.perf_counter(), None
    for index in range(args.frames):
        for stream in streams:
            boxes = [b for b in (w.step() for w in walkers[stream]) if b is not None]
            n = len(boxes)
            found = Detections(
                torch.tensor(boxes, dtype=torch.float32).reshape(n, 4), torch.full((n,), 0.9),
                torch.ones(n, dtype=torch.int64), ["person"] * n,
            )  # fmt: skip
            zones(lines(tracker(Result(Frame(BLANK, index, index / FPS, stream), found))))
        if (index + 1) % args.every == 0:
            rss = rss_mb()
            first_rss = first_rss or rss
            truth = sum(w.crossed for ws in walkers.values() for w in ws)
            live = sum(len(t.tracker.tracks) for t in tracker._streams.values())
            line_mem = sum(len(s.tracks) for s in lines._states)
            zone_mem = sum(len(s.tracks) for s in zones._states)
            counts, entered = lines.totals()["mid"], zones.totals()["left"]["entered"]
            per_frame = (time.perf_counter() - started) / ((index + 1) * len(streams)) * 1000
            print(f"{index + 1:>8} {rss:>7.1f} {live:>6} {line_mem:>8} {zone_mem:>8} {counts['out']:>6} "
                  f"{truth:>6} {entered:>7} {per_frame:>8.3f}", flush=True)  # fmt: skip
    truth = sum(w.crossed for ws in walkers.values() for w in ws)
    passes = sum(w.passes for ws in walkers.values() for w in ws)
    counts = lines.totals()["mid"]
    print(f"\n{args.streams} streams x {args.frames} frames ({args.frames / FPS / 3600:.2f} h of video each): "
          f"RSS {first_rss:.1f} -> {rss_mb():.1f} MB; crossings out {counts['out']} (truth {truth}), in "
          f"{counts['in']} (truth 0); {passes} passes, unique tracks {sum(tracker.tracks.values())}")  # fmt: skip


if __name__ == "__main__":
    main()
