"""The service over time: ``vidpipe serve`` with N live RTSP streams (the project's test server, 640×360 at
15 fps H.264 on 127.0.0.1) at ``--detect-fps 5``, MQTT on (a real mosquitto), each stream recording JSON
Lines, a further stream added and removed every ``--churn`` seconds, and two browsers' worth of viewers
on the mosaic in every other phase of ``--phase`` seconds.

Reports, side by side: the streams' delivered FPS and the service's CPU use with and without viewers
(the web view's cost); RSS, threads and open files over time (first and last quarter); the longest gap
between consecutive results of the N streams (from their recordings); MQTT messages received.

With ``--cluster ray --workers 2`` the streams run on a local Ray's worker actors (the pictures encoded
there): the figures then add up the service and its workers (Ray's own daemons left out).

    python benchmarks/serve.py [--minutes 10] [--streams 8] [--churn 10] [--phase 60] [--cluster ray --workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import ROOT

sys.path.insert(0, str(ROOT / "tests"))
import itertools

from serve_helpers import Broker, Listener, Served, jsonl
from streams import start_server

TICKS = os.sysconf("SC_CLK_TCK")


def proc_figures(pid: int) -> dict:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {
        "cpu": cpu,
        "rss": int(status["VmRSS"].split()[0]) / 1024,
        "threads": int(status["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def figures_of(pid: int, cluster: bool) -> dict:
    """The service's figures, plus its Ray workers' with ``cluster``."""
    pids = [pid]
    if cluster:
        found = subprocess.run(["pgrep", "-f", "ray::StreamWorker"], capture_output=True, text=True).stdout
        pids += [int(p) for p in found.split()]
    total: dict = {}
    for one in pids:
        try:
            for key, value in proc_figures(one).items():
                total[key] = total.get(key, 0) + value
        except OSError:
            pass
    return total


def read_mosaic(url: str, stop: threading.Event, counter: list[int]) -> None:
    """A viewer: reads the mosaic until told to stop, counting JPEGs."""
    import httpx

    with httpx.stream("GET", url, timeout=30) as response:
        for chunk in response.iter_bytes():
            counter[0] += chunk.count(b"\xff\xd8\xff")
            if stop.is_set():
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--churn", type=float, default=10, help="seconds between adding and removing the extra stream")
    parser.add_argument("--phase", type=float, default=60, help="seconds per phase (viewers off, then on, ...)")
    parser.add_argument("--viewers", type=int, default=2)
    parser.add_argument("--cluster", help="run the streams on Ray workers (ray: a local Ray)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    server, url = start_server()
    broker = Broker()
    folder = Path(tempfile.mkdtemp(prefix="vidpipe-serve-bench-"))
    streams = [f"s{i}" for i in range(args.streams)]
    config = f"cluster: {{address: {args.cluster}, workers: {args.workers}}}\n" if args.cluster else ""
    config += f"mqtt: {{host: 127.0.0.1, port: {broker.port}}}\nstreams:\n" + "".join(
        f'  {name}: {{uri: "{url}", detect_fps: 5, record: {{json: true}}}}\n' for name in streams
    )
    served = Served(folder, config).wait_ready()
    listener = Listener(broker.port)
    for name in streams:
        served.wait_frames(name, 5)
    pid = served.proc.pid
    done = threading.Event()
    churned = [0]

    def churn() -> None:
        present = False
        while not done.wait(args.churn):
            if present:
                served.client.delete("/api/streams/extra")
            else:
                served.client.put("/api/streams/extra", json={"uri": url, "detect_fps": 5})
            present = not present
            churned[0] += 1

    threading.Thread(target=churn, daemon=True).start()

    def frames() -> int:
        listed = served.client.get("/api/streams").json()
        return sum(s["frames"] for s in listed if s["name"] in streams)

    samples = []  # (t, figures)
    phases = []  # (viewers, fps, cpu %, jpegs/s)
    started = time.monotonic()
    end = started + args.minutes * 60
    viewers_on = False
    print(f"{args.streams} RTSP streams at --detect-fps 5, MQTT on, extra stream every {args.churn:g} s, "
          f"{args.minutes:g} min", flush=True)  # fmt: skip
    print(f"{'phase':>5} {'viewers':>8} {'FPS':>7} {'CPU %':>7} {'JPEG/s':>7} {'RSS MB':>7} {'threads':>8} {'fds':>5}")
    index = 0
    while time.monotonic() < end:
        stop_viewers = threading.Event()
        counters = [[0] for _ in range(args.viewers)]
        if viewers_on:
            for counter in counters:
                mosaic = f"{served.url}/api/mosaic.mjpeg?fps=5&height=720"
                threading.Thread(target=read_mosaic, args=(mosaic, stop_viewers, counter), daemon=True).start()
        time.sleep(2)  # settle
        t0, f0, p0 = time.monotonic(), frames(), figures_of(pid, bool(args.cluster))
        phase_end = min(t0 + args.phase, end)
        while time.monotonic() < phase_end:
            time.sleep(min(5, max(0.1, phase_end - time.monotonic())))
            samples.append((time.monotonic() - started, figures_of(pid, bool(args.cluster))))
        t1, f1, p1 = time.monotonic(), frames(), figures_of(pid, bool(args.cluster))
        stop_viewers.set()
        fps = (f1 - f0) / (t1 - t0)
        cpu = 100 * (p1["cpu"] - p0["cpu"]) / (t1 - t0)
        jpegs = sum(c[0] for c in counters) / (t1 - t0 + 2)
        phases.append((viewers_on, fps, cpu, jpegs))
        print(f"{index:>5} {args.viewers if viewers_on else 0:>8} {fps:>7.1f} {cpu:>7.1f} {jpegs:>7.1f} "
              f"{p1['rss']:>7.0f} {p1['threads']:>8} {p1['fds']:>5}", flush=True)  # fmt: skip
        viewers_on = not viewers_on
        index += 1
    done.set()
    time.sleep(1)
    code = served.stop()
    listener.close()
    broker.close()
    server.kill()

    off = [p for p in phases if not p[0]]
    on = [p for p in phases if p[0]]
    print("\nweb view's cost (mean over phases)")
    if off and on:
        fps_off, fps_on = statistics.mean(p[1] for p in off), statistics.mean(p[1] for p in on)
        cpu_off, cpu_on = statistics.mean(p[2] for p in off), statistics.mean(p[2] for p in on)
        print(f"  FPS without viewers {fps_off:.1f}, with {args.viewers} on the mosaic {fps_on:.1f} "
              f"({100 * (fps_on / fps_off - 1):+.1f} %)")  # fmt: skip
        print(f"  CPU without viewers {cpu_off:.0f} %, with {cpu_on:.0f} % "
              f"({cpu_on - cpu_off:+.0f} points of one core)")  # fmt: skip
    quarter = max(1, len(samples) // 4)
    first, last = samples[:quarter], samples[-quarter:]
    print("\nover time (median of the first and last quarter of the samples)")
    for key, unit in (("rss", "MB"), ("threads", ""), ("fds", "")):
        a = statistics.median(s[1][key] for s in first)
        b = statistics.median(s[1][key] for s in last)
        print(f"  {key:<8} {a:8.1f} -> {b:8.1f} {unit}")
    gaps = []
    for name in streams:
        for path in sorted((folder / "recordings" / name).glob("*.jsonl")):
            walls = [line["wall"] for line in jsonl(path) if "detections" in line]
            gaps += [b - a for a, b in itertools.pairwise(walls)]
    print(f"\nlongest gap between results of the {args.streams} streams: {max(gaps):.2f} s "
          f"(p99 {statistics.quantiles(gaps, n=100)[98]:.2f} s, {len(gaps) + args.streams} results)")  # fmt: skip
    print(f"extra stream added/removed {churned[0]} times; MQTT messages received {len(listener.messages)}; "
          f"serve exited {code}")  # fmt: skip
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line), "?")
    print(f"machine: {model}, {os.cpu_count()} cores")
    (folder / "figures.json").write_text(json.dumps({"phases": phases, "samples": samples}))


if __name__ == "__main__":
    main()
