"""Clips and recordings of the camera's own video (issue 33): a ring of segments without re-encoding, a
clip per event covering its pre- and post-roll that plays, the API's clip, retention oldest first and
never outside ``output_dir``, a full disk said once and survived."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from conftest import SAMPLE, vidpipe_cli
from serve_helpers import Served

import vidpipe
from vidpipe.gst import Gst
from vidpipe.gst import segments as segments_module
from vidpipe.gst.clips import cut, duration
from vidpipe.gst.segments import CameraRecorder
from vidpipe.serve import clips as clips_module
from vidpipe.serve.clips import ClipMaker
from vidpipe.serve.events import SCHEMA, EventStore
from vidpipe.serve.retention import Retention
from vidpipe.types import Event

PRE, POST = 2.0, 2.0
CONFIG = f"""
output_dir: out
events: {{clips: {{pre_roll: {PRE}, post_roll: {POST}}}}}
streams:
  door:
    uri: "{SAMPLE}"
    loop: true
    detect_fps: 10
    track: true
    lines: ["door=192,40,192,288"]
    record: {{video: true, annotated: false}}
"""


def _frames(path: Path) -> int:
    """The frames a file decodes to (it plays), or an AssertionError with GStreamer's error."""
    pipeline = Gst.parse_launch(f'filesrc location="{path}" ! qtdemux ! avdec_h264 ! fakesink name=sink')
    counted = [0]

    def count(_pad, _info):
        counted[0] += 1
        return Gst.PadProbeReturn.OK

    pipeline.get_by_name("sink").get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, count)
    pipeline.set_state(Gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(30 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    assert message is not None and message.type == Gst.MessageType.EOS, message and message.parse_error()
    return counted[0]


def _with_clip(served: Served, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in served.client.get("/api/events?type=line_crossed").json() if e["clip_ready"]]
        if found:
            return found[-1]
        time.sleep(0.5)
    raise AssertionError(f"no clip in {timeout} s: {served.output()[-3000:]}")


def test_a_service_cuts_a_clip_per_event_from_the_cameras_own_stream(tmp_path):
    served = Served(tmp_path, CONFIG).wait_ready()
    out = tmp_path / "out"
    try:
        crossing = _with_clip(served)
        response = served.client.get(f"/api/events/{crossing['id']}/clip.mp4")
        assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
        clip = tmp_path / "clip.mp4"
        clip.write_bytes(response.content)
        assert crossing["clip"] == f"door/clips/{crossing['id']}.mp4"
        assert duration(clip) >= PRE + POST - 0.1  # whole segments: at least the pre- and post-roll
        assert _frames(clip) >= (PRE + POST) * 25
        assert clip.read_bytes()[4:8] == b"ftyp" and b"mvex" in clip.read_bytes()[:4096]  # fragmented MP4
        _plays_on_the_page(served, crossing["id"], tmp_path / "page.png")
        connected = served.client.get("/api/events?type=connected").json()[0]
        none = served.client.get(f"/api/events/{connected['id']}/clip.mp4")
        assert none.status_code == 404 and "line, zone and loitering events only" in none.json()["detail"]
        ring = sorted(p.name for p in (out / "door" / "segments").iterdir())
        assert "index.json" in ring and all(n.endswith(".ts") for n in ring if not n.startswith("index.json")), ring
        quiet = {"uri": "testsrc://ball?width=160&height=120&fps=10&live=1", "events": {"clips": False}}
        assert served.client.put("/api/streams/quiet", json=quiet).status_code == 201
        served.wait_frames("quiet", 5)
        assert not (out / "quiet" / "segments").exists()  # a stream's own events: no clips there
        figures = served.client.get("/metrics").text
        made = [line for line in figures.splitlines() if line.startswith("vidpipe_clips_made_total ")]
        assert made and float(made[0].split()[1]) >= 1, figures
        assert 'vidpipe_camera_recording_dropped_total{stream="door"} 0.0' in figures
        # retention (here in the test's process, on the service's files): the clip goes, the row stays
        store, hour_ago = EventStore(out), time.time() - 3600
        os.utime(out / crossing["clip"], (hour_ago, hour_ago))  # (files written just now are never swept)
        try:
            assert out / crossing["clip"] in Retention(out, store, days=None, max_gb=1e-9).sweep()
        finally:
            store.close()
        evicted = served.client.get(f"/api/events/{crossing['id']}")
        assert evicted.json()["evicted"] == 1 and evicted.json()["clip"] is None
        gone = served.client.get(f"/api/events/{crossing['id']}/clip.mp4")
        assert gone.status_code == 410 and "retention" in gone.json()["detail"]
    finally:
        assert served.stop() == 0
    recordings = sorted((out / "door").glob("camera-*.mp4"))  # record: {video: true, annotated: false}
    assert recordings and _frames(recordings[-1]) > 0
    assert not [p for p in (out / "door").glob("*.mp4") if not p.name.startswith("camera-")]  # not re-encoded


def _plays_on_the_page(served: Served, event_id: int, screenshot: Path) -> None:
    """The page lists the event; a click on it plays its clip in a real browser (Debian's chromium)."""
    playwright = pytest.importorskip("playwright.sync_api")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed (Debian package chromium; make test installs it)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(served.url)
            page.click(f'#event-list li[data-id="{event_id}"]', timeout=20_000)
            page.wait_for_function(
                "() => { const v = document.querySelector('#player video');"
                " return v.readyState >= 2 && v.videoWidth === 384 && v.currentTime > 0.5; }",
                timeout=20_000,
            )
            page.screenshot(path=str(screenshot))
        finally:
            browser.close()


def _file(path: Path, size: int, age: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    moment = time.time() - age
    os.utime(path, (moment, moment))
    return path


def test_retention_deletes_oldest_first_and_never_outside_output_dir(tmp_path):
    out, outside = tmp_path / "out", _file(tmp_path / "elsewhere" / "precious.mp4", 5000, 10**6)
    store = EventStore(out)
    files = [_file(out / "door" / "clips" / f"{i}.mp4", 1000, 10_000 - i * 1000) for i in range(1, 6)]
    snapshot = _file(out / "snapshots" / "door" / "20260101-000000-6.jpg", 1000, 20_000)
    fresh = _file(out / "door" / "camera-20260101-000000.mp4", 10_000, 10)  # being written: never deleted
    ring = _file(out / "door" / "segments" / "1-1-00000.ts", 1000, 50_000)  # the ring keeps itself
    (out / "door" / "clips" / "link.mp4").symlink_to(outside)
    (out / "escape").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    for i in range(1, len(files) + 1):
        store.event(Event("door", "line_crossed", "crossed", time.time(), {"track_id": i}))
    store.event(Event("door", "zone_entered", "in", time.time(), {"track_id": 9}))
    deadline = time.monotonic() + 10
    while store.stored < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    for i, file in enumerate(files, 1):
        store.set_clip(i, file.relative_to(out).as_posix())
    with store._lock, store._db:
        store._db.execute("UPDATE events SET snapshot = ? WHERE id = 6", ("snapshots/door/20260101-000000-6.jpg",))
    deleted = Retention(out, store, days=None, max_gb=13_000 / 1e9).sweep()  # 16 kB, 10 kB of it being written
    assert deleted == [snapshot, files[0], files[1]]  # the oldest first, until 13 kB are left
    assert outside.exists() and fresh.exists() and ring.exists() and (out / "door" / "clips" / "link.mp4").is_symlink()
    rows = {row["id"]: row for row in store.query()}
    assert [rows[i]["evicted"] for i in range(1, 7)] == [1, 1, 0, 0, 0, 1]
    assert rows[1]["clip"] is None and rows[4]["clip"] == "door/clips/4.mp4" and rows[6]["snapshot"] is None
    assert Retention(out, store, days=6500 / 86400, max_gb=None).sweep() == [files[2]]  # older than 6500 s
    store.close()
    assert outside.exists()


@contextlib.contextmanager
def _tiny_disk(folder: Path):
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("a tiny tmpfs cannot be mounted here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_is_said_once_and_clips_resume_when_space_is_back(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(clips_module, "RETRY_S", 0.5)
    camera = CameraRecorder(tmp_path / "ring", keep=60, segment_s=1.0)
    source = vidpipe.open("testsrc://ball?width=160&height=120&fps=10", tap=camera.attach, stream="cam", pace=True)
    with _tiny_disk(tmp_path / "disk") as disk:
        store = EventStore(disk)
        maker = ClipMaker(store, {"cam": camera})
        maker.rolls["cam"] = (0.5, 0.5)
        filler = disk / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as file:
            while True:
                file.write(b"\0" * 65536)
        try:
            with caplog.at_level(logging.WARNING):
                frames = iter(source)
                for i in range(30):  # 3 s of a 10 fps test pattern
                    frame = next(frames)
                    if i in (10, 12):
                        maker.add(i, Event("cam", "line_crossed", "crossed", frame.wall))
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and sum("clips:" in r.getMessage() for r in caplog.records) < 1:
                    time.sleep(0.1)
                time.sleep(1.5)  # more tries fail, unsaid
                filler.unlink()  # space is back
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and maker.made < 2:
                    time.sleep(0.1)
        finally:
            source.close()
            camera.close()
            maker.close()
            store.close()
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("clips:")]
        assert maker.made == 2, said
        assert len(said) == 2 and "No space left" in said[0] and "written again" in said[1], said
        assert _frames(disk / "cam" / "clips" / "10.mp4") > 0


def test_a_full_disk_stops_the_ring_once_and_it_resumes(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(segments_module, "RETRY_S", 0.5)
    with _tiny_disk(tmp_path / "disk") as disk:
        camera = CameraRecorder(disk / "cam", keep=60, segment_s=0.5)
        filler = disk / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as file:
            while True:
                file.write(b"\0" * 65536)
        source = vidpipe.open("testsrc://ball?width=160&height=120&fps=10", tap=camera.attach, stream="cam", pace=True)
        try:
            with caplog.at_level(logging.WARNING):
                frames = iter(source)
                for _ in range(20):  # 2 s on a full disk: the source goes on
                    next(frames)
                filler.unlink()
                for _ in range(30):
                    next(frames)
        finally:
            source.close()
            camera.close()
        said = [r.getMessage() for r in caplog.records if "camera recording" in r.getMessage()]
        assert len(said) == 2 and "stopped" in said[0] and "resumed" in said[1], said
        assert camera.segments and all(s.path.is_file() for s in camera.segments)


def test_a_store_of_the_earlier_version_gains_the_evicted_and_clip_failed_columns(tmp_path):
    old = sqlite3.connect(tmp_path / "events.db")
    schema = SCHEMA.replace(",\n    evicted INTEGER NOT NULL DEFAULT 0", "").replace(" clip_failed TEXT,", "")
    assert "evicted" not in schema and "clip_failed" not in schema
    old.executescript(schema)
    old.execute("INSERT INTO events (stream, type, time, wall) VALUES ('door', 'line_crossed', 'x', 1.0)")
    old.commit()
    old.close()
    store = EventStore(tmp_path)
    rows = [(row["id"], row["evicted"], row["clip"], row["clip_failed"]) for row in store.query()]
    assert rows == [(1, 0, None, None)]
    store.close()


def test_detect_with_evidence_writes_the_store_snapshots_and_clips_of_a_file(tmp_path):
    out = tmp_path / "evidence"
    result = vidpipe_cli("detect", str(SAMPLE), "--track", "--line", "door=192,40,192,288", "--detect-fps", "10",
                         "--max-frames", "110", "-q", "--evidence", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    store = EventStore(out)
    try:
        crossings = store.query(type="line_crossed")
    finally:
        store.close()
    assert crossings and all(c["clip_ready"] and c["snapshot"] for c in crossings), crossings
    first = min(crossings, key=lambda c: c["pts"])  # a file read at full speed: mapped by stream time
    assert duration(out / first["clip"]) >= min(first["pts"], 5.0) + 5.0 - 0.1 and _frames(out / first["clip"]) > 0
    assert not (out / "0" / "segments").exists()  # the run's ring is deleted at its end


def _record(camera: CameraRecorder, frames: int) -> None:
    """``frames`` frames of a 160×120 test pattern at 10 fps (at its own pace) through ``camera``, then
    the source and the camera closed."""
    source = vidpipe.open("testsrc://ball?width=160&height=120&fps=10", tap=camera.attach, stream="cam", pace=True)
    try:
        for _, _frame in zip(range(frames), source, strict=False):
            pass
    finally:
        source.close()
        camera.close()


def test_camera_files_are_cut_at_each_hour_and_keep_every_frame(tmp_path, monkeypatch):
    monkeypatch.setattr(segments_module, "HOUR_S", 1)  # (an "hour" of a second)
    camera = CameraRecorder(tmp_path / "cam", keep=None, hourly=True, segment_s=0.5)
    _record(camera, 40)
    files = sorted((tmp_path / "cam").glob("camera-*.mp4"))
    assert len(files) >= 3 and not (tmp_path / "cam" / "segments").exists(), files
    # every frame read is in one file or the next (cut at keyframes), and those queued ahead of the reader
    assert 38 <= sum(_frames(f) for f in files) <= 40 + 4 + 8, files


def test_a_clip_cut_when_the_service_was_killed_is_never_served_and_its_remains_go(tmp_path):
    """A clip is cut beside its name (``.part``) and renamed when whole, and only then named in its event's
    row: a service killed mid-cut leaves a ``.part`` that no row names, and the next start removes it."""
    folder = tmp_path / "cam" / "clips"
    folder.mkdir(parents=True)
    (folder / "7.mp4.part").write_bytes(b"half a clip")
    (folder / "6.mp4").write_bytes(b"a whole clip")
    store = EventStore(tmp_path)
    try:
        maker = ClipMaker(store, {})
        maker.close()
    finally:
        store.close()
    assert sorted(p.name for p in folder.iterdir()) == ["6.mp4"]


KILLED_POST = 8.0  # (the sample's keyframes are 8.3 s apart: its ring segments are that long)
KILLED = CONFIG.replace(f"post_roll: {POST}", f"post_roll: {KILLED_POST}").replace(
    "    record: {video: true, annotated: false}\n", ""
)


def _killed_before_its_post_roll(served: Served, timeout: float = 60) -> tuple[dict, dict]:
    """A line event whose post-roll has not passed, once the ring's index lists a segment from before its
    pre-roll whose video past the event is on disk (closed, or being written: the sample's 8.3 s GOPs make
    its first segment close only at 16.7 s); the service SIGKILLed then, before the post-roll passed.
    The event and that segment's index entry."""
    ring = served.folder / "out" / "door" / "segments"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in served.client.get("/api/events?type=line_crossed").json() if not e["clip_ready"]]
        fresh = [e for e in found if e["wall"] > time.time() - 2.0]
        if fresh:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no line event in {timeout} s: {served.output()[-3000:]}")
    event, segment = fresh[0], {}
    while not segment and time.time() < event["wall"] + KILLED_POST - 1.0:
        with contextlib.suppress(OSError, ValueError):
            for entry in json.loads((ring / "index.json").read_text())["segments"]:
                file = (ring / entry["file"]).stat()
                on_disk = file.st_mtime if entry.get("open") and file.st_size else entry.get("end", 0.0)
                if entry["start"] < event["wall"] - PRE and on_disk > event["wall"] + 0.5:
                    segment = entry
        time.sleep(0.05)
    served.kill()  # SIGKILL: nothing finalised, the clips' queue lost with the process
    assert time.time() < event["wall"] + KILLED_POST, "killed after the post-roll"
    assert not (served.folder / "out" / "door" / "clips" / f"{event['id']}.mp4").exists()
    return event, segment


def _settled(served: Served, event_id: int, timeout: float = 30) -> dict:
    """The event's row once its clip is made or given up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = served.client.get(f"/api/events/{event_id}").json()
        if record["clip_ready"] or record.get("clip_failed"):
            return record
        time.sleep(0.3)
    raise AssertionError(f"event {event_id}: {record} after {timeout} s: {served.output()[-3000:]}")


def test_a_clip_due_when_the_service_was_killed_is_cut_after_the_restart(tmp_path):
    """SIGKILL while an event's post-roll runs: the next start adopts the ring's segments (their times in
    the ring's index on disk; here the one being written at the kill, up to its last write) and cuts the
    clip from them, covering the event's time."""
    event, segment = _killed_before_its_post_roll(Served(tmp_path, KILLED).wait_ready())
    served = Served(tmp_path, KILLED).wait_ready()
    try:
        record = _settled(served, event["id"])
        assert record["clip_ready"] and record["clip"] == f"door/clips/{event['id']}.mp4", record
        assert record["clip_failed"] is None
        assert segment, "no video past the event was on disk before the post-roll passed"
        clip = tmp_path / "out" / record["clip"]
        seconds, into = duration(clip), event["wall"] - segment["start"]  # (the event, that far into the clip)
        assert seconds >= into + 0.5 and into >= PRE, (seconds, into)  # the pre-roll, the event and after it
        assert _frames(clip) >= seconds * 30 - 2
        assert served.client.get(f"/api/events/{event['id']}/clip.mp4").status_code == 200
    finally:
        assert served.stop() == 0


def test_a_clip_due_when_the_service_was_killed_whose_video_is_gone_says_so(tmp_path):
    """The same kill, but the ring's segments deleted before the restart: the event is given up, and its
    row and the API say why (never silently without a clip)."""
    event, _ = _killed_before_its_post_roll(Served(tmp_path, KILLED).wait_ready())
    for segment in (tmp_path / "out" / "door" / "segments").glob("*.ts"):
        segment.unlink()
    served = Served(tmp_path, KILLED).wait_ready()
    try:
        record = _settled(served, event["id"])
        assert not record["clip_ready"] and "not on disk at the restart" in record["clip_failed"], record
        answer = served.client.get(f"/api/events/{event['id']}/clip.mp4")
        assert answer.status_code == 404 and "not on disk at the restart" in answer.json()["detail"]
    finally:
        assert served.stop() == 0


def test_a_next_recorder_adopts_the_ring_its_index_lists_and_deletes_only_its_own_other_files(tmp_path):
    """The ring's index on disk: a next recorder of the folder (``adopt``) adopts the segments it lists
    within ``keep`` (timelines of their own, below 0), deletes the other files named as the ring names
    them, and leaves a user's file alone; an index entry naming a path outside or another parser is
    ignored; without ``adopt`` the earlier ring and its index go."""
    camera = CameraRecorder(tmp_path / "cam", keep=60, segment_s=0.5, adopt=True)
    _record(camera, 25)
    ring = tmp_path / "cam" / "segments"
    index = json.loads((ring / "index.json").read_text())
    assert len(index["segments"]) == len(camera.segments) >= 3
    index["segments"] += [dict(index["segments"][0], file="../../1-1-00000.ts"),
                          dict(index["segments"][0], parser="fakesink name=x ! h264parse")]  # fmt: skip
    (ring / "index.json").write_text(json.dumps(index))
    (ring / "notes.ts").write_bytes(b"a user's file")
    (ring / "1-9-00000.ts").write_bytes(b"an earlier ring's, not listed")
    again = CameraRecorder(tmp_path / "cam", keep=60, segment_s=0.5, adopt=True)
    assert [(s.path, s.start, s.end) for s in again.adopted] == [(s.path, s.start, s.end) for s in camera.segments]
    assert {s.session for s in again.adopted} == {-1} and again.earlier_from == camera.segments[0].start
    assert (ring / "notes.ts").exists() and not (ring / "1-9-00000.ts").exists()
    first, last = camera.segments[0], camera.segments[-1]
    assert again.covering(first.start, last.end, earlier=True) == again.adopted and not again.covering(0, 2e9)
    assert _frames_ts(again.adopted) > 0
    CameraRecorder(tmp_path / "cam", keep=60, adopt=False)
    assert sorted(p.name for p in ring.iterdir()) == ["notes.ts"]


def _frames_ts(parts) -> int:
    """The frames of ring segments remuxed into a clip (they play)."""
    out = parts[0].path.parent.parent / "clip.mp4"
    cut([p.path for p in parts], out)
    return _frames(out)


def test_the_segment_being_written_at_a_kill_is_adopted_up_to_its_last_write(tmp_path):
    """A kill leaves the segment being written listed as open in the index: the next recorder adopts it,
    ending at its file's last write, and it plays (a copy of the ring taken mid-recording stands for
    what a SIGKILL leaves: the process cannot be killed here, the copy is what was on disk then)."""
    camera = CameraRecorder(tmp_path / "cam", keep=60, segment_s=1.0, adopt=True)
    # (a small picture, ~10 kB a segment: on disk only because the ring's files are written unbuffered)
    source = vidpipe.open("testsrc://ball?width=160&height=120&fps=10", tap=camera.attach, stream="cam", pace=True)
    ring, killed = tmp_path / "cam" / "segments", tmp_path / "killed" / "segments"
    try:
        for _, _frame in zip(range(150), source, strict=False):  # until a closed segment and an open one with video
            with contextlib.suppress(OSError, ValueError):
                listed = json.loads((ring / "index.json").read_text())["segments"]
                opened = [ring / s["file"] for s in listed if s.get("open")]
                if len(listed) >= 2 and opened and opened[0].stat().st_size > 0:
                    break
        killed.mkdir(parents=True)
        shutil.copy2(ring / "index.json", killed)  # (the index first: a file it lists is as far as it got)
        for file in ring.glob("*.ts"):
            shutil.copy2(file, killed)
    finally:
        source.close()
        camera.close()
    listed = json.loads((killed / "index.json").read_text())["segments"]
    opened = [s["file"] for s in listed if s.get("open")]
    adopted = CameraRecorder(tmp_path / "killed", keep=60, adopt=True).adopted
    assert opened and opened[0] in [s.path.name for s in adopted], (listed, adopted)
    last = next(s for s in adopted if s.path.name == opened[0])
    assert last.end == (killed / opened[0]).stat().st_mtime and last.session == adopted[0].session
    assert _frames_ts(adopted) >= 10


def test_an_index_entry_with_a_number_too_big_is_left_out_and_the_others_adopted(tmp_path):
    """A damaged index (a session or a time too big for a number: 1e999, 10**400) loses only that entry:
    the recorder still starts and adopts the others."""
    ring = tmp_path / "cam" / "segments"
    ring.mkdir(parents=True)
    now = time.time()
    good = {"file": "1-1-00000.ts", "session": 1, "start": now - 5, "end": now - 3, "pts_start": 0.0, "pts_end": 2.0}
    for name in ("1-1-00000.ts", "1-1-00001.ts", "1-1-00002.ts"):
        (ring / name).write_bytes(b"video")
    text = json.dumps({"version": 1, "segments": [good, dict(good, file="1-1-00001.ts", session="SESSION"),
                                                  dict(good, file="1-1-00002.ts", start="START")]})  # fmt: skip
    (ring / "index.json").write_text(text.replace('"SESSION"', "1e999").replace('"START"', "1" + "0" * 400))
    camera = CameraRecorder(tmp_path / "cam", keep=60, adopt=True)
    assert [s.path.name for s in camera.adopted] == ["1-1-00000.ts"]
