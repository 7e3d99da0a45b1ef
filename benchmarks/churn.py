"""Churn: streams added to and removed from one running pipeline, over and over, while two other live
streams keep running in it.

One pipeline (``keep_alive=True``), two live streams that stay (test patterns, 640×360 at 15 fps,
``detect_fps`` 5), then ``--files`` cycles of: add a file stream, wait for its first result, remove it
(its outputs finalised); then ``--rtsp`` cycles of the same with an RTSP stream from the project's test
server. Reports fds and threads before and after (target: back to their start), RSS growth per 1,000
cycles after a warm-up (target: under 5 MB), and the staying streams' longest gap between results
(target: under 1 s), side by side for the two kinds. ``--guarded``: each added stream with a privacy
region, a blurred label, a line (with tracking) and motion gating on (the per-stream state those keep);
``--guarded motion,lines``: some of them.

    python benchmarks/churn.py [--files 1000] [--rtsp 100] [--warmup 50] [--guarded [privacy,blur,lines,motion]]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
from pathlib import Path

from _common import ROOT, rss_mb

import vidpipe
from vidpipe import models
from vidpipe.memory import trim_heap
from vidpipe.sinks import JsonlSink

STAY = "testsrc://ball?width=640&height=360&fps=15&frames=100000000&live=1"


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def tasks() -> int:
    """Every thread of the process, GStreamer's and OpenMP's included (``threads`` counts Python's)."""
    return len(os.listdir("/proc/self/task"))


def settled_rss(samples: int = 5) -> float:
    """RSS without the heap's swings: the lowest of a few readings, each after a collection and a trim
    (a single reading was seen 20 MB above the floor it returned to)."""
    readings = []
    for _ in range(samples):
        gc.collect()
        trim_heap()
        readings.append(rss_mb())
        time.sleep(0.2)
    return min(readings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rtsp", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=50, help="cycles before the first RSS reading")
    parser.add_argument("--out", default=str(ROOT / "out" / "churn"))
    parser.add_argument(
        "--guarded",
        nargs="?",
        const="privacy,blur,lines,motion",
        default="",
        help="options on each added stream, of privacy,blur,lines,motion (default: all)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import start_server

    from media import encode

    os.makedirs(args.out, exist_ok=True)
    clip = encode(Path(args.out) / "clip.mp4", "x264enc ! h264parse ! mp4mux", 320, 240, frames=30)
    server, url = start_server("--size", "320x240", "--fps", "15")
    detector = models.load("ssd_mobilenet_v2_coco")
    last: dict[str, float] = {}
    gaps: dict[str, float] = {"stay0": 0.0, "stay1": 0.0}
    firsts: dict[str, threading.Event] = {}
    lock = threading.Lock()

    def on_result(result: vidpipe.Result) -> None:
        stream, now = result.frame.stream, time.monotonic()
        with lock:
            if stream in gaps and stream in last and measuring.is_set():
                gaps[stream] = max(gaps[stream], now - last[stream])
            last[stream] = now
            if stream in firsts:
                firsts[stream].set()

    measuring = threading.Event()
    pipeline = vidpipe.Pipeline(
        detector=detector, keep_alive=True, on_result=[on_result], sinks=[JsonlSink(os.path.join(args.out, "o.jsonl"))]
    )
    pipeline.start()
    for name in gaps:
        pipeline.add_stream(STAY, name, detect_fps=5)
    time.sleep(5)
    measuring.set()

    options = {"privacy": ["rel:0,0,0.3,0,0.3,0.3,0,0.3"], "blur": ["person"], "lines": ["mid=rel:0.5,0,0.5,1"],
               "motion": {"mode": "on", "masks": ["rel:0.7,0,1,0,1,0.1,0.7,0.1"]}}  # fmt: skip
    extra = {key: options[key] for key in filter(None, args.guarded.split(","))}
    if "lines" in extra:
        extra["track"] = True

    def cycles(kind: str, source: str, count: int) -> dict:
        for stay in gaps:
            gaps[stay] = 0.0
        readings = []
        started = time.monotonic()
        for i in range(count + args.warmup):
            firsts["churn"] = threading.Event()
            pipeline.add_stream(source, "churn", **extra)
            if not firsts["churn"].wait(30):
                print(f"{kind} cycle {i}: no result within 30 s", flush=True)
            pipeline.remove_stream("churn")
            if i + 1 == args.warmup:
                readings.append((settled_rss(), fds(), threading.active_count(), time.monotonic()))
            if (i + 1) % 100 == 0:
                print(f"  {kind}: {i + 1} cycles, RSS {rss_mb():.1f} MB, fds {fds()}, threads "
                      f"{threading.active_count()} (native {tasks()})", flush=True)  # fmt: skip
        time.sleep(1.0)
        readings.append((settled_rss(), fds(), threading.active_count(), time.monotonic()))
        (rss0, fds0, threads0, _t0), (rss1, fds1, threads1, t1) = readings
        return {
            "kind": kind, "cycles": count, "seconds": t1 - started, "rss": (rss0, rss1),
            "per_1000": (rss1 - rss0) / count * 1000, "fds": (fds0, fds1), "threads": (threads0, threads1),
            "gap": max(gaps.values()),
        }  # fmt: skip

    rows = [cycles(kind, source, count) for kind, source, count in (("file", str(clip), args.files),
                                                                     ("rtsp", url, args.rtsp)) if count]  # fmt: skip
    pipeline.stop()
    pipeline.wait(60)
    server.kill()
    print(f"\n{'kind':<5} {'cycles':>6} {'s/cycle':>8} {'RSS MB (after warm-up -> end)':>30} {'MB/1000':>8} "
          f"{'fds':>9} {'threads':>8} {'longest gap of the others':>26}")  # fmt: skip
    for r in rows:
        print(f"{r['kind']:<5} {r['cycles']:>6} {r['seconds'] / (r['cycles'] + args.warmup):>8.2f} "
              f"{r['rss'][0]:>14.1f} -> {r['rss'][1]:<13.1f} {r['per_1000']:>8.1f} {r['fds'][0]:>4}->{r['fds'][1]:<4} "
              f"{r['threads'][0]:>3}->{r['threads'][1]:<4} {r['gap'] * 1000:>23.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
