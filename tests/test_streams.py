"""Many sources in one pipeline: naming, fair cross-stream batching, per-stream outputs, reconnection."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
from pathlib import Path

import jsonschema
import pytest
import torch
from conftest import start_detect, start_server, vidpipe_cli

import vidpipe
from media import encode
from vidpipe import models
from vidpipe.errors import DecodeError, NotAVideoError, StreamUnreachableError, VidpipeError
from vidpipe.gst import GLib, Gst
from vidpipe.gst.bus import error_from_message
from vidpipe.gst.uri import parse_source
from vidpipe.pipeline import Batcher, StreamStats, stream_specs
from vidpipe.pipeline.batcher import End
from vidpipe.pipeline.inflight import InFlight, default_in_flight
from vidpipe.sinks import JsonlSink, VideoSink
from vidpipe.sinks.jsonl import SCHEMA_FILE
from vidpipe.types import Detections, Event, Frame, Result, SourceInfo

SCHEMA = json.loads(SCHEMA_FILE.read_text())


def _records(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        jsonschema.validate(record, SCHEMA)
    return records


def _frames_of(records: list[dict], stream: str) -> list[dict]:
    return [r for r in records if r["stream"] == stream and "event" not in r]


def _count(path: Path) -> int:
    with vidpipe.open(path) as src:
        return sum(1 for _ in src)


@pytest.fixture(scope="module")
def detector():
    return models.load("ssd_mobilenet_v2_coco")


def _write(path: Path, frames: list[Frame], size: tuple[int, int]) -> Path:
    """Encode frames (scaled to ``size``) with vidpipe's own video sink, nothing drawn."""
    sink = VideoSink(path, annotate=False)
    sink.open_stream(SourceInfo(str(path), size[0], size[1], 30.0, None, None, None, None, False))
    for frame in frames:
        sink.write(Result(frame, Detections.empty()))
    sink.close()
    return path


@pytest.fixture(scope="module")
def three_clips(sample, tmp_path_factory) -> list[Path]:
    """Three different inputs of different lengths: the part of the bundled clip where a person walks,
    at two sizes, and a synthetic pattern."""
    folder = tmp_path_factory.mktemp("streams")
    with vidpipe.open(sample) as src:
        frames = [f for f, _ in zip(src, range(290), strict=False)][200:]
    first = _write(folder / "first.mp4", frames[:45], (384, 288))
    scaled = _write(folder / "scaled.mkv", frames[30:90], (480, 360))
    ball = encode(folder / "ball.webm", "vp9enc deadline=1 ! webmmux", 320, 240, frames=30)
    return [first, scaled, ball]


# -- naming --------------------------------------------------------------------------------------------------


def test_stream_names(tmp_path):
    specs = stream_specs(["a.mp4", "gate=rtsp://cam1/stream", "testsrc://ball?width=64&height=48"])
    assert [(s.name, s.source) for s in specs] == [
        ("0", "a.mp4"),
        ("gate", "rtsp://cam1/stream"),
        ("2", "testsrc://ball?width=64&height=48"),
    ]
    odd = tmp_path / "x=y.mp4"
    odd.write_bytes(b"")
    assert stream_specs([str(odd)])[0].source == str(odd)  # an existing file keeps its '=' in the name
    with pytest.raises(VidpipeError, match="'cam' is given twice"):
        stream_specs(["cam=a.mp4", "cam=b.mp4"])


def test_sources_file_and_unique_names(three_clips, tmp_path):
    listing = tmp_path / "streams.txt"
    listing.write_text(f"# cameras\n\nfirst={three_clips[0]}\n  {three_clips[2]}  # the pattern\n")
    jsonl = tmp_path / "d.jsonl"
    result = vidpipe_cli("detect", "--sources", str(listing), "--json", str(jsonl))
    assert result.returncode == 0, result.stderr
    records = _records(jsonl)
    assert {r["stream"] for r in records} == {"first", "1"}
    assert len(_frames_of(records, "first")) == _count(three_clips[0])
    assert len(_frames_of(records, "1")) == _count(three_clips[2])
    twice = vidpipe_cli("detect", f"a={three_clips[0]}", f"a={three_clips[2]}")
    assert twice.returncode == 2 and "'a' is given twice" in twice.stderr


def test_video_needs_stream_placeholder_with_several_sources(three_clips, tmp_path):
    result = vidpipe_cli("detect", str(three_clips[0]), str(three_clips[2]), "--video", str(tmp_path / "a.mp4"))
    assert result.returncode == 2 and "{stream}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "a.mp4").exists()


# -- batching across streams changes nothing --------------------------------------------------------------


def test_three_clips_at_once_equal_single_runs(three_clips, detector):
    alone = {}
    for name, clip in zip("abc", three_clips, strict=True):
        alone[name] = list(vidpipe.detect(clip, model=detector, batch=4))
    together = list(vidpipe.detect([f"{n}={c}" for n, c in zip("abc", three_clips, strict=True)], model=detector))
    for name in "abc":
        mine = [r for r in together if r.frame.stream == name]
        assert [r.frame.index for r in mine] == [r.frame.index for r in alone[name]]
        for a, b in zip(mine, alone[name], strict=True):
            assert a.detections.labels == b.detections.labels
            assert torch.allclose(a.detections.boxes, b.detections.boxes, atol=1e-3)
            assert torch.allclose(a.detections.scores, b.detections.scores, atol=1e-4)
    assert sum(len(r.detections) for r in together) > 20


def test_cli_three_clips_per_stream_outputs(three_clips, tmp_path):
    jsonl = tmp_path / "d.jsonl"
    args = [f"{n}={c}" for n, c in zip("abc", three_clips, strict=True)]
    video, graph = str(tmp_path / "v_{stream}.mp4"), tmp_path / "g.dot"
    result = vidpipe_cli("detect", *args, "--json", str(jsonl), "--video", video, "--graph", str(graph))
    assert result.returncode == 0, result.stderr
    dot = graph.read_text()
    assert all(f'"cluster_source_{name}"' in dot for name in "abc") and dot.count("GstAppSink") >= 3
    records = _records(jsonl)
    for name, clip in zip("abc", three_clips, strict=True):
        frames = _count(clip)
        lines = _frames_of(records, name)
        assert [r["frame"] for r in lines] == list(range(frames))
        assert _count(tmp_path / f"v_{name}.mp4") == frames
        kinds = [r["event"] for r in records if r["stream"] == name and "event" in r]
        assert kinds == ["connected", "ended"]
    for name in "abc":
        assert f"  {name} " in result.stderr  # one summary row per stream


def test_bad_file_among_good_ones(three_clips, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n" * 100)
    jsonl = tmp_path / "d.jsonl"
    result = vidpipe_cli(
        "detect", str(three_clips[0]), str(bad), str(three_clips[2]), "--json", str(jsonl),
        "--video", str(tmp_path / "{stream}.mp4"),
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("vidpipe: error")]
    assert len(errors) == 1 and "stream 1" in errors[0] and "not a video file" in errors[0]
    records = _records(jsonl)
    good = _count(three_clips[0]), _count(three_clips[2])
    assert (len(_frames_of(records, "0")), len(_frames_of(records, "2"))) == good
    failed = [r for r in records if r.get("event") == "failed"]  # the bad stream is said in the JSONL too
    assert [r["stream"] for r in failed] == ["1"] and "not a video file" in failed[0]["message"]
    assert (_count(tmp_path / "0.mp4"), _count(tmp_path / "2.mp4")) == good


def test_a_source_that_cannot_open_is_said_in_the_jsonl_from_python(three_clips, tmp_path):
    from vidpipe.pipeline import StreamsFailedError
    from vidpipe.sinks import JsonlSink

    jsonl = tmp_path / "api.jsonl"
    pipeline = vidpipe.Pipeline(
        detector=models.load(), sources=[("good", str(three_clips[2])), ("gone", str(tmp_path / "nowhere.mp4"))],
        sinks=[JsonlSink(jsonl)],
    )  # fmt: skip
    with pytest.raises(StreamsFailedError) as info:
        pipeline.run()
    assert list(info.value.errors) == ["gone"]
    records = _records(jsonl)
    assert [(r["stream"], r["event"]) for r in records if r.get("event") == "failed"] == [("gone", "failed")]
    assert len(_frames_of(records, "good")) == _count(three_clips[2])
    assert pipeline.stats.streams["gone"].status == "failed"


def test_truncated_file_among_good_ones_ends_only_its_stream(three_clips, tmp_path, bad_files):
    jsonl = tmp_path / "d.jsonl"
    result = vidpipe_cli("detect", str(three_clips[2]), str(bad_files["truncated"]), "--json", str(jsonl))
    assert result.returncode == 2
    assert "stream 1" in result.stderr and "truncated" in result.stderr
    records = _records(jsonl)
    assert len(_frames_of(records, "0")) == _count(three_clips[2]) and _frames_of(records, "1")
    assert [r["event"] for r in records if r["stream"] == "1" and "event" in r] == ["connected", "failed"]


def _per_stream(records: list[dict]) -> dict[str, list[dict]]:
    """Each stream's lines in order, without their clock times (streams interleave as batches form)."""
    streams: dict[str, list[dict]] = {}
    for r in records:
        streams.setdefault(r["stream"], []).append({k: v for k, v in r.items() if k != "wall"})
    return streams


def test_batches_in_flight_change_nothing_but_overlap(three_clips, bad_files, detector, tmp_path):
    """The GPU's schedule, run on the CPU: with 3 batches in flight (started before the oldest one's boxes
    are collected) every frame, event and stream end comes out as with 1, in each stream's order."""
    sources = [f"{n}={c}" for n, c in zip("abc", three_clips, strict=True)] + [f"bad={bad_files['truncated']}"]
    outputs = {}
    for in_flight in (1, 3):
        path = tmp_path / f"{in_flight}.jsonl"
        pipeline = vidpipe.Pipeline(detector=detector, sources=sources, batch=4, in_flight=in_flight)
        pipeline.sinks.append(JsonlSink(path))
        with pytest.raises(VidpipeError, match="bad"):
            pipeline.run()
        assert pipeline.in_flight == in_flight
        outputs[in_flight] = _records(path)
    assert _per_stream(outputs[3]) == _per_stream(outputs[1])
    assert set(_per_stream(outputs[3])) == {"a", "b", "c", "bad"}
    assert sum(len(r.get("detections", [])) for r in outputs[3]) > 20
    assert {r["stream"] for r in outputs[3] if r.get("event") == "failed"} == {"bad"}


def test_in_flight_collects_oldest_first_and_records_each_step(detector):
    times = []
    flight = InFlight(detector, 2, lambda stage, seconds, n: times.append((stage, n)))
    assert flight.lanes.count == 2 and not flight.full
    frames = [torch.zeros((240, 320, 3), dtype=torch.uint8)]
    flight.launch(frames * 2, tag="first")
    flight.launch(frames, tag="second")
    assert flight.full and len(flight) == 2
    tag, found = flight.collect()
    assert tag == "first" and len(found) == 2
    assert [tag for tag, _ in flight.drain()] == ["second"] and len(flight) == 0
    assert times == [(s, 2) for s in ("preprocess", "inference", "postprocess")] + [
        (s, 1) for s in ("preprocess", "inference", "postprocess")
    ]
    assert default_in_flight(torch.device("cpu")) == 1
    with pytest.raises(VidpipeError, match="in_flight"):
        vidpipe.Pipeline("x.mp4", detector, in_flight=0)


# -- the batcher ---------------------------------------------------------------------------------------------


def _frame(stream: str, index: int, age: float = 0.0) -> Frame:
    return Frame(torch.zeros((4, 4, 3), dtype=torch.uint8), index, index / 30, stream=stream, wall=time.time() - age)


def test_batches_take_from_every_stream_in_turn():
    """A file with 40 frames queued cannot starve a camera with one: the batch takes from both, and the
    camera's event keeps its place before its frame."""
    batcher = Batcher(batch=4, max_wait=0.01, abandon=threading.Event())
    for name in ("file", "cam"):
        batcher.add_stream(StreamStats(name))
        batcher.configure(name, live=False, max_latency=None, capacity=100)
    for i in range(40):
        batcher.put("file", _frame("file", i))
    batcher.put("cam", Event("cam", "connected", "cam: connected"))
    batcher.put("cam", _frame("cam", 0))
    items, _ = batcher.take()
    assert [(type(i).__name__, i.stream, getattr(i, "index", None)) for i in items] == [
        ("Frame", "file", 0),
        ("Event", "cam", None),
        ("Frame", "cam", 0),
        ("Frame", "file", 1),
        ("Frame", "file", 2),
    ]


def test_live_frames_too_old_are_dropped_and_counted():
    stats = StreamStats("cam")
    batcher = Batcher(batch=8, max_wait=0.01, abandon=threading.Event())
    batcher.add_stream(stats)
    batcher.configure("cam", live=True, max_latency=0.5, capacity=4)
    batcher.put("cam", _frame("cam", 0, age=2.0))
    batcher.put("cam", _frame("cam", 1, age=1.0))
    batcher.put("cam", _frame("cam", 2))
    items, _ = batcher.take()
    assert [i.index for i in items] == [2] and stats.dropped == 2  # older than 0.5 s: dropped
    for i in range(3, 9):  # a full live queue drops its oldest frame instead of blocking
        batcher.put("cam", _frame("cam", i))
    items, _ = batcher.take()
    assert [i.index for i in items] == [5, 6, 7, 8] and stats.dropped == 4
    batcher.put("cam", End("cam"))
    items, _ = batcher.take()
    assert isinstance(items[0], End)
    assert batcher.take() is None


# -- errors from the bus, without a pipeline -------------------------------------------------------------------


def _error(domain, code: int, text: str) -> Gst.Message:
    return Gst.Message.new_error(None, GLib.Error.new_literal(domain, text, code), "debug")


def test_bus_errors_become_clear_exceptions():
    rtsp = parse_source("rtsp://127.0.0.1:9/x")
    error = error_from_message(_error(Gst.ResourceError.quark(), Gst.ResourceError.OPEN_READ, "refused"), rtsp)
    assert isinstance(error, StreamUnreachableError) and "rtsp://127.0.0.1:9/x: cannot connect (refused)" in str(error)
    test = parse_source("testsrc://ball")
    wrong = error_from_message(_error(Gst.StreamError.quark(), Gst.StreamError.TYPE_NOT_FOUND, "?"), test)
    assert isinstance(wrong, NotAVideoError)
    bad = error_from_message(_error(Gst.StreamError.quark(), Gst.StreamError.DECODE, "bad"), test, delivered=7)
    assert isinstance(bad, DecodeError) and "after 7 frames: bad" in str(bad)


# -- rate limit and live policy -----------------------------------------------------------------------------


def test_detect_fps_drops_frames_inside_gstreamer(sample, tmp_path):
    jsonl, video = tmp_path / "d.jsonl", tmp_path / "a.mp4"
    result = vidpipe_cli(
        "detect", str(sample), "--detect-fps", "5", "--max-frames", "20", "--json", str(jsonl),
        "--video", str(video),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    frames = [r for r in _records(jsonl) if "event" not in r]
    assert len(frames) == 20
    steps = {b["frame"] - a["frame"] for a, b in itertools.pairwise(frames)}
    assert steps == {6}  # 30 fps → 5 fps: the source's frame numbers, one in six
    assert all(abs((b["pts"] - a["pts"]) - 0.2) < 0.02 for a, b in itertools.pairwise(frames))
    with vidpipe.open(video) as src:
        assert src.info.fps == pytest.approx(5.0) and sum(1 for _ in src) == 20


def test_live_frames_keep_the_source_numbers(detector):
    """A live 120 fps source is faster than the detector: dropped frames leave gaps in the indices."""
    results = []
    for result in vidpipe.detect("testsrc://ball?width=320&height=240&fps=120&frames=600&live=1", model=detector):
        results.append(result)
        if len(results) == 40:
            break
    indices = [r.frame.index for r in results]
    assert indices == sorted(set(indices)) and indices[-1] > len(indices)


# -- live streams stay up -------------------------------------------------------------------------------------


def test_rtsp_server_killed_and_restarted(tmp_path):
    """Three RTSP streams from two servers; one server is killed mid-run and restarted on its port: its
    stream reconnects and its lines resume, the other streams never pause for more than a second, and
    Ctrl-C finalises every video."""
    server_a, url_a = start_server()
    server_b, url_b = start_server()
    port_b = url_b.split(":")[2].split("/")[0]
    jsonl = tmp_path / "d.jsonl"
    video = tmp_path / "{stream}.mp4"
    proc = None
    try:
        proc = start_detect(
            f"a1={url_a}", f"a2={url_a}", f"b={url_b}", "--json", str(jsonl), "--video", str(video),
            "--detect-fps", "10", lines=30,
        )  # fmt: skip
        time.sleep(1.0)
        server_b.kill()
        server_b.wait(10)
        time.sleep(2.0)
        server_b, _ = start_server("--port", port_b)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            records = [json.loads(line) for line in jsonl.read_text().splitlines()]
            if any(r.get("event") == "reconnected" for r in records):
                resumed = records[[r.get("event") for r in records].index("reconnected") :]
                if len(_frames_of(resumed, "b")) >= 10:
                    break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        for server in (server_a, server_b):
            server.kill()
            server.wait(10)
    assert proc.returncode == 130, stderr
    assert "disconnected" in stderr and "reconnected" in stderr
    records = _records(jsonl)
    kinds = [r["event"] for r in records if r["stream"] == "b" and "event" in r]
    assert kinds[:3] == ["connected", "disconnected", "reconnected"]
    events = [r.get("event") for r in records]
    after = records[events.index("reconnected") :]
    assert len(_frames_of(after, "b")) >= 10  # its lines resume
    b = _frames_of(records, "b")
    assert [r["frame"] for r in b] == sorted(r["frame"] for r in b)  # numbers go on across the gap
    for name in ("a1", "a2"):
        walls = [r["wall"] for r in _frames_of(records, name)]
        assert max(y - x for x, y in itertools.pairwise(walls)) < 1.0, f"{name} paused"
    for name in ("a1", "a2", "b"):
        assert _count(tmp_path / f"{name}.mp4") == len(_frames_of(records, name))


def test_sigterm_finalises_every_video(three_clips, sample, tmp_path):
    jsonl = tmp_path / "d.jsonl"
    proc = start_detect(
        str(sample), str(sample), "--json", str(jsonl), "--video", str(tmp_path / "{stream}.mp4"), lines=20
    )
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    records = _records(jsonl)
    for name in ("0", "1"):
        assert _count(tmp_path / f"{name}.mp4") == len(_frames_of(records, name)) > 0
