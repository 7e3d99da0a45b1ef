"""Soak: four live RTSP streams for a long time, in this process, watched from inside.

Every ``--every`` seconds after ``--warmup``: RSS, threads, open file descriptors, and the p50/p95
source→result latency of the results of that window. At the end: RSS growth from the first sample
(target < 5 %), the spread of the window p95s, thread and fd counts (target: flat); then opening and
closing a source 200 times in the same process, with fds and threads before and after.

``--kill-every S``: a reconnect storm: the RTSP server is killed every S seconds and started again on
its port a second later, so every stream disconnects and reconnects; the samples then show whether
RSS, threads and fds stay flat across reconnections (and the summary the RSS per reconnection).

    python benchmarks/soak.py [--minutes 20] [--streams 4] [--detect-fps 5] [--kill-every 20]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time

import torch
from _common import ROOT, SAMPLE, rss_mb

import vidpipe
from vidpipe import models
from vidpipe.options import StreamOptions


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    q = torch.tensor(values, dtype=torch.float64).quantile(torch.tensor([0.5, 0.95], dtype=torch.float64))
    return float(q[0]) * 1000, float(q[1]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--detect-fps", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=60, help="seconds before the first sample")
    parser.add_argument("--every", type=float, default=10, help="seconds between samples")
    parser.add_argument("--kill-every", type=float, default=0, help="kill and restart the server every S seconds")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import start_server

    server, url = start_server("--size", "640x360", "--fps", "15")
    detector = models.load("ssd_mobilenet_v2_coco")
    window: list[float] = []
    lock = threading.Lock()

    def on_result(result: vidpipe.Result) -> None:
        with lock:
            window.append(time.time() - result.frame.wall)

    pipeline = vidpipe.Pipeline(
        detector=detector,
        sources=[(f"cam{i}", url) for i in range(args.streams)],
        options=StreamOptions(detect_fps=args.detect_fps),
        on_result=[on_result],
    )
    runner = threading.Thread(target=pipeline.run, name="soak-run")
    runner.start()
    end = time.monotonic() + args.minutes * 60
    servers = [server]
    kills = 0
    storm_over = threading.Event()

    def storm() -> None:  # kill the server, start it again on its port a second later
        nonlocal kills
        port = url.rsplit(":", 1)[1].split("/")[0]
        while not storm_over.wait(args.kill_every):
            servers[-1].kill()
            servers[-1].wait(10)
            servers[-1].stdout.close()  # (the benchmark's own pipe to it)
            kills += 1
            time.sleep(1.0)
            servers.append(start_server("--size", "640x360", "--fps", "15", "--port", port)[0])

    if args.kill_every:
        threading.Thread(target=storm, name="soak-storm", daemon=True).start()
    time.sleep(args.warmup)
    with lock:
        window.clear()
    samples = []
    head = f"{'t (s)':>6} {'RSS MB':>7} {'threads':>7} {'fds':>4} {'results':>7} {'p50 ms':>7} {'p95 ms':>7}"
    print(head, flush=True)
    started = time.monotonic()
    while time.monotonic() < end:
        time.sleep(args.every)
        with lock:
            latencies, window[:] = list(window), []
        p50, p95 = percentiles(latencies)
        sample = (time.monotonic() - started, rss_mb(), threading.active_count(), fds(), len(latencies), p50, p95)
        samples.append(sample)
        t, rss, threads_now, fds_now, count = sample[:5]
        print(f"{t:>6.0f} {rss:>7.1f} {threads_now:>7} {fds_now:>4} {count:>7} {p50:>7.0f} {p95:>7.0f}", flush=True)
    storm_over.set()
    pipeline.stop()
    runner.join(60)
    for each in servers:
        each.kill()
    first, last = samples[0], samples[-1]
    p95s = [s[6] for s in samples]
    threads = [s[2] for s in samples]
    open_fds = [s[3] for s in samples]
    growth = (last[1] / first[1] - 1) * 100
    print(f"\nstreams {args.streams}, --detect-fps {args.detect_fps:g}, {args.minutes:g} min, {len(samples)} samples")
    print(f"RSS {first[1]:.1f} -> {last[1]:.1f} MB ({growth:+.1f} %), max {max(s[1] for s in samples):.1f}")
    print(f"threads {min(threads)}..{max(threads)}, fds {min(open_fds)}..{max(open_fds)}")
    median = sorted(p95s)[len(p95s) // 2]
    print(f"window p95 latency: min {min(p95s):.0f} ms, median {median:.0f} ms, max {max(p95s):.0f} ms")
    for s in pipeline.stats.streams.values():
        print(f"  {s.name}: {s.frames} frames, dropped {s.dropped}, reconnects {s.reconnects}")
    reconnects = sum(s.reconnects for s in pipeline.stats.streams.values())
    if kills:
        per = (last[1] - first[1]) / max(reconnects, 1)
        print(f"server killed {kills} times, {reconnects} reconnections: RSS {per:+.2f} MB per reconnection")
    gc.collect()
    before = (fds(), threading.active_count(), rss_mb())
    for _ in range(200):
        vidpipe.open(SAMPLE).close()
    gc.collect()
    after = (fds(), threading.active_count(), rss_mb())
    print(f"200 open/close: fds {before[0]} -> {after[0]}, threads {before[1]} -> {after[1]}, "
          f"RSS {before[2]:.1f} -> {after[2]:.1f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
