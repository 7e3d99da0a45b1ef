"""`vidpipe detect` and the pipeline: every frame in order, JSONL schema, annotated video, failures, Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import torch
from conftest import vidpipe_cli

import vidpipe
from media import first_frames, gst_launch, reference_decode
from vidpipe import models
from vidpipe.sinks.draw import color_for
from vidpipe.sinks.draw import sizes as annotation_sizes
from vidpipe.sinks.jsonl import SCHEMA_FILE

SCHEMA = json.loads(SCHEMA_FILE.read_text())


@pytest.fixture(scope="module")
def clip(sample, tmp_path_factory) -> Path:
    """The first 90 frames of the bundled clip (real footage), H.264/MP4 with its index first."""
    return first_frames(sample, tmp_path_factory.mktemp("detect") / "clip.mp4", 90)


@pytest.fixture(scope="module")
def detector():
    return models.load("ssd_mobilenet_v2_coco")


def _lines(path: Path) -> list[dict]:
    """The frame lines of a JSONL file (every line, event lines too, validated against the schema)."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        jsonschema.validate(record, SCHEMA)
    return [r for r in records if "event" not in r]


def test_cli_writes_one_line_per_decoded_frame(clip, tmp_path):
    out = tmp_path / "out"
    result = vidpipe_cli(
        "detect", str(clip), "--json", str(out / "d.jsonl"), "--video", str(out / "a.mp4"),
        "--graph", str(out / "pipeline.png"), "--batch", "4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = _lines(out / "d.jsonl")
    decoded = reference_decode(clip, 384, 288).shape[0]
    assert [r["frame"] for r in records] == list(range(decoded))
    assert all((r["width"], r["height"]) == (384, 288) for r in records)
    pts = [r["pts"] for r in records]
    assert pts == sorted(pts)
    assert sum(len(r["detections"]) for r in records) > 30
    assert any(d["label"] == "person" for r in records for d in r["detections"])
    for word in ("frames", "FPS", "person", "decode wait", "preprocess", "inference", "postprocess", "output"):
        assert word in result.stderr
    assert (out / "pipeline.png").read_bytes()[:4] == b"\x89PNG"
    with vidpipe.open(out / "a.mp4") as video:
        info = video.info
        assert (info.width, info.height) == (384, 288)
        times = [f.pts for f in video]
    # Every frame, at the time the JSONL gives it (relative to the first frame). The re-encoded test clip
    # sometimes repeats a timestamp (x264 + mp4mux on the sample's irregular times); a video cannot, so
    # such a frame moves by at most a frame's duration.
    assert len(times) == decoded
    offsets = [abs((t - times[0]) - (p - pts[0])) for t, p in zip(times, pts, strict=True)]
    assert max(offsets) <= 1 / 30 + 1e-3
    if len(set(pts)) == len(pts):
        assert max(offsets) < 1e-3


def test_python_api_yields_every_frame_in_order(clip, detector):
    results = list(vidpipe.detect(clip, model=detector, batch=8))
    assert [r.frame.index for r in results] == list(range(len(results)))
    assert len(results) == reference_decode(clip, 384, 288).shape[0]
    # Batching changes nothing: frame 40 alone gives the same detections.
    alone = detector([results[40].frame.tensor])[0]
    assert alone.labels == results[40].detections.labels
    assert torch.allclose(alone.boxes, results[40].detections.boxes, atol=1e-3)


def test_classes_filter(clip, tmp_path):
    out = tmp_path / "people.jsonl"
    result = vidpipe_cli("detect", str(clip), "--json", str(out), "--classes", "person", "--max-frames", "80")
    assert result.returncode == 0, result.stderr
    records = _lines(out)
    assert len(records) == 80
    labels = {d["label"] for r in records for d in r["detections"]}
    assert labels == {"person"}


def test_unknown_class_is_a_clear_error(clip):
    result = vidpipe_cli("detect", str(clip), "--classes", "person,unicorn")
    assert result.returncode == 2 and "unicorn" in result.stderr and "Traceback" not in result.stderr


def test_annotated_video_draws_boxes_where_the_jsonl_says(clip, tmp_path):
    jsonl, video = tmp_path / "d.jsonl", tmp_path / "a.mp4"
    result = vidpipe_cli("detect", str(clip), "--json", str(jsonl), "--video", str(video))
    assert result.returncode == 0, result.stderr
    records = _lines(jsonl)
    with vidpipe.open(clip) as src:
        originals = [f.tensor for f in src]
    with vidpipe.open(video) as src:
        annotated = [f.tensor for f in src]
    assert len(annotated) == len(originals) == len(records)
    checked_boxes = checked_empty = 0
    for record, before, after in zip(records, originals, annotated, strict=True):
        if not record["detections"]:
            # Nothing drawn: the frame differs only by encoding noise.
            assert (after.float() - before.float()).abs().mean() < 4
            checked_empty += 1
            continue
        for det in record["detections"]:
            x1, y1, x2, y2 = (int(v) for v in det["box"])  # torchvision draws at truncated coordinates
            if x2 - x1 < 20 or y2 - y1 < 20:
                continue
            color = torch.tensor(color_for(det["class_id"]), dtype=torch.float32)
            # Along the left edge, each row has a pixel of the box colour (allowing for H.264's 4:2:0
            # chroma, which blurs thin lines); the same place in the input frame mostly does not.
            band = slice(max(x1 - 1, 0), x1 + annotation_sizes(before.shape[0])[1] + 1)
            rows = slice(y1 + 4, y2 - 4)

            def near(frame, band=band, rows=rows, color=color):
                distance = (frame[rows, band].float() - color).abs().amax(-1).amin(-1)
                return (distance < 70).float().mean()

            assert near(after) > 0.8, f"frame {record['frame']}: left edge of {det['label']} box not drawn"
            assert near(before) < 0.5
            checked_boxes += 1
    assert checked_boxes > 20 and checked_empty > 0


def test_truncated_source_keeps_results_and_finalises_video(tmp_path, sample):
    whole = tmp_path / "whole.mp4"
    gst_launch(
        f"filesrc location={sample} ! decodebin ! identity eos-after=120 ! videoconvert ! "
        f"x264enc speed-preset=veryfast ! mp4mux faststart=true ! filesink location={whole}"
    )
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    decodable = reference_decode(cut, 384, 288).shape[0]
    jsonl, video = tmp_path / "d.jsonl", tmp_path / "a.mp4"
    result = vidpipe_cli("detect", str(cut), "--json", str(jsonl), "--video", str(video))
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("vidpipe: error")]
    assert len(error_lines) == 1 and str(cut) in error_lines[0] and "truncated" in error_lines[0]
    assert "Traceback" not in result.stderr
    records = _lines(jsonl)
    assert [r["frame"] for r in records] == list(range(decodable))
    with vidpipe.open(video) as src:
        assert sum(1 for _ in src) == decodable


def _start_detect(tmp_path: Path, source: str) -> tuple[subprocess.Popen, Path, Path]:
    jsonl, video = tmp_path / "d.jsonl", tmp_path / "a.mp4"
    exe = Path(sys.executable).with_name("vidpipe")
    proc = subprocess.Popen(
        [str(exe), "detect", source, "--json", str(jsonl), "--video", str(video)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if jsonl.exists() and len(jsonl.read_text().splitlines()) >= 15:
            return proc, jsonl, video
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("detect produced no output in time")


def test_ctrl_c_stops_cleanly_and_finalises_outputs(tmp_path, sample):
    proc, jsonl, video = _start_detect(tmp_path, str(sample))
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr and "stopping" in stderr
    records = _lines(jsonl)
    assert 15 <= len(records) < 1552
    assert [r["frame"] for r in records] == list(range(len(records)))
    with vidpipe.open(video) as src:  # the MP4 was finalised: it has its index and every frame
        assert sum(1 for _ in src) == len(records)


def test_second_ctrl_c_exits_at_once(tmp_path, sample):
    proc, _, _ = _start_detect(tmp_path, str(sample))
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGINT
    assert time.monotonic() - start < 5


def test_live_source_batches_are_bounded_in_time(detector):
    """A live 10 FPS source with batch 8: the batcher waits at most max_wait (50 ms) for a batch to fill,
    so a partial batch goes instead of holding frames back for 0.8 s."""
    src = vidpipe.open("testsrc://ball?width=320&height=240&fps=10&frames=20&live=1")
    # (a generous latency bound: on a busy machine the default 1 s one would rightly drop late frames)
    pipeline = vidpipe.Pipeline(src, detector, batch=8, max_wait=0.05, options=vidpipe.StreamOptions(max_latency=60))
    taken_batches = []  # (frames, seconds the batcher held them after it had the first)
    original = pipeline._batcher.take

    def record(*args, **kwargs):
        start = time.perf_counter()
        taken = original(*args, **kwargs)
        if taken is not None:
            frames = sum(isinstance(item, vidpipe.Frame) for item in taken[0])
            taken_batches.append((frames, time.perf_counter() - start - taken[1]))
        return taken

    pipeline._batcher.take = record
    results = list(pipeline)
    # (a live stream drops its oldest frames when the pipeline falls behind, as on a busy machine: counted,
    # never lost unsaid)
    dropped = sum(stream.dropped for stream in pipeline.stats.streams.values())
    assert len(results) + dropped == 20
    # a partial batch is held max_wait at most (plus a busy machine's scheduling), never until it fills; how
    # many frames each holds depends on how long inference took meanwhile, so that is not what is checked
    partial = [held for frames, held in taken_batches if 0 < frames < 8]
    assert partial and max(partial) < 0.05 + 0.25, taken_batches
    assert sum(frames for frames, _ in taken_batches) == len(results)


def test_pipeline_callbacks_and_stats(clip, detector):
    seen = []
    with vidpipe.open(clip) as src:
        pipeline = vidpipe.Pipeline(src, detector, batch=4, max_frames=12, on_result=[seen.append])
        stats = pipeline.run()
    assert [r.frame.index for r in seen] == list(range(12))
    assert stats.frames == 12 and stats.fps > 0
    p50, p95 = stats.percentiles("inference")
    assert 0 < p50 <= p95
    assert "latency" in stats.summary()


def test_bad_video_suffix_fails_before_work(clip, tmp_path):
    result = vidpipe_cli("detect", str(clip), "--video", str(tmp_path / "out.gif"))
    assert result.returncode == 2 and "unknown video format" in result.stderr


def test_webm_output(clip, tmp_path):
    video = tmp_path / "a.webm"
    result = vidpipe_cli("detect", str(clip), "--video", str(video), "--max-frames", "20")
    assert result.returncode == 0, result.stderr
    with vidpipe.open(video) as src:
        assert src.info.codec.startswith("VP8") and (src.info.width, src.info.height) == (384, 288)
        assert sum(1 for _ in src) == 20
