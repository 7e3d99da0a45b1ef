"""The fastest verified path by default: the backend chosen at run time from what is installed and the
device, and frames scaled to a fixed-input model's size inside GStreamer when no output draws on them,
with the detections kept within the agreement bounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import vidpipe_cli
from test_models import _matched

import vidpipe
from media import first_frames, rotate_mp4
from vidpipe import models
from vidpipe.models import base
from vidpipe.sinks import JsonlSink, VideoSink


@pytest.mark.parametrize(
    ("installed", "name", "device", "expected"),
    [
        (True, "ssd_mobilenet_v2_coco", "cpu", "openvino"),
        (True, "ssd300", "cpu", "openvino"),
        (False, "ssd_mobilenet_v2_coco", "cpu", "torch"),  # OpenVINO missing
        (True, "ssd_mobilenet_v2_coco", "cuda", "torch"),  # PyTorch on CUDA
        (True, "yolo.onnx", "cpu", "torch"),  # not a built-in model
        (True, "torchvision:ssdlite320_mobilenet_v3_large", "cpu", "torch"),
    ],
)
def test_backend_auto_decides_from_what_is_installed(installed, name, device, expected, monkeypatch):
    real = models.importlib.util.find_spec

    def find_spec(package: str):
        if package == "openvino":
            return object() if installed else None
        return real(package)

    monkeypatch.setattr(models.importlib.util, "find_spec", find_spec)
    backend, why = models.choose_backend("auto", name, device)
    assert backend == expected and why.startswith("auto: ")
    assert models.choose_backend("torch", name, device) == ("torch", "as asked")


@pytest.mark.parametrize(("flags", "precision"), [({"avx2", "avx512f", "avx512_bf16"}, "bf16"), ({"avx2"}, "fp32")])
def test_defaults_on_cpus_with_and_without_native_bf16(flags, precision, monkeypatch, tmp_path):
    """Without native bf16 the defaults run OpenVINO in fp32 (PyTorch's default there was fp32 too)."""
    pytest.importorskip("openvino")
    monkeypatch.setenv("VIDPIPE_CACHE", str(tmp_path))
    monkeypatch.setattr(base, "cpu_flags", lambda: flags)
    detector = models.load("ssd_mobilenet_v2_coco", precision="auto", backend="auto")
    assert (detector.backend, detector.precision) == ("openvino", precision)
    assert detector.converted is not None and detector.converted > 0  # paid here, once
    again = models.load("ssd_mobilenet_v2_coco", precision="auto", backend="auto")
    assert again.converted is None  # read from the cache


def test_the_summary_says_which_backend_and_why(sample, tmp_path):
    pytest.importorskip("openvino")
    result = vidpipe_cli("detect", str(sample), "--max-frames", "4", env={"VIDPIPE_CACHE": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if x.startswith("model"))
    assert "with openvino" in line and "auto: OpenVINO on the CPU" in line and "converted for openvino in" in line
    again = vidpipe_cli("detect", str(sample), "--max-frames", "4", env={"VIDPIPE_CACHE": str(tmp_path)})
    assert "converted" not in next(x for x in again.stderr.splitlines() if x.startswith("model"))
    listing = vidpipe_cli("models").stdout
    assert "--backend auto for ssd_mobilenet_v2_coco on this CPU: openvino" in listing


@pytest.fixture(scope="module")
def clip(sample, tmp_path_factory) -> Path:
    return first_frames(sample, tmp_path_factory.mktemp("defaults") / "clip.mp4", 150)


def _run(clip: Path, detector, full_frames: bool, tmp_path: Path) -> list[dict]:
    out = tmp_path / f"full{full_frames}.jsonl"
    vidpipe.Pipeline(str(clip), detector, sinks=[JsonlSink(out)], full_frames=full_frames).run()
    return [json.loads(x) for x in out.read_text().splitlines() if '"event"' not in x]


def _detections(record: dict) -> vidpipe.Detections:
    found = record["detections"]
    return vidpipe.Detections(
        torch.tensor([d["box"] for d in found]).reshape(-1, 4), torch.tensor([d["score"] for d in found]),
        torch.tensor([d["class_id"] for d in found], dtype=torch.int64), [d["label"] for d in found],
    )  # fmt: skip


def test_scaling_in_gstreamer_keeps_the_detections(clip, tmp_path):
    """Frames scaled by GStreamer (YUV to RGB and 384x288 to 300x300 in one pass) against PyTorch's own
    resize of the full RGB frame: every detection >= 0.6 of either has a partner in the other (same
    class, IoU >= 0.85, |Δscore| <= 0.08: the bounds bf16 is held to) on at least 97 % of them."""
    detector = models.load("ssd_mobilenet_v2_coco", threshold=0.3)
    full, scaled = _run(clip, detector, True, tmp_path), _run(clip, detector, False, tmp_path)
    assert len(full) == len(scaled) >= 150
    assert all((r["width"], r["height"]) == (384, 288) for r in scaled)  # the picture's size
    forward = backward = (0, 0)
    for a, b in zip(full, scaled, strict=True):
        a, b = _detections(a), _detections(b)
        m, n = _matched(a[a.scores >= 0.6], b, iou=0.85, score=0.08)
        forward = (forward[0] + m, forward[1] + n)
        m, n = _matched(b[b.scores >= 0.6], a, iou=0.85, score=0.08)
        backward = (backward[0] + m, backward[1] + n)
    print(f"full→scaled {forward[0]}/{forward[1]}, scaled→full {backward[0]}/{backward[1]}")
    assert forward[1] >= 60
    assert forward[0] >= 0.97 * forward[1] and backward[0] >= 0.97 * backward[1]


def test_frames_keep_their_picture_when_an_output_draws(clip, tmp_path):
    detector = models.load("ssd_mobilenet_v2_coco")
    pipeline = vidpipe.Pipeline(str(clip), detector, sinks=[VideoSink(tmp_path / "v.mp4")], full_frames=False)
    assert pipeline.model_size() is None  # the video needs the full picture
    assert vidpipe.Pipeline(str(clip), detector, full_frames=False).model_size() == (300, 300)
    assert vidpipe.Pipeline(str(clip), detector).model_size() is None  # Python's default: full frames


def test_a_rotated_picture_keeps_its_upright_size(tmp_path, sample):
    rotated = rotate_mp4(first_frames(sample, tmp_path / "short.mp4", 10), tmp_path / "rotated.mp4")
    with vidpipe.open(rotated, model_size=(300, 300)) as src:
        frame = next(iter(src))
        assert frame.tensor.shape == (300, 300, 3)
        assert (frame.width, frame.height) == (288, 384) and (src.info.width, src.info.height) == (288, 384)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [([], (300, 300)), (["--video", "v.mp4"], None), (["--model", "x.onnx"], None), (["--device", "cuda"], None),
     (["--model", "ssd300"], (300, 300))],
)  # fmt: skip
def test_the_cli_scales_in_gstreamer_only_when_nothing_draws(extra, expected):
    from vidpipe.cli import build_parser
    from vidpipe.cli.detect import stream_options

    args = build_parser().parse_args(["detect", "clip.mp4", *extra])
    assert stream_options(args).model_size == expected
