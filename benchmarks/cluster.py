"""One process against a local Ray with 1 and 2 workers, side by side, interleaved:

(a) ``vidpipe detect`` with N streams of the bundled clip (``--max-frames F`` each) in one process
(b) the same with ``--cluster ray --workers 1`` (one actor of 1 CPU core)
(b2) ``--workers 1 --cpus-per-worker 2`` (one actor with both cores: Ray's own cost, compute equal to (a))
(c) ``--cluster ray --workers 2`` (two actors of 1 core each)

Each run's FPS is its own summary's (frames from the first result to the last; model loads and Ray's
start apart), and the whole command's wall time is shown too. The records' size is measured from the
JSON Lines (what crosses the object store per result).

    python benchmarks/cluster.py [--streams 4] [--frames 300] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import SAMPLE

VIDPIPE = str(Path(sys.executable).with_name("vidpipe"))


def run(args: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    result = subprocess.run([VIDPIPE, "detect", *args], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    match = re.search(r"frames\s+(\d+) in ([\d.]+) s", result.stderr)
    return int(match.group(1)) / float(match.group(2)), wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp()) / "out.jsonl"
    common = [*(f"s{i}={SAMPLE}" for i in range(args.streams)), "--max-frames", str(args.frames), "--json", str(out)]
    rows = {
        "(a) one process": [],
        "(b) Ray, 1 worker": ["--cluster", "ray", "--workers", "1"],
        "(b2) 1 worker, 2 cores": ["--cluster", "ray", "--workers", "1", "--cpus-per-worker", "2"],
        "(c) Ray, 2 workers": ["--cluster", "ray", "--workers", "2"],
    }
    figures: dict[str, list[tuple[float, float]]] = {key: [] for key in rows}
    for _ in range(args.rounds):
        for key, extra in rows.items():
            figures[key].append(run(common + extra))
    lines = [line for line in out.read_text().splitlines() if '"detections"' in line]
    size = sum(len(line) + 1 for line in lines) / len(lines)
    base = max(fps for fps, _ in figures["(a) one process"])
    print(f"{args.streams} streams × {args.frames} frames of the bundled clip; best of {args.rounds} rounds; "
          f"{os.cpu_count()} cores")  # fmt: skip
    print(f"{'run':<22} {'FPS':>7} {'ratio':>6} {'command wall s':>15}")
    for key, values in figures.items():
        fps = max(v[0] for v in values)
        wall = min(v[1] for v in values)
        print(f"{key:<22} {fps:7.1f} {fps / base:6.2f} {wall:15.1f}")
    one_fps = base
    ray1 = max(v[0] for v in figures["(b2) 1 worker, 2 cores"])
    print(f"record size: {size:.0f} bytes per result (JSON; the pickled dict is of the same order)")
    print(f"Ray's cost per result (b2 against a): {1000 / ray1 - 1000 / one_fps:+.2f} ms "
          f"({1000 / ray1:.2f} vs {1000 / one_fps:.2f} ms per frame)")  # fmt: skip


if __name__ == "__main__":
    main()
