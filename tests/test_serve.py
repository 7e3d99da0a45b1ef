"""``vidpipe serve``: the real command in a subprocess, real RTSP streams, a real mosquitto, real HTTP
viewers, a real headless Chromium."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from conftest import SAMPLE, start_server, vidpipe_cli
from serve_helpers import Broker, Listener, Served, jsonl, recordings

import vidpipe
from media import encode
from vidpipe.api import Pipeline

pytestmark = pytest.mark.slow

PATTERN = "testsrc://ball?live=1&frames=100000000&width=320&height=240&fps=10"


def _decoded_frames(path: Path) -> int:
    with vidpipe.open(path) as source:
        return sum(1 for _ in source)


@pytest.fixture
def rtsp():
    servers = []

    def start():
        server, url = start_server("--fps", "10")
        servers.append(server)
        return server, url

    yield start
    for server in servers:
        server.kill()
        server.wait(10)


@pytest.fixture
def broker():
    b = Broker()
    yield b
    b.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One service for the API tests that need no fresh process: two live test patterns."""
    folder = tmp_path_factory.mktemp("serve")
    config = f"""
streams:
  a: {{uri: "{PATTERN}", detect_fps: 5}}
  b: {{uri: "{PATTERN}", detect_fps: 5, track: true, zones: ["all=rel:0,0,1,0,1,1,0,1"]}}
"""
    served = Served(folder, config).wait_ready()
    served.wait_frames("a", 5)
    served.wait_frames("b", 5)
    yield served
    served.stop()


# -- the API ----------------------------------------------------------------------------------------


def test_streams_are_listed_with_their_figures(shared):
    streams = {s["name"]: s for s in shared.client.get("/api/streams").json()}
    assert set(streams) >= {"a", "b"}
    a = streams["a"]
    for key in ("uri", "state", "fps", "frames", "dropped", "reconnects", "latency_ms", "last_frame", "counts"):
        assert key in a, key
    assert a["state"] == "running" and a["frames"] >= 5 and a["uri"] == PATTERN
    assert streams["b"]["counts"]["zones"]["all"]["entered"] >= 0
    assert shared.client.get("/api/streams/nope").status_code == 404
    assert shared.client.get("/healthz").json() == {"status": "ok"}


def test_a_bad_body_is_422_naming_the_field(shared):
    bad = shared.client.put("/api/streams/x", json={"uri": PATTERN, "detect_fps": -2})
    assert bad.status_code == 422
    assert any(item["loc"][-1] == "detect_fps" for item in bad.json()["detail"])
    missing = shared.client.put("/api/streams/x", json={"detect_fps": 5})
    assert missing.status_code == 422 and any(item["loc"][-1] == "uri" for item in missing.json()["detail"])
    extra = shared.client.put("/api/streams/x", json={"uri": PATTERN, "colour": "red"})
    assert extra.status_code == 422 and any(item["loc"][-1] == "colour" for item in extra.json()["detail"])
    line = shared.client.put("/api/streams/x", json={"uri": PATTERN, "lines": ["door=1,2"]})
    assert line.status_code == 422 and "lines" in json.dumps(line.json()["detail"])
    name = shared.client.put("/api/streams/..evil", json={"uri": PATTERN})
    assert name.status_code == 422 and "stream name" in name.json()["detail"]
    assert "x" not in {s["name"] for s in shared.client.get("/api/streams").json()}


def test_put_creates_then_replaces_and_delete_removes(shared):
    created = shared.client.put("/api/streams/c", json={"uri": PATTERN, "detect_fps": 5})
    assert created.status_code == 201, created.text
    shared.wait_frames("c", 3)
    before_a = shared.stream("a")["frames"]
    replaced = shared.client.put("/api/streams/c", json={"uri": PATTERN, "detect_fps": 2})
    assert replaced.status_code == 200 and replaced.json()["config"]["detect_fps"] == 2
    assert shared.stream("c")["frames"] < 3  # it restarted
    assert shared.stream("a")["frames"] >= before_a  # the others went on
    assert shared.client.delete("/api/streams/c").status_code == 204
    assert shared.client.get("/api/streams/c").status_code == 404
    assert shared.client.delete("/api/streams/c").status_code == 404


def test_a_source_that_cannot_open_is_a_failed_stream_not_a_failed_service(shared):
    assert shared.client.put("/api/streams/bad", json={"uri": "/no/such/file.mp4"}).status_code == 201
    deadline = time.monotonic() + 20
    while shared.stream("bad")["state"] != "failed" and time.monotonic() < deadline:
        time.sleep(0.1)
    stream = shared.stream("bad")
    assert stream["state"] == "failed" and "no such file" in stream["error"]
    assert shared.client.get("/healthz").status_code == 200
    assert shared.client.delete("/api/streams/bad").status_code == 204


def test_snapshot_is_an_annotated_jpeg(shared):
    response = shared.client.get("/api/streams/a/snapshot.jpg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(response.content))
    assert image.size == (320, 240)
    small = Image.open(io.BytesIO(shared.client.get("/api/streams/a/snapshot.jpg?height=120").content))
    assert small.size == (160, 120)


def _read_parts(url: str, seconds: float, headers: dict | None = None) -> list[bytes]:
    """The JPEGs of a multipart stream received within ``seconds``."""
    parts = []
    deadline = time.monotonic() + seconds
    with httpx.stream("GET", url, timeout=seconds + 10, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("multipart/x-mixed-replace")
        buffer = b""
        for chunk in response.iter_bytes():
            buffer += chunk
            while True:
                start = buffer.find(b"\xff\xd8")
                end = buffer.find(b"\xff\xd9", start + 2)
                if start < 0 or end < 0:
                    break
                parts.append(buffer[start : end + 2])
                buffer = buffer[end + 2 :]
            if time.monotonic() > deadline:
                break
    return parts


def test_a_viewer_that_never_reads_slows_no_one(shared):
    # a viewer that asks for the stream and never reads its socket
    stalled = socket.create_connection(("127.0.0.1", shared.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /api/streams/a/mjpeg?fps=10 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    try:
        time.sleep(3)  # its buffers fill
        assert stalled.recv(12, socket.MSG_PEEK) == b"HTTP/1.1 200"  # (a viewer indeed: its Host is accepted)
        before = shared.stream("a")["frames"]
        parts = _read_parts(f"{shared.url}/api/streams/a/mjpeg?fps=5", 6)
        after = shared.stream("a")["frames"]
    finally:
        stalled.close()
    # the pipeline kept its 5 frames a second, the reading viewer got its 5 a second
    assert after - before >= 5 * 6 * 0.8, (before, after)
    assert len(parts) >= 5 * 6 * 0.7, len(parts)


def test_four_viewers_on_the_mosaic_share_the_encoding(shared):
    results: list[list[bytes]] = [[] for _ in range(4)]

    def view(i: int) -> None:
        results[i] = _read_parts(f"{shared.url}/api/mosaic.mjpeg?fps=4&height=480", 5)

    threads = [threading.Thread(target=view, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    import io

    from PIL import Image

    for parts in results:
        assert len(parts) >= 4 * 5 * 0.6, [len(p) for p in results]
        image = Image.open(io.BytesIO(parts[-1]))
        assert image.height == 480 and image.width > 480  # a grid of 16:9 tiles
        assert torch.from_numpy(np.array(image.convert("L"))).float().std() > 5  # pictures, not black


def test_metrics_use_prometheus_names_and_drop_a_removed_stream(shared):
    shared.client.put("/api/streams/m", json={"uri": PATTERN, "detect_fps": 5})
    shared.wait_frames("m", 3)
    text = shared.client.get("/metrics").text
    for name in (
        "vidpipe_stream_up", "vidpipe_stream_frames_total", "vidpipe_stream_frames_dropped_total",
        "vidpipe_stream_reconnects_total", "vidpipe_stream_last_frame_timestamp_seconds",
        "vidpipe_stream_latency_seconds_bucket", "vidpipe_inference_seconds_bucket", "vidpipe_batch_size_bucket",
        "vidpipe_streams",
    ):  # fmt: skip
        assert f"\n{name}" in text, name
    assert "# TYPE vidpipe_zone_objects gauge" in text
    assert 'vidpipe_stream_frames_total{stream="m"}' in text
    assert 'vidpipe_stream_latency_seconds_count{stream="m"}' in text
    shared.client.delete("/api/streams/m")
    text = shared.client.get("/metrics").text
    assert 'stream="m"' not in text


def _threads_and_fds(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
    return threads, len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_a_stream_added_and_removed_many_times_leaves_nothing_behind(shared):
    body = {"uri": PATTERN, "detect_fps": 5}
    shared.client.put("/api/streams/churn", json=body)  # the first one warms up what stays
    shared.wait_frames("churn", 2)
    shared.client.delete("/api/streams/churn")
    time.sleep(1)
    threads, fds = _threads_and_fds(shared.proc.pid)
    for i in range(60):
        assert shared.client.put("/api/streams/churn", json=body).status_code == 201
        if i % 3 == 0:
            shared.wait_frames("churn", 1)  # some get as far as frames, others are removed while opening
        assert shared.client.delete("/api/streams/churn").status_code == 204
    time.sleep(1.5)
    after = _threads_and_fds(shared.proc.pid)
    assert after[0] <= threads + 2 and after[1] <= fds + 4, ((threads, fds), after)
    assert {s["name"] for s in shared.client.get("/api/streams").json()} >= {"a", "b"}
    assert "churn" not in shared.client.get("/metrics").text


def test_events_are_recent_and_bounded(shared):
    events = shared.client.get("/api/events?limit=5").json()
    assert 0 < len(events) <= 5
    assert all("event" in e and "stream" in e for e in events)
    assert shared.client.get("/api/events?limit=5000").status_code == 422


def test_the_page_and_the_api_docs_are_served(shared):
    page = shared.client.get("/")
    assert page.status_code == 200 and "<title>vidpipe</title>" in page.text
    assert shared.client.get("/docs").status_code == 200
    assert "/api/streams/{name}" in shared.client.get("/openapi.json").json()["paths"]


# -- configuration, auth, state ---------------------------------------------------------------------


def test_a_bad_config_is_one_line_per_problem(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(
        "streams:\n  cam:\n    uri: x\n    detect_fps: -1\n  'a/b': {uri: y}\nmqtt: {port: 1883}\nwho: 1\n"
    )
    result = vidpipe_cli("serve", "--config", str(config), "--port", "0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert any(f"{config}: streams.cam.detect_fps:" in line for line in lines), lines
    assert any("streams" in line and "a/b" in line for line in lines), lines
    assert any(f"{config}: mqtt.host:" in line for line in lines), lines
    assert any(f"{config}: who:" in line for line in lines), lines
    config.write_text("streams: [oops\n")
    result = vidpipe_cli("serve", "--config", str(config))
    assert result.returncode == 2 and "not valid YAML at line" in result.stderr
    config.write_text("auth:\n  token: ${VIDPIPE_TEST_UNSET}\n")
    result = vidpipe_cli("serve", "--config", str(config))
    assert result.returncode == 2 and "auth.token: environment variable VIDPIPE_TEST_UNSET is not set" in result.stderr
    missing = vidpipe_cli("serve", "--config", str(tmp_path / "none.yaml"))
    assert missing.returncode == 2 and "none.yaml: cannot read" in missing.stderr


def test_auth_needs_the_token_but_not_for_healthz(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDPIPE_TEST_TOKEN", "s3cret-token-1")
    served = Served(tmp_path, "auth: {token: '${VIDPIPE_TEST_TOKEN}'}\n", token="s3cret-token-1").wait_ready()
    try:
        bare = httpx.Client(base_url=served.url)
        assert bare.get("/healthz").status_code == 200
        assert bare.get("/api/streams").status_code == 401
        assert bare.get("/metrics").status_code == 401
        assert bare.get("/api/streams", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert served.client.get("/api/streams").status_code == 200
        # a browser: /?token= sets a cookie and takes the token out of the address
        browser = httpx.Client(base_url=served.url)
        first = browser.get("/?token=s3cret-token-1")
        assert first.status_code == 303 and first.headers["location"] == "/"
        assert browser.get("/api/streams").status_code == 200
        bare.close()
        browser.close()
    finally:
        served.stop()


def test_without_a_token_only_loopback(tmp_path):
    refused = vidpipe_cli("serve", "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2 and "without a token" in refused.stderr and "--insecure" in refused.stderr


def test_api_changes_are_kept_and_restored_config_never_rewritten(tmp_path):
    config = f'streams:\n  a: {{uri: "{PATTERN}", detect_fps: 5}}\n  b: {{uri: "{PATTERN}", detect_fps: 5}}\n'
    served = Served(tmp_path, config).wait_ready()
    try:
        served.client.put("/api/streams/c", json={"uri": PATTERN, "detect_fps": 2})
        assert served.client.delete("/api/streams/b").status_code == 204
    finally:
        assert served.stop() == 0
    state = json.loads((tmp_path / "vidpipe.state.json").read_text())
    assert state["streams"] == {"c": {"uri": PATTERN, "detect_fps": 2.0}, "b": None}
    assert (tmp_path / "vidpipe.yaml").read_text() == config
    again = Served(tmp_path, config).wait_ready()
    try:
        names = {s["name"]: s for s in again.client.get("/api/streams").json()}
        assert set(names) == {"a", "c"} and names["c"]["config"]["detect_fps"] == 2
    finally:
        again.stop()


# -- MQTT -------------------------------------------------------------------------------------------


def test_results_arrive_over_mqtt_and_the_api_and_a_removed_video_plays(tmp_path, rtsp, broker):
    _, url = rtsp()
    listener = Listener(broker.port)
    config = f"mqtt: {{host: 127.0.0.1, port: {broker.port}, stats_interval: 1}}\n"
    served = Served(tmp_path, config).wait_ready()
    try:
        assert listener.wait_for("vidpipe/available", lambda p: p == "online")
        body = {"uri": url, "detect_fps": 5, "record": {"json": True, "video": True}}
        assert served.client.put("/api/streams/cam", json=body).status_code == 201
        people = {"uri": str(SAMPLE), "loop": True, "detect_fps": 10, "zones": ["all=rel:0,0,1,0,1,1,0,1"]}
        assert served.client.put("/api/streams/people", json=people).status_code == 201
        served.wait_frames("cam", 15)
        status = json.loads(listener.wait_for("vidpipe/cam/status", lambda p: json.loads(p)["state"] == "running"))
        assert status["stream"] == "cam"
        connected = listener.wait_for("vidpipe/events", lambda p: json.loads(p)["event"] == "connected")
        assert json.loads(connected)["stream"] in ("cam", "people")
        entered = json.loads(listener.wait_for("vidpipe/events", lambda p: json.loads(p)["event"] == "zone_entered"))
        assert entered["stream"] == "people" and entered["label"] == "person"
        assert {"track_id", "score", "box", "wall", "zone"} <= set(entered)
        assert json.loads(listener.on("vidpipe/people/counts")[0][1])["zones"]["all"]["entered"] == 0  # at start
        counts = json.loads(
            listener.wait_for("vidpipe/people/counts", lambda p: json.loads(p)["zones"]["all"]["entered"] >= 1)
        )
        api = served.stream("people")["counts"]["zones"]["all"]
        assert api["entered"] >= counts["zones"]["all"]["entered"]
        assert "frames" in json.loads(listener.wait_for("vidpipe/stats"))
        assert served.client.delete("/api/streams/cam").status_code == 204
        video = recordings(tmp_path / "recordings", "cam", ".mp4")
        assert len(video) == 1 and _decoded_frames(video[0]) >= 15  # it plays at once
        lines = jsonl(recordings(tmp_path / "recordings", "cam", ".jsonl")[0])
        assert sum(1 for line in lines if "frame" in line and "detections" in line) >= 15
        assert listener.wait_for("vidpipe/events", lambda p: json.loads(p)["event"] == "removed")
        listener.wait_for("vidpipe/cam/status", lambda p: p == "")  # the retained status is cleared
        assert listener.on("vidpipe/cam/status")[-1][1] == ""
    finally:
        served.stop()
        listener.close()
    assert listener.on("vidpipe/available")[-1][1] == "offline"


def test_a_broker_that_dies_never_pauses_the_pipeline(tmp_path, rtsp, broker):
    _, url = rtsp()
    config = f"""
mqtt: {{host: 127.0.0.1, port: {broker.port}}}
streams:
  cam: {{uri: "{url}", detect_fps: 5, track: true, lines: ["mid=rel:0.5,0,0.5,1"], record: {{json: true}}}}
"""
    served = Served(tmp_path, config).wait_ready()
    listener = Listener(broker.port)
    try:
        served.wait_frames("cam", 10)
        broker.kill()
        time.sleep(1)
        assert "vidpipe_mqtt_connected 0.0" in served.client.get("/metrics").text
        time.sleep(4)
        broker.start()
        listener.close()
        listener = Listener(broker.port)
        # messages resume: the retained availability comes back, and new status/events arrive
        assert listener.wait_for("vidpipe/available", lambda p: p == "online", timeout=40)
        deadline = time.monotonic() + 20
        while "vidpipe_mqtt_connected 1.0" not in served.client.get("/metrics").text:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert listener.wait_for("vidpipe/cam/status")
    finally:
        served.stop()
        listener.close()
    frames = [line for line in jsonl(recordings(tmp_path / "recordings", "cam", ".jsonl")[0]) if "frame" in line
              and "detections" in line]  # fmt: skip
    walls = [line["wall"] for line in frames]
    gaps = [b - a for a, b in itertools.pairwise(walls)]
    assert len(frames) >= 40 and max(gaps) < 1.0, max(gaps)


# -- signals ----------------------------------------------------------------------------------------


def test_sigterm_finalises_every_output_of_three_streams(tmp_path, rtsp):
    _, url = rtsp()
    config = f"""
streams:
  one: {{uri: "{url}", detect_fps: 5, record: {{json: true, csv: true, video: true}}}}
  two: {{uri: "{PATTERN}", detect_fps: 5, record: {{json: true, video: true}}}}
  three: {{uri: "{SAMPLE}", loop: true, detect_fps: 10, record: {{video: true}}}}
"""
    served = Served(tmp_path, config).wait_ready()
    for name in ("one", "two", "three"):
        served.wait_frames(name, 10)
    assert served.stop() == 0
    assert "every output finished" in served.output()
    out = tmp_path / "recordings"
    for name in ("one", "two", "three"):
        [video] = recordings(out, name, ".mp4")
        assert _decoded_frames(video) >= 10, name
    for name in ("one", "two"):
        lines = (recordings(out, name, ".jsonl")[0]).read_text()
        assert lines.endswith("\n") and all(json.loads(line) for line in lines.splitlines())
    assert recordings(out, "one", ".csv")[0].read_text().startswith("stream,frame")


def test_sighup_restarts_only_the_changed_stream(tmp_path):
    config = f'streams:\n  a: {{uri: "{PATTERN}", detect_fps: 5}}\n  b: {{uri: "{PATTERN}", detect_fps: 5}}\n'
    served = Served(tmp_path, config).wait_ready()
    try:
        served.wait_frames("a", 15)
        served.wait_frames("b", 15)
        served.config.write_text(
            f'streams:\n  a: {{uri: "{PATTERN}", detect_fps: 5}}\n  b: {{uri: "{PATTERN}", detect_fps: 2}}\n'
            f'  c: {{uri: "{PATTERN}", detect_fps: 5}}\n'
        )
        a_before = served.stream("a")["frames"]
        served.signal(signal.SIGHUP)
        served.wait_frames("c", 3)
        a, b = served.stream("a"), served.stream("b")
        assert a["frames"] > a_before  # never restarted: its count went on
        assert b["frames"] < 15 and b["config"]["detect_fps"] == 2  # restarted with its new settings
        served.config.write_text("streams: {a: {uri: 3}}\nbad: 1\n")  # a bad file changes nothing
        served.signal(signal.SIGHUP)
        time.sleep(1.5)
        assert {s["name"] for s in served.client.get("/api/streams").json()} == {"a", "b", "c"}
        assert "reload:" in served.output() and "bad" in served.output()
    finally:
        assert served.stop() == 0


# -- looping files (make serve's demo camera) ---------------------------------------------------------


def test_a_looped_file_plays_at_its_own_speed_and_goes_on(tmp_path):
    detector = vidpipe.models.load("ssd_mobilenet_v2_coco")
    pipeline = Pipeline(detector=detector, keep_alive=True)
    seen: list = []
    pipeline.on_result.append(lambda r: seen.append((r.frame.index, r.frame.pts, time.monotonic())))
    pipeline.start()
    clip = encode(tmp_path / "short.mp4", "x264enc ! mp4mux", 320, 240, frames=30)  # 1 s at 30 fps
    with vidpipe.open(clip) as source:
        info = source.info
    pipeline.add_stream(str(clip), "loop", loop=True, max_frames=int(info.frames) + 30)
    deadline = time.monotonic() + 120
    while pipeline.streams()[0]["state"] != "ended" and time.monotonic() < deadline:
        time.sleep(0.1)
    pipeline.stop()
    pipeline.wait(timeout=60)
    indices = [s[0] for s in seen]
    pts = [s[1] for s in seen]
    assert indices == list(range(int(info.frames) + 30))
    assert all(b > a for a, b in itertools.pairwise(pts))  # times go on across the loop
    elapsed = seen[-1][2] - seen[0][2]
    assert elapsed >= 0.8 * (len(seen) - 1) / info.fps  # paced: no faster than the file's own rate


# -- the web page in a real browser -----------------------------------------------------------------


def _chromium():
    playwright = pytest.importorskip("playwright.sync_api")
    import shutil

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed (Debian package chromium; make test installs it)")
    return playwright, exe


def _near(text: str, name: str, numbers: list[float]) -> bool:
    """``NAME=rel:x1,y1,...`` drawn within 1 % of the frame of where the test clicked."""
    given, _, values = text.partition("=rel:")
    got = [float(v) for v in values.split(",")]
    if given != name or len(got) != len(numbers):
        return False
    return all(abs(a - b) <= 0.01 for a, b in zip(got, numbers, strict=True))


def test_the_page_shows_live_pictures_and_adds_a_stream(tmp_path):
    playwright, exe = _chromium()
    config = f"""
streams:
  clip: {{uri: "{SAMPLE}", loop: true, detect_fps: 10, track: true, lines: ["door=rel:0.5,0,0.5,1"]}}
  pattern: {{uri: "{PATTERN}", detect_fps: 5}}
"""
    served = Served(tmp_path, config).wait_ready()
    served.wait_frames("clip", 5)
    served.wait_frames("pattern", 5)
    pixels = """(name) => {
        const img = document.querySelector(`.card[data-stream="${name}"] img`);
        if (!img || !img.complete || !img.naturalWidth) return -1;
        const c = document.createElement("canvas");
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext("2d"); g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        let sum = 0, sq = 0, n = 0;
        for (let i = 0; i < d.length; i += 4 * 97) { const v = d[i]; sum += v; sq += v * v; n++; }
        const mean = sum / n; return Math.sqrt(sq / n - mean * mean);
    }"""
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(served.url)
            for name in ("clip", "pattern"):
                page.wait_for_function(f"({pixels})('{name}') > 5", timeout=30_000)
            assert "running" in page.locator('.card[data-stream="clip"] .state').inner_text()
            page.fill("input[name=name]", "added")
            page.fill("input[name=uri]", PATTERN)
            page.fill("input[name=detect_fps]", "5")
            page.fill("input[name=lines]", "gate=rel:0.5,0,0.5,1")
            page.fill("input[name=zones]", "hall=rel:0,0,0.5,0,0.5,1,0,1")
            page.check("input[name=record]")
            page.click("button[type=submit]")
            page.wait_for_function(f"({pixels})('added') > 5", timeout=40_000)
            added = served.stream("added")
            assert added["frames"] > 0 and added["config"]["lines"] == ["gate=rel:0.5,0,0.5,1"]
            assert added["config"]["zones"] == ["hall=rel:0,0,0.5,0,0.5,1,0,1"] and added["config"]["record"]["video"]
            # draw a line on the clip's picture (two clicks; the prompt names it) and a zone on the pattern's
            names = ["exit", "corner"]
            page.on("dialog", lambda dialog: dialog.accept(names.pop(0)))
            picture = """(name) => {
                const img = document.querySelector(`.card[data-stream="${name}"] img`);
                const b = img.getBoundingClientRect(), r = img.naturalWidth / img.naturalHeight;
                let w = b.width, h = b.height; if (w / h > r) w = h * r; else h = w / r;
                return [b.left + (b.width - w) / 2, b.top + (b.height - h) / 2, w, h];
            }"""
            left, top, w, h = page.evaluate(f"({picture})('clip')")
            page.click('.card[data-stream="clip"] button.line')
            page.mouse.click(left + 0.25 * w, top + 0.1 * h)
            page.mouse.click(left + 0.25 * w, top + 0.9 * h)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(served.stream("clip")["config"]["lines"]) < 2:
                time.sleep(0.2)
            drawn = served.stream("clip")["config"]["lines"]
            assert drawn[0] == "door=rel:0.5,0,0.5,1" and _near(drawn[1], "exit", [0.25, 0.1, 0.25, 0.9]), drawn
            left, top, w, h = page.evaluate(f"({picture})('pattern')")
            page.click('.card[data-stream="pattern"] button.zone')
            for x, y in ((0.1, 0.1), (0.6, 0.1), (0.6, 0.7)):
                page.mouse.click(left + x * w, top + y * h)
            page.click('.card[data-stream="pattern"] button.zone')  # "finish zone"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not served.stream("pattern").get("config", {}).get("zones"):
                time.sleep(0.2)
            (zone,) = served.stream("pattern")["config"]["zones"]
            assert _near(zone, "corner", [0.1, 0.1, 0.6, 0.1, 0.6, 0.7]), zone
            assert served.stream("pattern")["uri"] == PATTERN  # (kept as it was: the page never sends it)
            # a click on a picture opens the stream's full view; Escape closes it
            page.wait_for_function(f"({pixels})('clip') > 5", timeout=30_000)
            page.click('.card[data-stream="clip"] .view')
            assert "full" in page.get_attribute('.card[data-stream="clip"]', "class")
            page.keyboard.press("Escape")
            assert "full" not in page.get_attribute('.card[data-stream="clip"]', "class")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(tmp_path / "page.png"))
            page.check("#mosaic-mode")
            page.wait_for_function(
                "() => { const i = document.getElementById('mosaic-img'); return i.complete && i.naturalWidth > 0; }",
                timeout=20_000,
            )
            browser.close()
    finally:
        served.stop()


@pytest.mark.ray
def test_a_service_on_a_cluster_shows_pictures_records_and_removes_streams(tmp_path):
    """``cluster:`` in the config: the streams run on two Ray workers; the page's pictures are encoded
    by the workers, the JSON Lines gathered here and the videos written by the workers, under one name;
    a worker killed by its PID hands its stream to the other."""
    pytest.importorskip("ray")
    from test_cluster import ray_left, worker_pids

    assert not ray_left(60), "a local Ray of an earlier test is still running"

    config = f"""
cluster: {{address: ray, workers: 2}}
model: {{backend: torch, precision: fp32}}
streams:
  door: {{uri: "{SAMPLE}", loop: true, detect_fps: 10, lines: ["door=0,150,384,150"], record: {{json: true}}}}
"""
    served = Served(tmp_path, config).wait_ready(180)
    try:
        served.wait_frames("door", 10, timeout=180)
        body = {"uri": PATTERN, "detect_fps": 5, "record": {"json": True, "video": True}}
        assert served.client.put("/api/streams/yard", json=body).status_code == 201
        served.wait_frames("yard", 15, timeout=120)
        listed = {s["name"]: s for s in served.client.get("/api/streams").json()}
        assert {s["worker"] for s in listed.values()} == {0, 1}
        assert listed["door"]["state"] == "running" and "door" in listed["door"]["counts"]["lines"]
        import io

        from PIL import Image

        response = served.client.get("/api/streams/yard/snapshot.jpg?height=120")
        assert response.status_code == 200
        image = Image.open(io.BytesIO(response.content))
        assert image.size == (160, 120) and np.array(image.convert("L")).std() > 5
        mosaic = _read_parts(f"{served.url}/api/mosaic.mjpeg?fps=4&height=240", 3)
        assert mosaic and Image.open(io.BytesIO(mosaic[-1])).height == 240
        assert 'vidpipe_stream_frames_total{stream="yard"}' in served.client.get("/metrics").text
        assert served.client.delete("/api/streams/yard").status_code == 204
        [video] = recordings(tmp_path / "recordings", "yard", ".mp4")  # written by its worker
        [lines] = recordings(tmp_path / "recordings", "yard", ".jsonl")  # gathered here
        assert video.stem == lines.stem and _decoded_frames(video) >= 15
        assert sum(1 for line in jsonl(lines) if "detections" in line) >= 15
        assert "yard" not in {s["name"] for s in served.client.get("/api/streams").json()}
        # a worker killed: its stream goes on on the other one, pictures included
        before = served.stream("door")
        assert len(worker_pids()) == 2 and before["worker_pid"] in worker_pids()
        subprocess.run(["kill", "-9", str(before["worker_pid"])], check=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            now = served.stream("door")
            if now["frames"] >= before["frames"] + 20 and len(worker_pids()) == 1:
                break
            time.sleep(0.3)
        assert now["frames"] >= before["frames"] + 20 and now["state"] == "running", now
        assert now["worker"] != before["worker"] and now["worker_pid"] != before["worker_pid"]
        assert served.client.get("/api/streams/door/snapshot.jpg").status_code == 200
    finally:
        code = served.stop(120)
    assert code == 0, served.output()
    [door] = recordings(tmp_path / "recordings", "door", ".jsonl")
    frames = [line["frame"] for line in jsonl(door) if "detections" in line]
    assert len(frames) >= 30 and frames == sorted(set(frames))  # (across the move: never twice, in order)
    assert not ray_left()


@pytest.mark.ray
def test_a_cluster_that_cannot_be_reached_is_one_error_line(tmp_path):
    pytest.importorskip("ray")
    config = f'cluster: {{address: "ray://127.0.0.1:9"}}\nstreams:\n  a: {{uri: "{PATTERN}"}}\n'
    (tmp_path / "v.yaml").write_text(config)
    result = vidpipe_cli("serve", "--config", str(tmp_path / "v.yaml"), "--port", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "vidpipe: error: --cluster ray://127.0.0.1:9: cannot connect (Connection refused)"
