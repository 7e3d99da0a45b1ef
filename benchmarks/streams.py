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

(3) Motion gating (``--mixed``): RTSP cameras of a still scene with a ticking clock (masked) and busy
    ones at ``--detect-fps 5``. Busy (``--busy``) is ``scene``: the bundled clip (people walking) at the
    still cameras' size, rate and encoder settings, the same view the still cameras show empty; or
    ``pattern``: the moving test pattern. First the cost of a camera (``--cost-streams`` K, 0: none): the
    CPU cores that K more cameras of a kind add (runs with K, then 2K of them alone), per camera, after
    a warm-up; the process's fixed cost (the model, the threads) is no camera's. Their ratio: what an
    idle camera costs of a busy one. Then STILL+BUSY cameras with the defaults (``--motion auto``: on for
    live streams) and with ``--motion off``: per group the slowest stream's results against the
    expected count, p95 latency, gated frames.

    python benchmarks/streams.py [--frames 150] [--seconds 30] [--files-only | --live-only]
                                 [--streams 16,24,32,40] [--no-full-rate]
                                 [--mixed 26,6 [--cost-streams 6] [--busy scene|pattern]]
"""

from __future__ import annotations

import argparse
import json
import os
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


WARMUP = 10.0  # seconds before the CPU is counted (the model loads, the streams connect)
CLOCK_MASK = "0,0,176,0,176,48,0,48"  # the still cameras' clock (tests/rtsp_server.py CLOCK_BOX), with a margin


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gated_run(base: str, still: int, busy: int, seconds: float, extra: list[str] = (), busy_path: str = "clip") -> dict:
    """STILL and BUSY cameras in one ``vidpipe detect --detect-fps 5`` for WARMUP + ``seconds``: per group,
    the slowest stream's results of frames that arrived in the measured window (after the warm-up, less
    the last second: the latency bound) against 5 a second, p95 latency, frames gated, live drops; and
    the CPU cores the process used in the window."""
    names = [f"still{i}={base}/still" for i in range(still)] + [f"busy{i}={base}/{busy_path}" for i in range(busy)]
    with tempfile.TemporaryDirectory() as tmp:
        summary, lines = Path(tmp) / "summary.json", Path(tmp) / "results.jsonl"
        args = [VIDPIPE, "detect", *names, "--detect-fps", "5", "--motion-mask", CLOCK_MASK, "--summary", str(summary)]
        args += ["--json", str(lines)]
        proc = subprocess.Popen([*args, *extra], stderr=subprocess.PIPE, text=True)
        time.sleep(WARMUP)
        cpu0, t0, wall0 = cpu_seconds(proc.pid), time.monotonic(), time.time()
        time.sleep(seconds)
        cores = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
        wall1 = time.time() - 1.0
        proc.send_signal(2)
        _, stderr = proc.communicate(timeout=120)
        if not summary.exists():
            raise RuntimeError(f"no summary:\n{stderr}")
        streams = json.loads(summary.read_text())["streams"]
        window: dict[str, int] = dict.fromkeys(streams, 0)
        with lines.open() as results:
            for line in results:
                record = json.loads(line)
                if "frame" in record and wall0 <= record["wall"] < wall1:
                    window[record["stream"]] += 1
    expected = 5 * (wall1 - wall0)
    groups = {}
    for group in ("still", "busy"):
        rows = [s for name, s in streams.items() if name.startswith(group)]
        if rows:
            groups[group] = {
                "min_share": min(window[s["name"]] for s in rows) / expected,
                "dropped": sum(s["dropped"] for s in rows),
                "p95_max": max((s["latency_ms"] or {}).get("p95", 0.0) for s in rows),
                "gated": sum(s["gated"] for s in rows) / max(1, sum(s["frames"] for s in rows)),
            }
    return {"cores": cores, "groups": groups}


def camera_cost(base: str, group: str, k: int, seconds: float, extra: list[str], busy_path: str) -> tuple[float, float]:
    """The CPU cores one camera of ``group`` (still or busy) adds, from runs with K then 2K of them, and
    the share of its frames gated (in the 2K run)."""
    runs = []
    for n in (k, 2 * k):
        counts = (n, 0) if group == "still" else (0, n)
        runs.append(gated_run(base, *counts, seconds, extra, busy_path))
    return (runs[1]["cores"] - runs[0]["cores"]) / k, runs[1]["groups"][group]["gated"]


def prepare(tmp: Path) -> tuple[Path, Path]:
    """The still cameras' picture (the bundled clip's first frame) and the busy cameras' clip: the
    bundled clip at 640x360@15 with the still cameras' encoder settings (tests/rtsp_server.py)."""
    picture, clip = tmp / "still.jpg", tmp / "scene.mp4"
    gst_launch(
        f"filesrc location={SAMPLE} ! decodebin ! videoconvert ! jpegenc snapshot=true ! filesink location={picture}"
    )
    gst_launch(
        f"filesrc location={SAMPLE} ! decodebin ! videoconvert ! videoscale ! videorate "
        "! video/x-raw,format=I420,width=640,height=360,framerate=15/1 "
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! h264parse ! mp4mux "
        f"! filesink location={clip}"
    )
    return picture, clip


def gating(seconds: float, mixed: tuple[int, int], cost_streams: int, busy: str, extra: list[str] = ()) -> None:
    busy_path = "clip" if busy == "scene" else "test"
    with tempfile.TemporaryDirectory() as tmp:
        picture, clip = prepare(Path(tmp))
        served = ["--size", "640x360", "--fps", "15", "--still", str(picture), "--clip", str(clip)]
        server = subprocess.Popen([sys.executable, str(SERVER), *served], stdout=subprocess.PIPE, text=True)
        base = f"rtsp://127.0.0.1:{server.stdout.readline().split()[1]}"
        try:
            k = cost_streams
            print(
                f"\n(3) motion gating, RTSP 640x360@15, --detect-fps 5, busy {busy}: {seconds:g} s after {WARMUP:g} s"
            )
            if k:  # (0: the mixed run only)
                per_idle, idle_gated = camera_cost(base, "still", k, seconds, extra, busy_path)
                per_busy, busy_gated = camera_cost(base, "busy", k, seconds, extra, busy_path)
                print(f"{'camera':>8} {f'CPU cores ({k} -> {2 * k} cameras)':>29} {'gated':>6}")
                print(f"{'still':>8} {per_idle:>29.4f} {idle_gated:>6.0%}")
                print(f"{'busy':>8} {per_busy:>29.4f} {busy_gated:>6.0%}")
                print(f"an idle camera costs {per_idle / per_busy:.1%} of a busy one", flush=True)
            still, active = mixed
            if not still + active:
                return
            print(f"\n{still} still + {active} busy cameras, the defaults (--motion auto) and --motion off:")
            head = f"{'motion':>6} {'group':>6} {'slowest/expected':>17} {'p95 ms':>7} {'gated':>6} {'dropped':>8}"
            print(f"{head} {'cores':>6}  ok")
            for motion in ("auto", "off"):
                r = gated_run(base, still, active, seconds, [*extra, "--motion", motion], busy_path)
                for group, g in r["groups"].items():
                    ok = g["min_share"] >= 0.8 and g["p95_max"] <= 1000
                    print(
                        f"{motion:>6} {group:>6} {g['min_share']:>17.2f} {g['p95_max']:>7.0f} {g['gated']:>6.0%} "
                        f"{g['dropped']:>8} {r['cores']:>6.2f}  {'yes' if ok else 'no'}",
                        flush=True,
                    )
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
    parser.add_argument("--mixed", metavar="STILL,BUSY", help="only the motion-gating runs (3), e.g. 26,6")
    parser.add_argument("--cost-streams", type=int, default=6, help="K: the cost of a camera from K and 2K of a kind")
    parser.add_argument("--busy", choices=("scene", "pattern"), default="scene", help="what the busy cameras show")
    args = parser.parse_args()
    with open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    print(f"CPU: {model}")
    if args.mixed:
        still, busy = (int(v) for v in args.mixed.split(","))
        gating(args.seconds, (still, busy), args.cost_streams, args.busy, args.extra.split())
        return
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
