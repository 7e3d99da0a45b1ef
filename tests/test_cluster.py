"""``vidpipe detect --cluster``: a real local Ray (2 workers of 1 CPU each), compared with one process;
workers killed by their PID; a live RTSP stream moving; an address that does not answer; signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from conftest import SAMPLE, start_server, vidpipe_cli

from media import first_frames

pytestmark = [pytest.mark.slow, pytest.mark.ray]

pytest.importorskip("ray")

VIDPIPE = str(Path(sys.executable).with_name("vidpipe"))
SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "vidpipe" / "detections.schema.json").read_text())
EXACT = ("--backend", "torch", "--precision", "fp32")


def frames_by_stream(path: Path) -> dict[str, list[dict]]:
    streams: dict[str, list[dict]] = {}
    for line in map(json.loads, path.read_text().splitlines()):
        if "detections" in line:
            streams.setdefault(line["stream"], []).append(line)
    return streams


def events(path: Path, kind: str) -> list[dict]:
    return [line for line in map(json.loads, path.read_text().splitlines()) if line.get("event") == kind]


def ray_processes() -> list[str]:
    found = subprocess.run(["pgrep", "-af", "gcs_server|raylet|ray::"], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if "pgrep" not in line]


def ray_left(timeout: float = 30) -> list[str]:
    """The local Ray's processes still there ``timeout`` seconds after a run ended (on a busy machine its
    GCS server takes a few seconds to go after the driver's ``ray.shutdown()``)."""
    deadline = time.monotonic() + timeout
    while (left := ray_processes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.fixture(autouse=True)
def no_ray_before():
    """Each test starts with no Ray process of an earlier one (a busy machine takes seconds to end them)."""
    assert not ray_left(60), "a local Ray of an earlier test is still running"


def worker_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-f", "ray::StreamWorker"], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


def wait_lines(path: Path, lines: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= lines:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError(f"{path}: fewer than {lines} lines in {timeout} s")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("cluster")
    return [first_frames(SAMPLE, folder / f"c{n}.mp4", n) for n in (45, 60, 75, 90)]  # the last: 29 detections


def test_four_clips_over_two_workers_equal_one_process(clips, tmp_path):
    sources = [f"s{i}={clip}" for i, clip in enumerate(clips)]
    one = vidpipe_cli("detect", *sources, "--json", str(tmp_path / "one.jsonl"), *EXACT, "--track")
    assert one.returncode == 0, one.stderr
    spread = vidpipe_cli(
        "detect", *sources, "--json", str(tmp_path / "ray.jsonl"), *EXACT, "--track", "--cluster", "ray",
        "--workers", "2", timeout=600,
    )  # fmt: skip
    assert spread.returncode == 0, spread.stderr
    assert "on 2 workers" in spread.stderr and "worker 1 (pid" in spread.stderr
    want, got = frames_by_stream(tmp_path / "one.jsonl"), frames_by_stream(tmp_path / "ray.jsonl")
    assert set(got) == set(want) == {"s0", "s1", "s2", "s3"}
    for name in want:
        assert [f["frame"] for f in got[name]] == [f["frame"] for f in want[name]], name
        for a, b in zip(got[name], want[name], strict=True):
            assert [(d["label"], d.get("track_id")) for d in a["detections"]] == [
                (d["label"], d.get("track_id")) for d in b["detections"]
            ]
            for da, db in zip(a["detections"], b["detections"], strict=True):
                assert abs(da["score"] - db["score"]) <= 1e-4 + 1e-9  # (written to 4 decimals)
                # (boxes are written to 2 decimals: one rounding step apart at most)
                assert max(abs(x - y) for x, y in zip(da["box"], db["box"], strict=True)) <= 0.01 + 1e-6
    assert sum(len(f["detections"]) for f in want["s3"]) > 20
    assert not ray_left()  # the local Ray is gone


def test_a_killed_worker_loses_nothing_and_duplicates_nothing(tmp_path):
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [VIDPIPE, "detect", *(f"s{i}={SAMPLE}" for i in range(4)), "--max-frames", "300", "--json", str(out),
         "--cluster", "ray", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_lines(out, 150, proc)
        pids = worker_pids()
        assert len(pids) == 2, pids
        subprocess.run(["kill", "-9", str(pids[0])], check=True)
        _, stderr = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "died" in stderr and "starts again from its beginning" in stderr
    got = frames_by_stream(out)
    for name in ("s0", "s1", "s2", "s3"):
        assert [f["frame"] for f in got[name]] == list(range(300)), name  # each frame once, in order
    assert len(events(out, "moved")) == 2
    for line in map(json.loads, out.read_text().splitlines()):
        jsonschema.validate(line, SCHEMA)  # the moved lines too
    assert not ray_left()


def test_a_live_stream_moves_to_the_surviving_worker_and_sigterm_cleans_up(tmp_path):
    server, url = start_server("--fps", "10")
    out = tmp_path / "live.jsonl"
    proc = subprocess.Popen(
        [VIDPIPE, "detect", f"a={url}", f"b={url}", "--json", str(out), "--cluster", "ray", "--workers", "2",
         "--video", str(tmp_path / "{stream}.mp4")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_lines(out, 40, proc)
        killed = worker_pids()[0]
        subprocess.run(["kill", "-9", str(killed)], check=True)
        deadline = time.monotonic() + 60
        while not events(out, "moved") and time.monotonic() < deadline:
            time.sleep(0.2)
        [moved] = events(out, "moved")
        before = len(frames_by_stream(out)[moved["stream"]])
        deadline = time.monotonic() + 60
        while len(frames_by_stream(out)[moved["stream"]]) < before + 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=180)
    finally:
        proc.kill()
        server.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    got = frames_by_stream(out)
    for name, frames in got.items():
        numbers = [f["frame"] for f in frames]
        assert numbers == sorted(set(numbers)), name  # never twice, in order
    assert len(got[moved["stream"]]) >= before + 20  # it went on after the move
    other = "a" if moved["stream"] == "b" else "b"
    assert Path(tmp_path / f"{other}.mp4").stat().st_size > 0  # the surviving worker finished its video
    assert not ray_left()


def test_under_xdist_the_ray_tests_share_one_group(request):
    """Two local Rays at once find each other's processes (and kill each other's workers): under
    ``pytest -n N --dist loadgroup`` every test marked ``ray`` must carry the one group xdist schedules."""
    if not request.config.getoption("loadgroup", False):
        pytest.skip("not run with --dist loadgroup")
    assert request.node.nodeid.endswith("@ray"), request.node.nodeid


def test_an_address_that_does_not_answer_is_one_error_line():
    result = vidpipe_cli("detect", str(SAMPLE), "--cluster", "ray://127.0.0.1:9")
    assert result.returncode == 2
    assert result.stderr.strip() == "vidpipe: error: --cluster ray://127.0.0.1:9: cannot connect (Connection refused)"


def test_worker_counts_are_checked_by_one_rule_at_each_front_door():
    import vidpipe
    from vidpipe import models

    for args, message in (
        (["--workers", "0", "--cluster", "ray"], "--workers must be at least 1, got 0"),
        (["--cpus-per-worker", "-2", "--cluster", "ray"], "--cpus-per-worker must be at least 1, got -2"),
        (["--workers", "2"], "--workers and --streams-per-worker spread streams over a cluster: add --cluster"),
    ):
        result = vidpipe_cli("detect", str(SAMPLE), *args)
        assert result.returncode == 2 and result.stderr == f"vidpipe: error: {message}\n", (args, result.stderr)
    with pytest.raises(vidpipe.VidpipeError, match=r"^streams_per_worker must be at least 1, got 0$"):
        vidpipe.Pipeline(str(SAMPLE), models.load("ssd_mobilenet_v2_coco"), cluster="ray", streams_per_worker=0)
    assert not ray_left()  # (refused before any cluster starts)


def test_result_records_round_trip():
    from vidpipe.types import Event, Result

    record = {"stream": "s", "frame": 3, "pts": 0.1, "wall": 5.0, "width": 640, "height": 360,
              "detections": [{"label": "person", "class_id": 1, "score": 0.9, "box": [1.0, 2.0, 3.0, 4.0],
                              "track_id": 7}]}  # fmt: skip
    assert Result.from_record(record).record() == record
    event = {"stream": "s", "wall": 1.0, "event": "line_crossed", "message": "m", "line": "door", "track_id": 7}
    assert Event.from_dict(event).to_dict() == event


def test_the_cluster_s_own_event_lines_are_valid_by_the_schema():
    """The driver writes ``moved`` (a dead worker's stream taken by another) and, when a stop overtakes a
    stream's start, ``stopped`` into the JSON Lines: lines the schema the docs point to accepts."""
    from vidpipe.types import Event

    moved = Event("s", "moved", "s: worker 0 (pid 9) died; it reconnects on worker 1",
                  fields={"from_worker": 0, "to_worker": 1})  # fmt: skip
    stopped = Event("s", "stopped", "s: stopped before it started")
    for event in (moved, stopped):
        jsonschema.validate(event.to_dict(), SCHEMA)


def test_python_detect_on_a_cluster_yields_every_result(clips):
    import vidpipe

    got = list(vidpipe.detect([f"a={clips[0]}", f"b={clips[1]}"], cluster="ray"))  # workers: as the CLI's
    frames = {name: [r.frame.index for r in got if r.frame.stream == name] for name in ("a", "b")}
    counts = []
    for clip in clips[:2]:
        with vidpipe.open(clip) as source:
            counts.append(sum(1 for _ in source))
    assert frames == {"a": list(range(counts[0])), "b": list(range(counts[1]))}
    assert got[0].frame.tensor.numel() == 0 and got[0].frame.width == 384  # no pixels cross
    assert not ray_left()


def test_a_pipeline_on_a_cluster_takes_and_drops_streams_while_it_runs(clips, tmp_path):
    """``Pipeline(..., cluster="ray")``: streams added over the run go to the least-loaded worker, a
    removed stream's outputs are finished at once, and every file stream's frames arrive once, in order."""
    import vidpipe
    from vidpipe import models
    from vidpipe.sinks import JsonlSink

    detector = models.load("ssd_mobilenet_v2_coco", precision="fp32")
    out = tmp_path / "out.jsonl"
    events: list = []
    pipeline = vidpipe.Pipeline(
        detector=detector, cluster="ray", workers=2, keep_alive=True, sinks=[JsonlSink(out)],
        lines=["door=0,150,384,150"], on_event=[events.append],
    )  # fmt: skip
    assert type(pipeline).__name__ == "ClusterPipeline"
    pipeline.start()
    try:
        pipeline.add_stream(str(clips[0]), "a")
        pipeline.add_stream(str(clips[1]), "b")
        pipeline.add_stream(f"cam={clips[2]}", loop=True)  # (a looped file: a live stream that never ends)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            listed = {s["name"]: s for s in pipeline.streams()}
            if listed.get("cam", {}).get("frames", 0) >= 20 and listed["cam"]["state"] == "running":
                break
            time.sleep(0.2)
        assert {s["worker"] for s in listed.values()} == {0, 1}  # spread over both workers
        assert listed["cam"]["fps"] > 0  # (the figures come from its worker)
        assert set(pipeline.counts("cam")["lines"]["door"]) >= {"in", "out"}  # counted on its worker
        pipeline.remove_stream("cam")
        assert [e.kind for e in events if e.stream == "cam"][-1] == "removed"
        assert "cam" not in {s["name"] for s in pipeline.streams()}
        while any(s["state"] not in ("ended",) for s in pipeline.streams()) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        pipeline.stop()
        stats = pipeline.wait(timeout=180)
    got = frames_by_stream(out)
    counts = []
    for clip in clips[:2]:
        with vidpipe.open(clip) as source:
            counts.append(sum(1 for _ in source))
    assert [f["frame"] for f in got["a"]] == list(range(counts[0]))
    assert [f["frame"] for f in got["b"]] == list(range(counts[1]))
    assert 20 <= len(got["cam"]) == len({f["frame"] for f in got["cam"]})
    assert stats.frames == sum(len(frames) for frames in got.values())
    assert not ray_left()


def test_a_detector_made_by_hand_cannot_go_to_a_cluster():
    import vidpipe
    from vidpipe import models
    from vidpipe.errors import VidpipeError

    detector = models.load("ssd_mobilenet_v2_coco", precision="fp32")
    detector.load_args = None
    with pytest.raises(VidpipeError, match=r"made by vidpipe\.models\.load"):
        vidpipe.Pipeline(str(SAMPLE), detector, cluster="ray")
    from vidpipe.sinks.live import LiveView

    with pytest.raises(VidpipeError, match="LiveView needs the frames' pixels"):
        vidpipe.Pipeline(str(SAMPLE), models.load("ssd_mobilenet_v2_coco"), cluster="ray", sinks=[LiveView()])
