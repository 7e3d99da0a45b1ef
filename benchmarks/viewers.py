"""The service's HTTP clients on a flaky network: ``vidpipe serve`` with one live test pattern (noise,
640×480 at 10 fps, ``detect_fps`` 5: large JPEGs, so a viewer that stops reading fills its buffers at
once), then, each phase on its own:

* ``stuck``: 20 live views that never read their socket;
* ``trickle``: 10 live views that read one byte a second;
* ``slowloris``: 200 connections that send a request's headers one byte every 5 s;
* ``crowd``: ``--cycles`` rounds of ``--crowd`` live views opened at once, their first bytes read,
  then closed.

Reports, every 5 s of a phase: the service's RSS, threads and open sockets, the pipeline's frames a
second and the API's latency (``GET /api/streams``); for ``crowd``, the answers' status codes and the
figures after the last round against the start (target: sockets back to the start).

    python benchmarks/viewers.py [--phases stuck,trickle,slowloris,crowd] [--seconds 40] [--cycles 300] [--crowd 150]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT

sys.path.insert(0, str(ROOT / "tests"))
import httpx
from serve_helpers import Served

SNOW = "testsrc://snow?live=1&frames=100000000&width=640&height=480&fps=10"
VIEW = b"GET /api/streams/a/mjpeg?fps=30&height=1080 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def figures(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    sockets = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    rss = int(status.split("VmRSS:")[1].split()[0]) // 1024
    return {"rss_mb": rss, "threads": len(os.listdir(f"/proc/{pid}/task")), "sockets": sockets}


def connect(port: int, first: bytes = b"", rcvbuf: int | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if first:
        sock.sendall(first)
    return sock


def report(served: Served, t: float, frames_before: int, t_before: float) -> tuple[int, float]:
    started = time.monotonic()
    frames = served.client.get("/api/streams/a").json()["frames"]
    api = time.monotonic() - started
    now = time.monotonic()
    fps = (frames - frames_before) / (now - t_before)
    print(f"  t={t:4.0f} s  {figures(served.proc.pid)}  pipeline {fps:.1f} fps  api {api * 1000:.0f} ms", flush=True)
    return frames, now


def phase(served: Served, name: str, seconds: float) -> None:
    port = served.port
    print(f"{name}: before {figures(served.proc.pid)}", flush=True)
    if name == "stuck":
        socks = [connect(port, VIEW, 4096) for _ in range(20)]
    elif name == "trickle":
        socks = [connect(port, VIEW, 4096) for _ in range(10)]
        for sock in socks:
            sock.setblocking(False)
    else:
        socks = [connect(port, b"G") for _ in range(200)]
    drip = iter(b"ET /api/streams HTTP/1.1\r\n" + b"X-Slow: 1\r\n" * 100)
    started = time.monotonic()
    frames, t_frames = served.client.get("/api/streams/a").json()["frames"], started
    tick = 0
    while (elapsed := time.monotonic() - started) < seconds:
        if name == "trickle":
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.recv(1)
        if name == "slowloris" and tick % 5 == 0:
            byte = bytes([next(drip)])
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.sendall(byte)
        tick += 1
        if tick % 5 == 0:
            frames, t_frames = report(served, elapsed, frames, t_frames)
        time.sleep(1)
    for sock in socks:
        sock.close()
    time.sleep(3)
    print(f"{name}: closed {figures(served.proc.pid)}", flush=True)


def crowd(served: Served, cycles: int, size: int) -> None:
    start = figures(served.proc.pid)
    print(f"crowd: before {start}", flush=True)
    codes: collections.Counter = collections.Counter()
    slowest = 0.0
    for cycle in range(cycles):
        socks = [connect(served.port, VIEW.replace(b"fps=30&height=1080", b"fps=5")) for _ in range(size)]
        for sock in socks:
            sock.settimeout(10)
            try:
                codes[sock.recv(12)[9:12].decode() or "closed"] += 1
            except OSError as exc:
                codes[type(exc).__name__] += 1
            sock.close()
        t = time.monotonic()
        served.client.get("/api/streams")
        slowest = max(slowest, time.monotonic() - t)
        if cycle % 50 == 49:
            print(f"  cycle {cycle + 1}: {dict(codes)} {figures(served.proc.pid)}", flush=True)
    time.sleep(3)
    print(f"crowd: after {cycles} cycles of {size}: {dict(codes)}; slowest API {slowest * 1000:.0f} ms", flush=True)
    print(f"crowd: start {start}, end {figures(served.proc.pid)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", default="stuck,trickle,slowloris,crowd")
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--crowd", type=int, default=150)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="vidpipe-viewers-"))
    served = Served(folder, f'streams:\n  a: {{uri: "{SNOW}", detect_fps: 5}}\n').wait_ready()
    try:
        served.wait_frames("a", 3)
        time.sleep(2)
        for name in args.phases.split(","):
            if name == "crowd":
                crowd(served, args.cycles, args.crowd)
            else:
                phase(served, name, args.seconds)
        httpx.get(f"{served.url}/healthz", timeout=10).raise_for_status()
    finally:
        served.stop()
        lines = [line for line in served.output().splitlines() if "dropped the connection" in line]
        print(f"log: {len(lines)} 'dropped the connection' line(s)", *lines[:3], sep="\n  ")


if __name__ == "__main__":
    main()
