"""The service attacked: hostile configuration files, event ids and query values out of range, secrets in
the answers to bad requests. Each test runs the real command line or the real service."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import vidpipe_cli
from serve_helpers import Broker, Listener, Served, free_port

PATTERN = "testsrc://ball?live=1&frames=100000000&width=160&height=120&fps=5"
LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)
HOSTILE_YAML = {
    "laughs": (LAUGHS, "values once its aliases are expanded"),
    "deep": ("streams: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    "itself": ("streams: &a\n  x: *a\n", "nested more than 64 levels deep"),
    "duplicate": (
        "streams:\n  cam: {uri: 'testsrc://ball'}\n  cam: {uri: 'testsrc://ball?width=320'}\n",
        "line 3: duplicate key 'cam'",
    ),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_YAML))
def test_hostile_yaml_is_one_line_and_exit_2_at_once(kind, tmp_path):
    """A billion laughs, a deep or self-referencing nest, a key given twice: one line naming the cause,
    exit 2, within seconds (the laughs took gigabytes and never ended; the nests were tracebacks; the
    second ``cam`` silently replaced the first)."""
    text, cause = HOSTILE_YAML[kind]
    config = tmp_path / "vidpipe.yaml"
    config.write_text(text)
    started = time.monotonic()
    result = vidpipe_cli("serve", "--config", str(config), timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vidpipe: error: {config}") and cause in lines[0], lines


def test_merge_keys_are_not_duplicates(tmp_path):
    """``<<: *defaults`` and a key that overrides one of them stays valid YAML."""
    from vidpipe.serve.config import load_config

    config = tmp_path / "vidpipe.yaml"
    config.write_text(
        "streams:\n  a: &d {uri: 'testsrc://ball', detect_fps: 2, track: true}\n  b:\n    <<: *d\n    detect_fps: 3\n"
    )
    streams = load_config(config).streams
    assert (streams["a"].detect_fps, streams["b"].detect_fps, streams["b"].track) == (2, 3, True)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One default service (127.0.0.1, no token, no configuration: the event store on)."""
    folder = tmp_path_factory.mktemp("serve-hostile")
    service = Served(folder, None).wait_ready()
    yield service
    service.stop()


@pytest.mark.parametrize(
    "path",
    [
        "/api/events/9223372036854775808",
        "/api/events/99999999999999999999999/snapshot.jpg",
        "/api/events/-99999999999999999999999/clip.mp4",
        "/api/events/0",
        "/api/events?before_id=99999999999999999999",
        "/api/events?since=nan",
        "/api/events?until=inf",
        "/api/events?since=-1e999",
    ],
)
def test_event_ids_and_times_out_of_range_are_422_with_the_reason(served, path):
    """An id beyond SQLite's integers was a 500 (OverflowError); ``nan``/``inf`` times matched nothing, 200."""
    response = served.client.get(path)
    assert response.status_code == 422, (path, response.status_code, response.text)
    assert response.json()["detail"], response.text


def test_a_bad_patch_or_put_answers_with_the_password_masked(served):
    """The stream's uri is shown masked; a PATCH whose problem is the whole stream (a loitering zone it
    does not have, a line name twice) answered the stored configuration, the real password in it."""
    secret = "Sup3rSecret"
    uri = f"rtsp://admin:{secret}@127.0.0.1:1/x"
    assert served.client.put("/api/streams/hidden", json={"uri": uri}).status_code == 201
    try:
        assert secret not in served.client.get("/api/streams/hidden").text
        for changes in ({"loitering": {"nope": 5}}, {"lines": ["a=0,0,1,1", "a=0,0,2,2"]}, {"uri": [uri]}):
            response = served.client.patch("/api/streams/hidden", json=changes)
            assert response.status_code == 422, response.text
            assert secret not in response.text and "admin:***@" in response.text, response.text
        response = served.client.put("/api/streams/other", json={"uri": uri, "loitering": {"nope": 5}})
        assert response.status_code == 422 and secret not in response.text, response.text
    finally:
        served.client.delete("/api/streams/hidden")


class _Hooked(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


SECRET_URIS = {
    "quote": ("rtsp://admin:it's'S3cret@127.0.0.1:1/x", "rtsp://admin:***@127.0.0.1:1/x"),
    "query": ("http://127.0.0.1:1/video.cgi?user=admin&pwd=S3cret", "http://127.0.0.1:1/video.cgi?user=admin&pwd=***"),
    # not legal in a URL, but typed: where the password ends is known only from the stream's uri itself
    "space": ("rtsp://admin:my S3cret@127.0.0.1:1/x", "rtsp://admin:***@127.0.0.1:1/x"),
    "dquote": ('rtsp://admin:a"S3cret@127.0.0.1:1/x', "rtsp://admin:***@127.0.0.1:1/x"),
}


def test_a_quote_in_a_password_and_a_password_in_the_query_are_masked_everywhere(tmp_path):
    """A password holding ``'`` (the mask stopped at it) and a camera's ``?pwd=`` were shown whole in the
    log, the API, the events (API, database) and the webhooks."""
    hooks = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hooked)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    streams = "".join(f"  {name}: {{uri: {json.dumps(uri)}}}\n" for name, (uri, _) in SECRET_URIS.items())
    hook = f"webhooks:\n  - {{url: 'http://127.0.0.1:{hooks.server_port}/h', events: [failed]}}\n"
    served = Served(tmp_path, "streams:\n" + streams + hook, "-v").wait_ready()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_Hooked.bodies) < len(SECRET_URIS):
            time.sleep(0.2)
        texts = {
            "streams": served.client.get("/api/streams").text,
            "events": served.client.get("/api/events").text,
            "metrics": served.client.get("/metrics").text,
            "webhooks": b"".join(_Hooked.bodies).decode(),
        }
    finally:
        served.stop()
        hooks.shutdown()
    texts["log"] = served.output()
    texts["database"] = (tmp_path / "recordings" / "events.db").read_bytes().decode("latin-1")
    for where, text in texts.items():
        assert "S3cret" not in text, (where, text)
    for _, masked in SECRET_URIS.values():
        for where in ("streams", "events", "webhooks", "log"):
            assert masked in texts[where], (where, masked, texts[where])


def test_receivers_that_never_answer_do_not_hold_the_stop(tmp_path):
    """32 webhooks whose receiver takes the connection and never answers (timeout 60 s): the stop waited
    1 s per hook for its request in flight (40 s in all); it waits 1 s in all and says what was left."""
    silent = socket.create_server(("127.0.0.1", 0), backlog=1000)  # connections queue; nobody answers
    hooks = "".join(
        f"  - {{url: 'http://127.0.0.1:{silent.getsockname()[1]}/h{i}', events: [connected], timeout: 60}}\n"
        for i in range(32)
    )
    served = Served(tmp_path, f"streams:\n  cam: {{uri: '{PATTERN}'}}\nwebhooks:\n{hooks}").wait_ready()
    try:
        served.wait_frames("cam", 1)
        assert "vidpipe_webhook_sent" in served.client.get("/metrics").text
        started = time.monotonic()
        assert served.stop() == 0
        took = time.monotonic() - started
    finally:
        served.kill()
        silent.close()
    assert took < 12, took
    assert "event(s) not delivered at the stop" in served.output()


@pytest.mark.parametrize("inside", ["", "/sub"])
def test_an_output_dir_that_is_a_file_is_one_line_and_exit_2(inside, tmp_path):
    """The service started anyway: no event store (events in memory only, lost at the stop), every
    recording failing, a confusing "[Errno 17] File exists" line."""
    (tmp_path / "afile").write_text("not a folder")
    config = tmp_path / "vidpipe.yaml"
    config.write_text(f"output_dir: {tmp_path / 'afile'}{inside}\nstreams:\n  cam: {{uri: '{PATTERN}'}}\n")
    result = vidpipe_cli("serve", "--port", str(free_port()), "--config", str(config), timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vidpipe: error: {config}: output_dir: "), lines
    assert "cannot be used" in lines[0] and "Traceback" not in result.stderr


def test_home_assistant_templates_find_lines_and_zones_named_with_an_emoji(tmp_path):
    """A line or zone named with a character beyond the BMP (🚪): its sensor's template quoted it as
    JSON's two ``\\uXXXX`` halves, which Home Assistant's Jinja reads as two lone surrogates: no key
    matched, the sensor was an error. The template rendered (jinja2, as HA does) now gives the count."""
    jinja2 = pytest.importorskip("jinja2")
    broker = Broker()
    listener = Listener(broker.port, "#")
    config = (
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}}}\nstreams:\n  cam:\n    uri: '{PATTERN}'\n"
        "    lines: ['🚪 door=rel:0.5,0,0.5,1']\n    zones: ['🪑=rel:0,0,1,0,1,1,0,1']\n"
    )
    served = Served(tmp_path, config).wait_ready()
    try:
        counts = json.loads(listener.wait_for("vidpipe/cam/counts"))
        configs = []
        for ending in ("_in/config", "_occupancy/config", "_occupied/config"):
            listener.wait_for("vidpipe/cam/status")  # (the configs are published before it)
            topic = next(t for t, *_ in listener.messages if t.startswith("homeassistant/") and t.endswith(ending))
            configs.append(json.loads(listener.wait_for(topic)))
    finally:
        served.stop()
        listener.close()
        broker.close()
    rendered = [jinja2.Environment().from_string(c["value_template"]).render(value_json=counts) for c in configs]
    assert rendered == [
        str(counts["lines"]["🚪 door"]["in"]),
        str(counts["zones"]["🪑"]["occupancy"]),
        "ON" if counts["zones"]["🪑"]["occupancy"] > 0 else "OFF",
    ], (rendered, configs)


def test_vidpipe_events_with_a_limit_beyond_sqlite_lists_them_all(tmp_path):
    """``vidpipe events --limit 99999999999999999999`` was a traceback (OverflowError)."""
    from vidpipe.serve.events import EventStore

    EventStore(tmp_path).close()
    result = vidpipe_cli("events", "--db", str(tmp_path / "events.db"), "--limit", "9" * 20)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == "(no events)"


@pytest.mark.parametrize("name", ["\x1b]2;owned\x07\x1b[2Jdoor", "door\nINFO vidpipe: forged", "a\x00b"])
def test_line_and_zone_names_with_control_characters_are_refused(served, name):
    """A name holding a terminal's escape or a line break was taken: ``vidpipe events`` printed it raw to
    the operator's terminal (its title set, the screen cleared) and a log line could be forged."""
    for kind, shape in (("lines", "=rel:0.5,0,0.5,1"), ("zones", "=rel:0,0,1,0,1,1")):
        response = served.client.put("/api/streams/ctl", json={"uri": PATTERN, kind: [name + shape]})
        assert response.status_code == 422, response.text
        assert "control character" in response.text and response.json()["detail"][0]["loc"][1] == kind
    assert served.client.get("/api/streams/ctl").status_code == 404


@pytest.mark.parametrize("name", ["events.db", "events.db-wal", "snapshots", "Snapshots"])
def test_stream_names_of_the_service_s_own_entries_are_refused(served, name, tmp_path):
    """A stream named ``events.db`` was created (201) and every recording and clip of it failed
    (``output_dir/events.db`` is the database: "Not a directory"); in the file too."""
    response = served.client.put(f"/api/streams/{name}", json={"uri": PATTERN, "record": {"json": True}})
    assert response.status_code == 422 and "event store" in response.text, response.text
    config = tmp_path / "vidpipe.yaml"
    config.write_text(f"streams:\n  {name}: {{uri: '{PATTERN}'}}\n")
    result = vidpipe_cli("serve", "--check", "--config", str(config))
    assert result.returncode == 2 and f"streams.{name}" in result.stderr and "event store" in result.stderr


def test_lines_and_zones_far_outside_the_frame(served):
    """A line or zone at 1e308 pixels was taken: drawing it raised (PIL: "too large to convert to C
    long"), which killed the event store's writer (no event stored after, nothing said) and made every
    snapshot.jpg a 500. Beyond ±100,000 pixels is a 422 now; at the bound the pictures are drawn."""
    far = {"lines": ["big=0,0,1e308,1e308"], "zones": ["z=0,0,1e308,0,1e308,1e308"]}
    for kind, shapes in far.items():
        response = served.client.put("/api/streams/far", json={"uri": PATTERN, "track": True, kind: shapes})
        assert response.status_code == 422 and "100,000" in response.text, response.text
    edge = {"lines": ["big=-100000,-100000,100000,100000"], "zones": ["z=-100000,-100000,100000,-100000,100000,100000"]}
    assert served.client.put("/api/streams/far", json={"uri": PATTERN, "track": True, **edge}).status_code == 201
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = served.client.get("/api/events?stream=far&type=zone_entered").json()
            if any(e["snapshot"] for e in found):
                break
            time.sleep(0.5)
        assert any(e["snapshot"] for e in found), found
        assert served.client.get("/api/streams/far/snapshot.jpg").status_code == 200
    finally:
        served.client.delete("/api/streams/far")


def test_a_line_or_zone_outside_a_stream_s_frames_fails_that_stream_alone(served):
    """A line drawn for a larger camera (outside this one's 160x120 frames) raised in the output thread
    and stopped the whole pipeline: every stream stalled, /healthz down, the API still said "running",
    nothing in the log. Now that stream fails with the reason; the others run on."""
    assert served.client.put("/api/streams/ok", json={"uri": PATTERN}).status_code == 201
    try:
        served.wait_frames("ok", 1)
        outside = {"lines": ["door=1000,0,1000,2000"]}, {"zones": ["z=1000,1000,2000,1000,2000,2000"]}
        for i, shapes in enumerate(outside):
            assert served.client.put(f"/api/streams/out{i}", json={"uri": PATTERN, **shapes}).status_code == 201
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(served.stream(f"out{i}")["state"] != "failed" for i in range(2)):
            time.sleep(0.2)
        for i in range(2):
            assert "lies outside the frames" in (served.stream(f"out{i}")["error"] or ""), served.stream(f"out{i}")
        before = served.stream("ok")["frames"]
        time.sleep(2)
        assert served.stream("ok")["frames"] > before and served.client.get("/healthz").status_code == 200
        failed = served.client.get("/api/events?type=failed").json()
        assert {e["stream"] for e in failed} >= {"out0", "out1"}, failed
    finally:
        for name in ("ok", "out0", "out1"):
            served.client.delete(f"/api/streams/{name}")


def test_a_snapshot_that_cannot_be_drawn_never_stops_the_store(tmp_path):
    """A shape PIL cannot draw (1e308 pixels: a stage of the user's, or any drawing bug) raised in the
    store's writer thread and ended it: that event and every later one were never stored, nothing said.
    The real store, fed a real frame whose shapes cannot be drawn: the rows are kept, without snapshot."""
    import torch

    from vidpipe.serve.events import EventStore
    from vidpipe.types import Detections, Event, Frame, Result, Shape

    store = EventStore(tmp_path)
    frame = Frame(torch.full((120, 160, 3), 90, dtype=torch.uint8), 3, 0.3, "cam")
    found = Detections(torch.tensor([[10.0, 20.0, 60.0, 100.0]]), torch.tensor([0.9]), torch.tensor([0]),
                       ["person"], torch.tensor([7]))  # fmt: skip
    bad = Result(frame, found, shapes=[Shape(((0.0, 0.0), (1e308, 1e308)), "far 0", arrow=True)])
    for i, result in enumerate((bad, Result(frame, found))):
        store.write(result)
        fields = {"line": "far", "direction": "in", "track_id": 7, "label": "person"}
        store.event(Event("cam", "line_crossed", f"crossing {i}", time.time(), fields))
    deadline = time.monotonic() + 20
    while store.stored + store.dropped < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    rows = store.query()
    store.close()
    assert [(r["message"], bool(r["snapshot"])) for r in rows] == [("crossing 1", True), ("crossing 0", False)]


def test_a_privacy_region_outside_a_stream_s_frames_fails_that_stream(served):
    """A privacy region drawn for a larger camera hid nothing of this one's 160x120 frames, and nothing
    said so: every picture showed what was to be hidden. Now that stream fails, naming the region."""
    shape = "1000,1000,2000,1000,2000,2000"
    assert served.client.put("/api/streams/priv", json={"uri": PATTERN, "privacy": [shape]}).status_code == 201
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and served.stream("priv")["state"] != "failed":
            time.sleep(0.2)
        stream = served.stream("priv")
        assert stream["state"] == "failed" and f"privacy region {shape}: lies outside" in stream["error"], stream
        assert served.client.get("/api/streams/priv/snapshot.jpg").status_code == 404  # no picture shown
    finally:
        served.client.delete("/api/streams/priv")


def test_retention_deletes_only_what_the_service_made(tmp_path):
    """``output_dir`` pointed at a folder shared with other files (a home folder, by mistake) with
    ``retention: {days: 30}``: every old .mp4, .jpg, .jsonl and .csv under it was deleted, the user's
    videos and photos among them. Only the service's own names are swept now."""
    from vidpipe.serve.events import EventStore
    from vidpipe.serve.retention import Retention

    def old(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
        os.utime(path, (time.time() - 86400 * 60, time.time() - 86400 * 60))
        return path

    foreign = ("Videos/holiday.mp4", "Pictures/2019/cat.jpg", "taxes.csv", "log.jsonl", "snapshots/cat.jpg",
               "Videos/clips/1999.mp4x", "Videos/20190101-1200.mp4")  # fmt: skip
    own = ("snapshots/door/20260101-000000-6.jpg", "door/clips/6.mp4", "door/20260101-000000.jsonl",
           "door/20260101-000000-2.csv", "door/20260101-000000.mp4", "door/camera-20260101-000000.mp4")  # fmt: skip
    theirs, ours = [old(tmp_path / p) for p in foreign], [old(tmp_path / p) for p in own]
    store = EventStore(tmp_path)
    try:
        deleted = Retention(tmp_path, store, days=30, max_gb=None).sweep()
    finally:
        store.close()
    assert sorted(deleted) == sorted(ours)
    assert all(path.exists() for path in theirs)
