"""Many streams: one process batching across streams against separate processes, and how many live
RTSP streams this machine keeps up with.

(1) N files (the first ``--frames`` frames of the bundled clip) in one ``vidpipe detect`` process
    (cross-stream batching, one copy of the model) against N ``vidpipe detect`` processes started
    together: aggregate FPS side by side, for N = 1, 2, 4, 8. A process's FPS is its own summary's
    (frames over its pipeline's wall time); the N processes' aggregate is all their frames over the
    longest of their wall times.
(2) Live: N RTSP clients of the project's test server (640×360 at 15 fps H.264 on 127.0.0.1) in one
    ``vidpipe detect`` for ``--seconds`` each, with ``--detect-fps 5`` and at full rate; per run: the
    slowest stream's frames against the expected count (starved below 80 %), the worst p95
    source→result latency, frames dropped. It stops growing N after the first run that misses
    p95 ≤ 1 s or starves a stream.

    python benchmarks/streams.py [--frames 150] [--seconds 30] [--files-only | --live-only]
                                 [--streams 16,24,32,40] [--no-full-rate]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, SAMPLE, gst_launch

VIDPIPE = str(Path(sys.executable).with_name("vidpipe"))
SERVER = ROOT / "tests" / "rtsp_server.py"
ROW = re.compile(r"^\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+) / (\S+)\s+(\w+)$")


def summary_fps(stderr: str) -> tuple[int, float]:
    match = re.search(r"frames\s+(\d+) in ([\d.]+) s", stderr)
    if match is None:
        raise RuntimeError(f"no summary in:\n{stderr}")
    return int(match.group(1)), float(match.group(2))


def files(clip: Path, counts: list[int]) -> None:
    print("\n(1) files: one process batching across streams vs separate processes (aggregate FPS)")
    print(f"{'streams':>8} {'one process':>12} {'processes':>10} {'ratio':>6}")
    for n in counts:
        one = subprocess.run([VIDPIPE, "detect", *[str(clip)] * n], capture_output=True, text=True)
        frames, wall = summary_fps(one.stderr)
        together = frames / wall
        procs = [subprocess.Popen([VIDPIPE, "detect", str(clip)], stderr=subprocess.PIPE, text=True) for _ in range(n)]
        results = [summary_fps(p.communicate()[1]) for p in procs]
        apart = sum(f for f, _ in results) / max(w for _, w in results)
        print(f"{n:>8} {together:>12.1f} {apart:>10.1f} {together / apart:>6.2f}", flush=True)


def start_server() -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, str(SERVER), "--size", "640x360", "--fps", "15"], stdout=subprocess.PIPE, text=True
    )
    line = server.stdout.readline().split()
    return server, f"rtsp://127.0.0.1:{line[1]}/test"


def live_run(url: str, n: int, seconds: float, detect_fps: float | None, extra: list[str] = ()) -> dict:
    args = [VIDPIPE, "detect", *[f"s{i}={url}" for i in range(n)], *extra]
    if detect_fps:
        args += ["--detect-fps", str(detect_fps)]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    time.sleep(seconds)
    proc.send_signal(2)
    _, stderr = proc.communicate(timeout=120)
    rows = [ROW.match(line) for line in stderr.splitlines()]
    rows = [m for m in rows if m and m.group(1) != "total"]
    if len(rows) != n:
        raise RuntimeError(f"expected {n} stream rows:\n{stderr}")
    expected = (detect_fps or 15) * seconds
    return {
        "streams": n,
        "min_share": min(int(m.group(2)) for m in rows) / expected,
        "p95_max": max(float(m.group(7)) for m in rows),
        "p50_max": max(float(m.group(6)) for m in rows),
        "dropped": sum(int(m.group(3)) for m in rows),
        "frames": sum(int(m.group(2)) for m in rows),
    }


def live(seconds: float, plans: dict[str, tuple[float | None, list[int]]], extra: list[str] = ()) -> None:
    server, url = start_server()
    try:
        for title, (detect_fps, counts) in plans.items():
            print(f"\n(2) live RTSP 640x360@15, {title}, {seconds:g} s per run")
            head = f"{'streams':>8} {'frames':>7} {'slowest/expected':>17} {'p50 ms':>7} {'p95 ms':>7} {'dropped':>8}"
            print(head + "  ok")
            for n in counts:
                r = live_run(url, n, seconds, detect_fps, extra)
                ok = r["p95_max"] <= 1000 and r["min_share"] >= 0.8
                print(
                    f"{n:>8} {r['frames']:>7} {r['min_share']:>17.2f} {r['p50_max']:>7.0f} {r['p95_max']:>7.0f} "
                    f"{r['dropped']:>8}  {'yes' if ok else 'no'}",
                    flush=True,
                )
                if not ok:
                    break
    finally:
        server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150, help="frames per file stream")
    parser.add_argument("--seconds", type=float, default=30, help="length of each live run")
    parser.add_argument("--files-only", action="store_true")
    parser.add_argument("--live-only", action="store_true")
    parser.add_argument("--streams", default="4,8,12,16", help="live stream counts at --detect-fps 5 (comma-separated)")
    parser.add_argument("--no-full-rate", action="store_true", help="leave out the live runs at full rate")
    parser.add_argument("--extra", default="", help="more vidpipe detect arguments, e.g. '--precision int8'")
    args = parser.parse_args()
    with open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    print(f"CPU: {model}")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        gst_launch(
            f"filesrc location={SAMPLE} ! decodebin ! identity eos-after={args.frames} ! videoconvert ! "
            f"x264enc speed-preset=veryfast ! mp4mux faststart=true ! filesink location={clip}"
        )
        if not args.live_only:
            files(clip, [1, 2, 4, 8])
    if not args.files_only:
        plans = {"--detect-fps 5": (5.0, [int(n) for n in args.streams.split(",")])}
        if not args.no_full_rate:
            plans["full rate (15 fps)"] = (None, [1, 2, 3, 4])
        live(args.seconds, plans, args.extra.split())


if __name__ == "__main__":
    main()
