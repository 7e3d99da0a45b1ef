"""``vidpipe serve`` and the clients of a flaky network: viewers that stop reading, connections that
never finish their request (slowloris), bodies announced and never sent, crowds of viewers. Real
sockets against the real command."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from serve_helpers import Served

from vidpipe.sinks.live import LiveView
from vidpipe.types import Detections, Frame, Result

pytestmark = pytest.mark.slow

# noise: every JPEG of it is large, so a viewer that stops reading fills its socket's buffers at once
SNOW = "testsrc://snow?live=1&frames=100000000&width=640&height=480&fps=10"
HOST = b"Host: 127.0.0.1\r\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-clients")
    service = Served(folder, f'streams:\n  a: {{uri: "{SNOW}", detect_fps: 5}}\nweb: {{max_viewers: 8}}\n').wait_ready()
    service.wait_frames("a", 3)
    yield service
    service.stop()


def _sockets(pid: int) -> int:
    """The sockets the service's process holds open."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # (closed meanwhile)
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def _connect(served: Served, first: bytes = b"", rcvbuf: int | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port))
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if first:
        sock.sendall(first)
    return sock


def _viewer(served: Served, seconds: float, parts: list[int]) -> None:
    """A viewer that reads: the number of JPEG parts it got in ``seconds`` goes to ``parts``."""
    deadline = time.monotonic() + seconds
    got = 0
    with httpx.stream("GET", f"{served.url}/api/streams/a/mjpeg?fps=5", timeout=seconds + 10) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            got += chunk.count(b"--vidpipeframe\r\n")
            if time.monotonic() > deadline:
                break
    parts.append(got)


def test_stalled_clients_are_dropped_and_slow_no_one(served):
    """Viewers that stop reading (or whose machine vanished), connections that send their headers a
    byte at a time or nothing at all, a body announced and never sent or sent a byte a second: each is
    dropped after a bounded time (10 s for a request's headers or a pause in its body, 30 s for a whole
    body, 20 s for an answer nobody reads), while the pipeline keeps its rate and
    a reading viewer and the API answer as usual."""
    pid = served.proc.pid
    baseline = _sockets(pid)
    before = served.stream("a")["frames"]
    started = time.monotonic()
    stuck = [
        _connect(served, b"GET /api/streams/a/mjpeg?fps=30&height=1080 HTTP/1.1\r\n" + HOST + b"\r\n", rcvbuf=4096)
        for _ in range(3)
    ]
    mosaic = _connect(served, b"GET /api/mosaic.mjpeg?fps=30&height=1080 HTTP/1.1\r\n" + HOST + b"\r\n", 4096)
    silent = [_connect(served) for _ in range(5)]
    slowloris = [_connect(served, b"G") for _ in range(10)]
    body = _connect(
        served,
        b"PUT /api/streams/x HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{",
    )
    dripping = _connect(served, b"PUT /api/streams/x HTTP/1.1\r\n" + HOST + b"Content-Length: 500\r\n\r\n{")
    clients = [*stuck, mosaic, *silent, *slowloris, body, dripping]
    try:
        while _sockets(pid) < baseline + len(clients) and time.monotonic() - started < 5:
            time.sleep(0.05)  # (each accepted)
        assert _sockets(pid) == baseline + len(clients)
        parts: list[int] = []
        reader = threading.Thread(target=_viewer, args=(served, 8, parts))
        reader.start()
        slowest_api = 0.0
        dropped = {}
        drip = iter(b"ET /api/streams HTTP/1.1\r\n" + b"X-Slow: 1\r\n" * 20)  # never its blank line
        while time.monotonic() - started < 45 and _sockets(pid) > baseline:
            byte = bytes([next(drip)])
            for sock in slowloris:
                with contextlib.suppress(OSError):  # (dropped)
                    sock.sendall(byte)  # a byte a second, never a whole request
            with contextlib.suppress(OSError):
                dripping.sendall(b" ")  # a body a byte a second
            t = time.monotonic()
            assert served.client.get("/api/streams").status_code == 200
            slowest_api = max(slowest_api, time.monotonic() - t)
            dropped[_sockets(pid) - baseline] = round(time.monotonic() - started)
            time.sleep(1)
        reader.join(30)
        after = served.stream("a")["frames"]
        elapsed = time.monotonic() - started
    finally:
        for sock in clients:
            sock.close()
    left = _sockets(pid) - baseline
    assert left <= 0, f"{left} stalled connection(s) still open after {elapsed:.0f} s (open count: time) {dropped}"
    # the viewers that read nothing go at 20 s, the requests at 10 s, the body a byte a second at 30 s
    assert 30 <= elapsed < 40, dropped
    assert slowest_api < 1.0, slowest_api
    assert parts and parts[0] >= 5 * 8 * 0.6, parts  # the reading viewer got its pictures
    assert after - before >= 5 * elapsed * 0.8, (before, after, elapsed)  # the pipeline kept its rate
    log = served.output()
    assert log.count("read nothing of its answer for 20 s") == len(stuck) + 1, log[-3000:]
    assert "sent nothing of its request's body for 10 s" in log
    assert "sent no whole request body in 30 s" in log


def _status(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            break
        head += data
    return head


def test_a_crowd_of_viewers_gets_503_beyond_web_max_viewers_and_leaves_nothing(served):
    """30 live views asked at once, again and again, against web.max_viewers 8: 8 are served, the
    others answered 503 with the reason at once; once they close, the service holds no more sockets
    or threads than before, and the API answered all along."""
    pid = served.proc.pid
    time.sleep(1)
    baseline = _sockets(pid), len(os.listdir(f"/proc/{pid}/task"))
    paths = [b"/api/streams/a/mjpeg?fps=5", b"/api/mosaic.mjpeg?fps=5", b"/api/streams/a/mjpeg?height=240"]
    total = 0
    for cycle in range(15):
        crowd = [_connect(served, b"GET " + paths[i % 3] + b" HTTP/1.1\r\n" + HOST + b"\r\n") for i in range(30)]
        heads = [_status(sock) for sock in crowd]
        codes = sorted(head[9:12].decode() for head in heads)
        served_now = codes.count("200")
        # (8 but for the views of the round before that the service has not yet seen go)
        assert 1 <= served_now <= 8 and codes == ["200"] * served_now + ["503"] * (30 - served_now), (cycle, codes)
        total += served_now
        refused = next(head for head in heads if head[9:12] == b"503")
        assert b"retry-after: 10" in refused.lower()
        assert served.client.get("/api/streams").status_code == 200
        for sock in crowd:
            sock.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _sockets(pid) > baseline[0]:
            time.sleep(0.05)  # (the service sees them go)
        assert _sockets(pid) <= baseline[0], cycle
    assert total >= 15 * 8 * 0.8, total
    assert len(os.listdir(f"/proc/{pid}/task")) <= baseline[1] + 40  # (the thread pool, bounded)
    assert "live view refused: 8 open, web.max_viewers is 8" in served.output()


@pytest.mark.parametrize(
    "path",
    [
        "/api/streams/a/snapshot.jpg?height=0",
        "/api/streams/a/snapshot.jpg?height=-8",
        "/api/streams/a/snapshot.jpg?height=100000",
        "/api/streams/a/snapshot.jpg?height=nan",
        "/api/streams/a/mjpeg?fps=0",
        "/api/streams/a/mjpeg?fps=-1",
        "/api/streams/a/mjpeg?fps=nan",
        "/api/streams/a/mjpeg?fps=inf",
        "/api/streams/a/mjpeg?fps=1e-300",
        "/api/streams/a/mjpeg?height=99999999999999999999",
        "/api/mosaic.mjpeg?fps=100000",
        "/api/mosaic.mjpeg?height=0",
        "/api/mosaic.mjpeg?height=nan",
    ],
)
def test_live_views_with_values_out_of_range_are_422_at_once(served, path):
    response = httpx.get(served.url + path, timeout=10)
    assert response.status_code == 422, (path, response.status_code, response.text[:200])


def _rss_kb(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])


def _answer(sock: socket.socket, seconds: float = 10) -> bytes:
    """What the service sent until it closed the connection (or ``seconds``)."""
    sock.settimeout(seconds)
    got = b""
    try:
        while data := sock.recv(65536):
            got += data
    except (TimeoutError, ConnectionResetError):
        pass
    return got


def test_huge_headers_and_bodies_are_refused_at_once(served):
    """A 1 GB body announced (and never sent), a body in chunks without end, a header of 1 MB: each is
    refused at once with a 4xx, nothing of it kept, and the service answers the next client."""
    pid = served.proc.pid
    rss = _rss_kb(pid)
    put = b"PUT /api/streams/x HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
    started = time.monotonic()
    with _connect(served, put + b"Content-Length: 1000000000\r\n\r\n{") as sock:
        assert _status(sock).startswith(b"HTTP/1.1 413")
        assert time.monotonic() - started < 2
        assert _answer(sock, 10) is not None and time.monotonic() - started < 8  # then closed (keep-alive ends)
    with _connect(served, put + b"Transfer-Encoding: chunked\r\n\r\n") as sock:
        chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
        try:
            for _ in range(100):  # 6.5 MB, far beyond the 1 MB a body may hold
                sock.sendall(chunk)
        except OSError:
            pass  # (refused and closed before it all went)
        assert _status(sock).startswith(b"HTTP/1.1 413")
    with _connect(served, b"GET /api/streams HTTP/1.1\r\n" + HOST + b"X-Big: " + b"a" * (1 << 20) + b"\r\n\r\n") as s:
        assert _answer(s, 5)[9:12] in (b"400", b"431")
    assert served.client.get("/api/streams").status_code == 200
    grown = _rss_kb(pid) - rss
    assert grown < 50_000, f"{grown} kB"


def test_pictures_of_many_sizes_are_not_kept_past_their_frame():
    """A viewer may ask for any size (the mosaic at 263 heights, a snapshot at each of 64..2160): the
    live view kept one picture per size asked for ever, a new frame replacing only the sizes asked again
    (one client's pass over the mosaic's heights held 244 MB more in the service). Now a stream's new
    frame lets go of every picture of its older one."""
    view = LiveView()

    def frame(index: int) -> Result:
        pixels = torch.randint(0, 255, (240, 320, 3), dtype=torch.uint8)
        return Result(Frame(pixels, index, index / 10, stream="a"), Detections.empty())

    view.write(frame(0))
    for height in range(64, 240, 8):
        assert view.jpeg("a", height) is not None
        view.mosaic(["a"], height)
    assert len(view._jpegs) == 22 and len(view._mosaics) == 22
    view.write(frame(1))
    assert not view._jpegs and not view._mosaics  # (each would only ever be encoded again)
    first = view.jpeg("a", 120)
    assert view.jpeg("a", 120)[1] is first[1]  # the pictures of the current frame are shared as before
    assert view.mosaic(["a"], 120)[1] is view.mosaic(["a"], 120)[1]
