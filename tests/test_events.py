"""The event store (issue 33): events in SQLite with a snapshot each, through the service's API and
``vidpipe events``, kept across a restart; a damaged database is one line and the service runs on."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import time

import httpx
import pytest
import torch
from conftest import SAMPLE, vidpipe_cli
from PIL import Image
from serve_helpers import Served

from vidpipe.serve.events import EventStore, iso, parse_time
from vidpipe.types import Detections, Event, Frame, Result

CONFIG = f"""
output_dir: out
streams:
  door: {{uri: "{SAMPLE}", loop: true, detect_fps: 10, track: true, lines: ["door=192,40,192,288"]}}
"""


def _result(stream: str = "cam", track: int = 7) -> Result:
    frame = Frame(torch.full((288, 384, 3), 90, dtype=torch.uint8), 3, 0.3, stream)
    found = Detections(torch.tensor([[10.0, 20.0, 110.0, 220.0], [200.0, 20.0, 260.0, 100.0]]),
                       torch.tensor([0.9, 0.5]), torch.tensor([1, 3]), ["person", "car"],
                       torch.tensor([track, 8]))  # fmt: skip
    return Result(frame, found)


def _crossing(stream: str = "cam", wall: float | None = None, track: int = 7) -> Event:
    fields = {"frame": 3, "pts": 0.3, "line": "door", "direction": "in", "track_id": track, "label": "person"}
    return Event(stream, "line_crossed", f"person {track} crossed door (in)", wall or time.time(), fields)


def _flush(store: EventStore, told: int) -> None:
    """Wait until the writer has stored (or dropped) the ``told`` events."""
    deadline = time.monotonic() + 20
    while store.stored + store.dropped < told and time.monotonic() < deadline:
        time.sleep(0.02)


def test_times_are_iso_8601_utc_with_milliseconds_or_epochs():
    assert iso(0.25) == "1970-01-01T00:00:00.250Z"
    assert parse_time("1970-01-01T00:00:01.5Z") == 1.5 == parse_time("1.5") == parse_time("1970-01-01T00:00:01.5")
    assert parse_time("1970-01-01T01:00:01+01:00") == 1.0
    with pytest.raises(ValueError, match="neither"):
        parse_time("yesterday")


def test_the_store_keeps_rows_and_snapshots_and_filters_them(tmp_path):
    store = EventStore(tmp_path)
    store.write(_result("../evil"))
    now = time.time()
    store.event(_crossing("../evil", now - 100))
    store.event(Event("../evil", "disconnected", "gone", now - 50))
    store.event(_crossing("../evil", now, track=9))  # not in the frame: no box, no snapshot
    _flush(store, 3)
    rows = store.query()
    assert [r["type"] for r in rows] == ["line_crossed", "disconnected", "line_crossed"]  # newest first
    first = rows[-1]
    assert first["box"] == [10.0, 20.0, 110.0, 220.0] and first["score"] == 0.9 and first["track_id"] == 7
    assert first["time"].endswith("Z") and first["line"] == "door" and first["direction"] == "in"
    assert first["clip"] is None and first["clip_ready"] == 0 and first["pts"] == 0.3
    assert rows[0]["snapshot"] is None and rows[0]["box"] is None
    file = store.snapshot_file(first)
    assert file.parent == (tmp_path / "snapshots" / "_evil").resolve()  # never outside its folder
    assert Image.open(file).format == "JPEG" and Image.open(file).size == (384, 288)
    assert [r["id"] for r in store.query(since=now - 60)] == [rows[0]["id"], rows[1]["id"]]
    assert [r["id"] for r in store.query(until=now - 60)] == [first["id"]]
    assert [r["id"] for r in store.query(limit=1, before_id=rows[0]["id"])] == [rows[1]["id"]]
    assert store.query(type="disconnected")[0]["message"] == "gone"
    store.close()
    again = EventStore(tmp_path)
    assert (
        len(again.query()) == 3
        and sqlite3.connect(tmp_path / "events.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    )
    again.close()


def test_a_full_queue_drops_and_counts_never_waits(tmp_path):
    store = EventStore(tmp_path, queue_size=2)
    with store._lock:  # the writer is stuck
        started = time.monotonic()
        for _ in range(50):
            store.event(_crossing())
        assert time.monotonic() - started < 0.5
    _flush(store, 50)
    assert store.dropped >= 45 and store.stored + store.dropped == 50
    store.close()


def test_a_damaged_database_is_one_line_and_no_store(tmp_path, caplog):
    (tmp_path / "events.db").write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.ERROR):
        assert EventStore.open(tmp_path) is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "events.db" in lines[0] and "without it" in lines[0], lines
    result = vidpipe_cli("events", "--db", str(tmp_path / "events.db"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr


def _crossings(served: Served, at_least: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = served.client.get("/api/events?type=line_crossed").json()
        if len([e for e in found if e["snapshot"]]) >= at_least:
            return found
        time.sleep(0.5)
    raise AssertionError(f"fewer than {at_least} crossings in {timeout} s: {served.output()[-2000:]}")


def test_a_service_keeps_events_with_snapshots_across_a_restart(tmp_path):
    served = Served(tmp_path, CONFIG).wait_ready()
    try:
        found = _crossings(served, 1)
        crossing = next(e for e in found if e["snapshot"])
        assert crossing["stream"] == "door" and crossing["line"] == "door" and crossing["label"]
        one = served.client.get(f"/api/events/{crossing['id']}").json()
        assert one == crossing
        picture = served.client.get(f"/api/events/{crossing['id']}/snapshot.jpg")
        assert picture.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(picture.content)).size == (384, 288)
        connected = served.client.get("/api/events?type=connected").json()
        missing = served.client.get(f"/api/events/{connected[0]['id']}/snapshot.jpg") if connected else None
        assert missing is None or (missing.status_code == 404 and "no snapshot" in missing.json()["detail"])
        assert served.client.get("/api/events/999999").status_code == 404
        later = served.client.get(f"/api/events?since={crossing['time']}").json()
        assert later and all(e["wall"] >= crossing["wall"] for e in later)
        assert all(
            e["id"] < crossing["id"] for e in served.client.get(f"/api/events?before_id={crossing['id']}").json()
        )
        assert served.client.get("/api/events?since=yesterday").status_code == 422
        assert "vidpipe_events_stored" in served.client.get("/metrics").text
    finally:
        assert served.stop() == 0
    absolute = tmp_path / "absolute.yaml"
    absolute.write_text(CONFIG.replace("output_dir: out", f"output_dir: {tmp_path / 'out'}"))
    listed = vidpipe_cli("events", "--config", str(absolute), "--json", "--type", "line_crossed")
    assert listed.returncode == 0 and all(
        json.loads(line)["type"] == "line_crossed" for line in listed.stdout.splitlines()
    )
    result = vidpipe_cli("events", "--db", str(tmp_path / "out" / "events.db"), "--json", "--type", "line_crossed")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert crossing["id"] in [e["id"] for e in lines]
    table = vidpipe_cli("events", "--db", str(tmp_path / "out" / "events.db"), "--stream", "door")
    assert table.stdout.startswith("id") and "line_crossed" in table.stdout

    served = Served(tmp_path, CONFIG).wait_ready()  # the same output_dir
    try:
        kept = served.client.get(f"/api/events/{crossing['id']}").json()
        assert kept["snapshot"] == crossing["snapshot"]
        assert served.client.get(f"/api/events/{crossing['id']}/snapshot.jpg").status_code == 200
        (tmp_path / "out" / crossing["snapshot"]).unlink()
        gone = served.client.get(f"/api/events/{crossing['id']}/snapshot.jpg")
        assert gone.status_code == 404 and "gone" in gone.json()["detail"]
    finally:
        assert served.stop() == 0


def test_a_damaged_database_file_is_one_line_and_the_service_runs(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "events.db").write_bytes(b"garbage " * 1000)
    served = Served(tmp_path, CONFIG, "--token", "events-token-33", token="events-token-33").wait_ready()
    try:
        served.wait_frames("door", 5)
        assert served.client.get("/api/events").status_code == 200  # the recent events kept in memory
        assert served.client.get("/api/events/1").status_code == 404
        for path in ("/api/events", "/api/events/1", "/api/events/1/snapshot.jpg"):  # the token as for the rest
            assert httpx.get(served.url + path).status_code == 401
    finally:
        served.stop()
    lines = [line for line in served.output().splitlines() if "event store" in line]
    assert len(lines) == 1 and "events.db" in lines[0], lines


def test_a_locked_database_is_one_line_and_no_store(tmp_path, caplog):
    holder = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")  # another program holds it
    try:
        with caplog.at_level(logging.ERROR):
            assert EventStore.open(tmp_path) is None
    finally:
        holder.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "locked" in lines[0], lines


def test_snapshots_that_cannot_be_written_leave_the_rows_and_resume(tmp_path, caplog):
    store = EventStore(tmp_path)
    (tmp_path / "snapshots").write_text("in the way")  # (as a full disk: the writes fail)
    store.write(_result())
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            store.event(_crossing())
        _flush(store, 3)
    assert [r["snapshot"] for r in store.query()] == [None] * 3 and store.stored == 3
    assert len([r for r in caplog.records if "snapshots not written" in r.getMessage()]) == 1
    (tmp_path / "snapshots").unlink()
    store.event(_crossing())
    _flush(store, 4)
    assert store.snapshot_file(store.query(limit=1)[0]) is not None
    store.close()
