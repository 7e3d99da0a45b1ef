"""One truth: the same video gives the same detections whatever outputs are asked for and whichever front
door is used (CLI, Python, the service; the element in test_element.py), and the default path agrees with
the reference (OpenCV DNN on the same graph). On a clip not used for any tuning: the second half of the
bundled clip at 640×360."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from conftest import SAMPLE, vidpipe_cli
from reference import opencv_detections
from serve_helpers import Served
from test_models import _matched

import vidpipe
from media import write_video
from vidpipe.models.detections import Detections

pytestmark = pytest.mark.slow
STRICT = {"iou": 0.9, "score": 0.03}  # the rule outputs and front doors are held to
BF16 = {"iou": 0.85, "score": 0.08}  # the rule the bf16 default is held to against the fp32 reference


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> Path:
    """90 frames from 30 s on of the bundled clip, scaled to 640×360 (a size no path was tuned on)."""
    with vidpipe.open(SAMPLE, size=(640, 360)) as src:
        frames = [f.tensor.clone() for f in src if 30.0 <= f.pts < 33.0]
    return write_video(tmp_path_factory.mktemp("truth") / "held-out.mp4", frames)


def records(path: Path) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if "detections" in r]


def as_detections(record: dict) -> Detections:
    found = record["detections"]
    return Detections(
        torch.tensor([d["box"] for d in found], dtype=torch.float32).reshape(-1, 4),
        torch.tensor([d["score"] for d in found], dtype=torch.float32),
        torch.tensor([d["class_id"] for d in found], dtype=torch.int64),
        [d["label"] for d in found],
    )


def agreement(ours: list[Detections], theirs: list[Detections], iou: float, score: float) -> tuple[float, float, int]:
    """(share of ``theirs`` ≥ 0.58 found in ``ours``, share of ``ours`` ≥ 0.5 found in ``theirs``, how many
    of ours were compared); both lists hold candidates down to 0.42, so a score just under a threshold
    on one side is not a miss."""
    fwd, bwd, of_theirs, of_ours = 0, 0, 0, 0
    assert len(ours) == len(theirs)
    for mine, ref in zip(ours, theirs, strict=True):
        r, m = ref[ref.scores >= 0.58], mine[mine.scores >= 0.5]
        fwd, of_theirs = fwd + _matched(r, mine, iou=iou, score=score)[0], of_theirs + len(r)
        bwd, of_ours = bwd + _matched(m, ref, iou=iou, score=score)[0], of_ours + len(m)
    return fwd / max(of_theirs, 1), bwd / max(of_ours, 1), of_ours


def cli(clip: Path, out: Path, *extra: str) -> list[Detections]:
    result = vidpipe_cli("detect", str(clip), "--threshold", "0.42", "--json", str(out), *extra)
    assert result.returncode == 0, result.stderr
    return [as_detections(r) for r in records(out)]


@pytest.fixture(scope="module")
def plain(held_out, tmp_path_factory) -> list[Detections]:
    """The CLI's defaults with JSON Lines only: the path every other is compared with."""
    return cli(held_out, tmp_path_factory.mktemp("plain") / "plain.jsonl")


def assert_same(got: list[Detections], want: list[Detections]) -> None:
    fwd, bwd, compared = agreement(got, want, **STRICT)
    print(f"strict rule: {fwd:.1%} / {bwd:.1%} of {compared}")
    assert compared >= 60, "too few detections to compare"
    assert fwd >= 0.99 and bwd >= 0.99


def test_drawing_outputs_do_not_change_the_detections(held_out, plain, tmp_path):
    drawn = cli(held_out, tmp_path / "drawn.jsonl", "--video", str(tmp_path / "drawn.mp4"), "--csv",
                str(tmp_path / "drawn.csv"))  # fmt: skip
    assert_same(drawn, plain)


def test_python_gives_what_the_cli_gives(held_out, plain):
    found = [r.detections for r in vidpipe.detect(str(held_out), threshold=0.42)]
    assert_same(found, plain)


def test_the_service_gives_what_the_cli_gives(held_out, plain, tmp_path):
    config = f"""
model: {{threshold: 0.42}}
streams:
  held:
    uri: {held_out}
    record: {{json: true}}
output_dir: {tmp_path / "rec"}
"""
    served = Served(tmp_path, config).wait_ready()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            files = list((tmp_path / "rec").rglob("*.jsonl"))
            if files and len(records(files[0])) >= len(plain):
                break
            time.sleep(0.5)
    finally:
        served.stop()
    (recording,) = list((tmp_path / "rec").rglob("*.jsonl"))
    assert_same([as_detections(r) for r in records(recording)], plain)


def test_the_default_path_agrees_with_opencv_dnn(held_out, plain):
    """The defaults (OpenVINO bf16 where the CPU has it) against OpenCV DNN fp32 on the same graph and the
    same decoded frames, at the bf16 rule: ≥ 98 % both ways (100 % on this clip; the held-out clip is encoded
    with one x264 thread, so every run compares the same pixels)."""
    theirs = opencv_detections([frame.tensor for frame in vidpipe.open(held_out)], 0.42)
    fwd, bwd, compared = agreement(plain, theirs, **BF16)
    print(f"OpenCV→vidpipe {fwd:.1%}, vidpipe→OpenCV {bwd:.1%} of {compared}")
    assert compared >= 60
    assert fwd >= 0.98 and bwd >= 0.98
