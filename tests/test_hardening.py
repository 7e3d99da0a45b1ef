"""Nothing lost, nothing leaked, honest timestamps: each test reproduces a way data was lost or leaked."""

from __future__ import annotations

import gc
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from conftest import run_on_small_disk, start_detect, start_server, stop_time, vidpipe_cli

import vidpipe
from media import damage, encode, first_frames, gst_launch, rotate_mp4, variable_rate
from vidpipe import errors, models
from vidpipe.sinks.jsonl import SCHEMA_FILE

SCHEMA = json.loads(SCHEMA_FILE.read_text())


def _records(path: Path, events: bool = False) -> list[dict]:
    """The frame lines of a JSONL file (with ``events``, the event lines too); all validated."""
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "the JSONL ends with a cut line"
    records = [json.loads(line) for line in text.splitlines()]
    for record in records:
        jsonschema.validate(record, SCHEMA)
    return records if events else [r for r in records if "event" not in r]


def _frames(path: Path) -> list[vidpipe.Frame]:
    with vidpipe.open(path) as src:
        return list(src)


@pytest.fixture(scope="module")
def detector():
    return models.load("ssd_mobilenet_v2_coco")


@pytest.fixture(scope="module")
def short_clip(sample, tmp_path_factory) -> Path:
    return first_frames(sample, tmp_path_factory.mktemp("hardening") / "short.mp4", 40)


# -- 1, 4: outputs never overwrite the input or each other ------------------------------------------------


@pytest.mark.parametrize("option", ["--json", "--video", "--graph"])
def test_output_equal_to_input_is_refused(option, short_clip, tmp_path):
    copy = tmp_path / "x.mp4"
    shutil.copy(short_clip, copy)
    link = tmp_path / "link.mp4"
    link.symlink_to(copy)
    before = copy.read_bytes()
    for target in (copy, link):
        result = vidpipe_cli("detect", str(copy), option, str(target))
        assert result.returncode == 2, result.stderr
        assert "refusing to overwrite" in result.stderr and "Traceback" not in result.stderr
    assert copy.read_bytes() == before


def test_two_outputs_on_one_file_are_refused(short_clip, tmp_path):
    same = tmp_path / "same.mp4"
    result = vidpipe_cli("detect", str(short_clip), "--json", str(same), "--video", str(same))
    assert result.returncode == 2 and "--video" in result.stderr and "--json" in result.stderr
    assert not same.exists()


# -- 2, 12: signals finalise every output, even with a frozen stream ----------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_finalise_outputs(signum, sample, tmp_path):
    jsonl, video = tmp_path / "d.jsonl", tmp_path / "a.mp4"
    proc = start_detect(str(sample), "--json", str(jsonl), "--video", str(video))
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr and "stopping" in stderr
    records = _records(jsonl)
    assert 15 <= len(records) < 1552
    assert len(_frames(video)) == len(records)  # the MP4 has its index and every frame


def test_ctrl_c_with_a_frozen_rtsp_server_stops_within_a_second(tmp_path):
    server, url = start_server()
    jsonl = tmp_path / "d.jsonl"
    try:
        proc = start_detect(url, "--json", str(jsonl), "--video", str(tmp_path / "a.mp4"), lines=10)
        server.send_signal(signal.SIGSTOP)  # the server freezes: no more packets, no error
        time.sleep(1.0)
        stopped_in, stderr = stop_time(proc)
    finally:
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait(10)
    assert proc.returncode == 130, stderr
    assert stopped_in < 1.5, f"took {stopped_in:.1f} s to stop"
    records = _records(jsonl)
    assert len(_frames(tmp_path / "a.mp4")) == len(records)


# -- 3: a full disk ------------------------------------------------------------------------------------------


def test_full_disk_keeps_whole_lines_and_finalises_the_other_outputs(sample, tmp_path):
    """The JSONL goes to a 16 KiB tmpfs (in a private mount namespace), the video to a healthy disk."""
    small, video, kept = tmp_path / "small", tmp_path / "a.mp4", tmp_path / "kept.jsonl"
    exe = Path(sys.executable).with_name("vidpipe")
    command = (
        f"{exe} detect {sample} --json {small}/d.jsonl --video {video} --max-frames 400 -q; rc=$?; "
        f"cp {small}/d.jsonl {kept}; exit $rc"
    )
    result = run_on_small_disk(small, "16k", command)
    assert result.returncode == 2, result.stderr
    errors_ = [line for line in result.stderr.splitlines() if line.startswith("vidpipe: error")]
    assert len(errors_) == 1 and "d.jsonl" in errors_[0] and "No space left" in errors_[0], result.stderr
    assert "Traceback" not in result.stderr
    records = _records(kept)  # whole lines only
    assert 20 < len(records) < 400  # the run stopped at the write error, not at the end
    assert [r["frame"] for r in records] == list(range(len(records)))
    assert len(_frames(video)) == len(records)  # the video on the healthy disk is finalised and agrees


# -- 5: leaks ------------------------------------------------------------------------------------------------


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_open_close_cycles_leak_nothing(short_clip):
    for _ in range(5):  # warm up GStreamer's plugin and thread pools
        vidpipe.open(short_clip).close()
    gc.collect()
    fds, threads, rss = _fds(), threading.active_count(), _rss_mb()
    for _ in range(100):
        src = vidpipe.open(short_clip)
        next(iter(src))
        src.close()
    for _ in range(20):  # dropped without close(): collected, and the pipeline stops
        src = vidpipe.open(short_clip)
        del src
    gc.collect()
    deadline = time.monotonic() + 10  # a teardown may still be running in its own short-lived thread
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _fds() <= fds + 2, f"{_fds() - fds} fds leaked"
    assert threading.active_count() <= threads, [t.name for t in threading.enumerate()]
    assert _rss_mb() - rss < 40, f"RSS grew by {_rss_mb() - rss:.0f} MB"


ABANDONED = """
import gc, json, os, threading
import vidpipe
from vidpipe import models
from vidpipe.memory import trim_heap

detector = models.load("ssd_mobilenet_v2_coco")


def cycle():
    for result in vidpipe.detect({clip!r}, model=detector, batch=2):
        assert result.frame.index == 0
        break


def settled_rss():  # what the process holds, without the heap's freed but kept memory
    gc.collect()
    trim_heap()
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


warmup = []
for _ in range(5):
    cycle()
    warmup.append(settled_rss())
fds, threads, objects = len(os.listdir("/proc/self/fd")), threading.active_count(), len(gc.get_objects())
last = []
for i in range(100):
    cycle()
    if i >= 80:
        last.append(settled_rss())
print(json.dumps({{"fds": [fds, len(os.listdir("/proc/self/fd"))], "threads": [threads, threading.active_count()],
                  "objects": [objects, len(gc.get_objects())], "warmup": warmup, "last": last}}))
"""


def test_abandoned_detect_loops_leak_nothing(short_clip):
    """100 ``vidpipe.detect()`` loops left after their first result, in a process of their own (a process
    that ran other tests first carries their heap, whose state moves RSS by tens of MB)."""
    result = subprocess.run(
        [sys.executable, "-c", ABANDONED.format(clip=str(short_clip))], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["fds"][1] <= figures["fds"][0] + 2, figures["fds"]
    assert figures["threads"][1] <= figures["threads"][0], figures["threads"]
    assert figures["objects"][1] - figures["objects"][0] < 5_000, figures["objects"]  # no Python objects pile up
    # a leak raises the floor; the heap's swings (tens of MB either way) do not
    grew = min(figures["last"]) - min(figures["warmup"])
    assert grew < 60, f"RSS floor grew by {grew:.0f} MB"


def test_running_out_of_file_descriptors_is_a_clear_error(short_clip):
    code = f"""
import resource, vidpipe
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
kept = []
try:
    for _ in range(100):
        kept.append(vidpipe.open({str(short_clip)!r}))
except vidpipe.errors.SourceOutOfResourcesError as exc:
    print("ERROR", len(kept), exc)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("ERROR"), result.stdout + result.stderr
    assert "too many open files" in result.stdout and "ulimit -n" in result.stdout
    assert "CRITICAL" not in result.stderr
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] > 64  # the test's own limit is untouched


# -- 6: damaged data is reported, not silently skipped -----------------------------------------------------


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict[str, tuple[Path, int]]:
    folder = tmp_path_factory.mktemp("damaged")
    mp4 = encode(folder / "clean.mp4", "x264enc key-int-max=25 ! mp4mux faststart=true", 320, 240, frames=250)
    avi = encode(folder / "clean.avi", "jpegenc ! avimux", 320, 240, frames=100)
    return {
        "h264_mp4": (damage(mp4, folder / "damaged.mp4"), 250),
        "mjpeg_avi": (damage(avi, folder / "damaged.avi"), 100),
    }


@pytest.mark.parametrize("kind", ["h264_mp4", "mjpeg_avi"])
def test_damaged_file_reports_every_missing_frame(kind, damaged):
    path, total = damaged[kind]
    got = []
    with pytest.raises(errors.DamagedSourceError, match="could not be decoded") as info, vidpipe.open(path) as src:
        got.extend(src)
    missing = sum(gap.missing for gap in info.value.gaps)
    # Every frame is either delivered or counted (a decoder may repeat a frame while it recovers).
    assert missing > 0 and len({f.pts for f in got}) + missing == total
    for gap in info.value.gaps:
        assert got[gap.after_frame].pts == pytest.approx(gap.start)
        assert got[gap.after_frame + 1].pts == pytest.approx(gap.end)


def test_damaged_file_in_detect_events_summary_and_exit_code(damaged, tmp_path):
    path, total = damaged["h264_mp4"]
    jsonl, video = tmp_path / "d.jsonl", tmp_path / "a.mp4"
    result = vidpipe_cli("detect", str(path), "--json", str(jsonl), "--video", str(video))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("vidpipe: warning")]
    assert warnings and all("missing between" in line and str(path) in line for line in warnings)
    assert "damaged" in result.stderr and "could not be decoded" in result.stderr
    records = _records(jsonl, events=True)
    events = [r for r in records if r.get("event") == "frames_missing"]
    frames = [r for r in records if "event" not in r]
    assert len(events) == len(warnings)
    assert len({r["pts"] for r in frames}) + sum(e["missing"] for e in events) == total
    for event in events:  # each event line comes just before the first frame after the gap
        following = records[records.index(event) + 1 :]
        first_frame = next(r for r in following if "event" not in r)
        assert first_frame["frame"] == event["frame"] and first_frame["pts"] == event["pts"]
    assert len(_frames(video)) == len(frames)


# -- 7, 8: honest durations and frame rates ----------------------------------------------------------------


def test_shorter_second_video_track_is_not_a_truncation(tmp_path):
    path = tmp_path / "two.mkv"
    gst_launch(
        f"matroskamux name=m ! filesink location={path} "
        "videotestsrc num-buffers=60 ! video/x-raw,width=160,height=120,framerate=30/1 ! x264enc ! m. "
        "videotestsrc num-buffers=120 pattern=snow ! video/x-raw,width=160,height=120,framerate=30/1 ! x264enc ! m."
    )
    assert len(_frames(path)) == 60
    result = vidpipe_cli("decode", str(path))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("mux", ["mp4mux", "matroskamux"])
def test_variable_frame_rate(mux, tmp_path, detector):
    durations = [1 / 30 if i % 3 else 1 / 10 for i in range(30)] + [1 / 15] * 30
    path = variable_rate(tmp_path / f"vfr.{'mp4' if mux == 'mp4mux' else 'mkv'}", mux, durations)
    probe = json.loads(vidpipe_cli("probe", "--json", str(path)).stdout)
    assert probe["fps"] is None and probe["frames"] is None
    assert probe["duration"] == pytest.approx(sum(durations), abs=0.1)
    source = _frames(path)
    video = tmp_path / "annotated.mp4"
    result = vidpipe_cli("detect", str(path), "--video", str(video))
    assert result.returncode == 0, result.stderr
    annotated = _frames(video)
    assert len(annotated) == len(source)
    # the annotated video keeps the input's timestamps (relative to its first frame)
    assert [round(f.pts - annotated[0].pts, 3) for f in annotated] == [round(f.pts - source[0].pts, 3) for f in source]
    with vidpipe.open(video) as src:
        assert src.info.duration == pytest.approx(probe["duration"], abs=0.1)


# -- 9: a live run keeps real timestamps -------------------------------------------------------------------


def test_live_output_video_lasts_as_long_as_the_run(tmp_path):
    """A live 120 fps source is faster than the detector: frames are dropped, and the annotated video
    still covers the wall time of the run, not (frames / nominal rate)."""
    jsonl, video = tmp_path / "d.jsonl", tmp_path / "a.mp4"
    source = "testsrc://ball?width=320&height=240&fps=120&frames=100000&live=1"
    # (PyTorch fp32 at batch 1: well below 120 FPS on any CPU; the default OpenVINO nearly keeps up here)
    args = ("--json", str(jsonl), "--video", str(video), "--batch", "1", "--backend", "torch", "--precision", "fp32")
    proc = start_detect(source, *args, lines=60)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    records = _records(jsonl)
    span = records[-1]["pts"] - records[0]["pts"]
    wall = records[-1]["wall"] - records[0]["wall"]
    assert len(records) < 0.8 * span * 120  # frames were dropped
    assert span == pytest.approx(wall, abs=0.3)
    with vidpipe.open(video) as src:
        assert src.info.duration == pytest.approx(span, abs=0.1)
        assert sum(1 for _ in src) == len(records)


# -- 10: rotated phone videos are delivered upright ---------------------------------------------------------


def test_rotation_tag_is_applied(tmp_path):
    plain = encode(tmp_path / "plain.mp4", "x264enc ! mp4mux", 320, 240, frames=10)
    rotated = rotate_mp4(plain, tmp_path / "rotated.mp4")
    probe = json.loads(vidpipe_cli("probe", "--json", str(rotated)).stdout)
    assert (probe["width"], probe["height"]) == (240, 320)
    upright = _frames(rotated)
    for before, after in zip(_frames(plain), upright, strict=True):
        assert torch.equal(after.tensor, torch.rot90(before.tensor, k=-1, dims=(0, 1)))  # 90° clockwise
    with vidpipe.open(rotated, size=(120, 160)) as src:
        assert next(iter(src)).tensor.shape == (160, 120, 3)


# -- 11: bad values are refused clearly --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--threshold", "1.5"], "--threshold"),
        (["--threshold", "nan"], "--threshold"),
        (["--threshold", "-1"], "--threshold"),
        (["--max-frames", "0"], "--max-frames"),
        (["--max-frames", "-5"], "--max-frames"),
        (["--classes", ","], "--classes"),
        (["--batch", "x"], "--batch"),
    ],
)
def test_bad_option_values_are_one_line(args, needle, short_clip):
    result = vidpipe_cli("detect", str(short_clip), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr


def test_detector_input_is_checked(detector, short_clip):
    frame = _frames(short_clip)[10].tensor
    with pytest.raises(errors.FrameInputError, match=r"uint8.*float32.*multiply by 255"):
        detector([frame.float() / 255])
    with pytest.raises(errors.FrameInputError, match="single array"):
        detector(frame)
    with pytest.raises(errors.FrameInputError, match=r"\[H, W, 3\].*channels first"):
        detector([frame.permute(2, 0, 1)])
    with pytest.raises(errors.FrameInputError, match="numpy float64"):
        detector([frame.numpy().astype(np.float64)])
    as_numpy = detector([frame.numpy()])[0]
    as_tensor = detector([frame])[0]
    assert as_numpy.labels == as_tensor.labels and torch.equal(as_numpy.boxes, as_tensor.boxes)
    assert len(detector(torch.stack([frame, frame]))) == 2  # a uint8[N, H, W, 3] batch
    with pytest.raises(errors.ModelError, match="must be a number from 0 to 1"):
        models.load("ssd_mobilenet_v2_coco", threshold=float("nan"))


# -- 13: a stream that changes resolution -------------------------------------------------------------------


def test_resolution_change_keeps_every_output_in_step(tmp_path):
    parts = []
    for name, (width, height) in (("a", (320, 240)), ("b", (160, 128))):
        part = tmp_path / f"{name}.h264"
        gst_launch(
            f"videotestsrc num-buffers=30 pattern=ball ! video/x-raw,width={width},height={height},framerate=30/1 "
            f"! x264enc ! video/x-h264,stream-format=byte-stream ! filesink location={part}"
        )
        parts.append(part.read_bytes())
    joined = tmp_path / "joined.h264"
    joined.write_bytes(b"".join(parts))  # an elementary stream whose size changes at frame 30
    jsonl, video = tmp_path / "d.jsonl", tmp_path / "a.mp4"
    result = vidpipe_cli("detect", str(joined), "--json", str(jsonl), "--video", str(video))
    assert result.returncode == 0, result.stderr
    records = _records(jsonl)
    assert [(r["width"], r["height"]) for r in records] == [(320, 240)] * 30 + [(160, 128)] * 30
    annotated = _frames(video)
    assert len(annotated) == 60 and all(f.tensor.shape == (240, 320, 3) for f in annotated)


@pytest.mark.parametrize(
    "times",
    [
        [k / 30 for k in range(40)] + [39 / 30],  # the last timestamp repeated
        [k / 30 for k in range(20)] + [19 / 30] + [k / 30 for k in range(20, 40)] + [12.4, 12.4],
    ],
)
def test_repeated_timestamps_lose_no_frame_in_the_video(times, tmp_path):
    """A source that repeats a timestamp (seen from x264 + mp4mux on irregular input) still gets every
    frame into the annotated video, each repeated one 1 ms after the one before."""
    from vidpipe.sinks import VideoSink
    from vidpipe.types import Detections, Result, SourceInfo

    noise = torch.Generator().manual_seed(1)
    sink = VideoSink(tmp_path / "v.mp4", annotate=False)
    sink.open_stream(SourceInfo("x", 160, 120, 30.0, None, None, None, None, False))
    for i, t in enumerate(times):
        frame = torch.randint(0, 255, (120, 160, 3), dtype=torch.uint8, generator=noise)
        sink.write(Result(vidpipe.Frame(frame, i, t), Detections.empty()))
    sink.close()
    out = [f.pts for f in _frames(tmp_path / "v.mp4")]
    assert len(out) == len(times)
    assert all(abs((o - out[0]) - (t - times[0])) <= 0.0011 for o, t in zip(out, times, strict=True))
