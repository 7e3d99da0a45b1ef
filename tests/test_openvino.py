"""The OpenVINO backend: agreement with eager PyTorch fp32, the precision rule, the IR cache, the command
line, and the library-loading order that used to abort the process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import SAMPLE, run_on_small_disk, vidpipe_cli
from test_models import _both_ways

import vidpipe
from vidpipe import models
from vidpipe.errors import ModelError

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def frames(sample):
    with vidpipe.open(sample) as src:
        return [f.tensor.clone() for f in src if f.index % 30 == 0]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize(("precision", "iou", "score"), [("fp32", 0.99, 0.001), ("bf16", 0.85, 0.08)])
def test_openvino_agrees_with_eager_fp32(frames, precision, iou, score, cache, monkeypatch):
    """Every eager fp32 detection with score >= 0.6 has an OpenVINO partner (same label, IoU, score as
    for PyTorch's own bf16), and the other way round."""
    monkeypatch.setenv("VIDPIPE_CACHE", str(cache))
    eager = models.load("ssd_mobilenet_v2_coco", threshold=0.3)
    ov = models.load("ssd_mobilenet_v2_coco", backend="openvino", precision=precision, threshold=0.3)
    assert ov.backend == "openvino" and ov.precision == precision
    assert ov.torch_threads == 1 and eager.torch_threads is None  # the cores go to OpenVINO's threads
    forward, backward = _both_ways(eager(frames), ov(frames), floor=0.6, iou=iou, score=score)
    print(f"openvino {precision}: eager→ov {forward[0]}/{forward[1]}, ov→eager {backward[0]}/{backward[1]}")
    assert forward[1] >= 20 and forward[0] == forward[1] and backward[0] == backward[1]


@pytest.mark.parametrize(("flags", "expected"), [({"avx2", "avx512f", "avx512_bf16"}, "bf16"), ({"avx2"}, "fp32")])
def test_openvino_precision_follows_the_cpu(flags, expected, monkeypatch, cache):
    from vidpipe.models import base, openvino_backend

    monkeypatch.setenv("VIDPIPE_CACHE", str(cache))
    monkeypatch.setattr(base, "cpu_flags", lambda: flags)
    det = models.load("ssd_mobilenet_v2_coco", backend="openvino", precision="auto")
    assert det.precision == expected and det.dtype == torch.float32
    hint = str(det.model.compiled.get_property("INFERENCE_PRECISION_HINT"))
    assert hint == {"bf16": "<Type: 'bfloat16'>", "fp32": "<Type: 'float32'>"}[expected]
    assert openvino_backend.HINTS[expected] in ("bf16", "f32")


def test_the_converted_model_is_cached(cache, monkeypatch, sample):
    monkeypatch.setenv("VIDPIPE_CACHE", str(cache))
    det = models.load("ssd_mobilenet_v2_coco", backend="openvino", precision="fp32")
    before = det.model.path.stat().st_mtime_ns
    result = vidpipe_cli(
        "detect", str(sample), "--backend", "openvino", "--max-frames", "8", env={"VIDPIPE_CACHE": str(cache)}
    )
    assert result.returncode == 0, result.stderr
    assert "with openvino" in result.stderr
    assert det.model.path.stat().st_mtime_ns == before  # read again, not converted again
    assert len(list((cache / "openvino").glob("*.xml"))) == 1


def test_openvino_is_for_built_in_models():
    from vidpipe.models.openvino_backend import use_openvino
    from vidpipe.models.torchvision_models import TorchvisionStyleDetector

    with pytest.raises(ModelError, match="built-in models"):
        use_openvino(TorchvisionStyleDetector(torch.nn.Identity(), name="x"), "fp32")
    with pytest.raises(ModelError, match="unknown backend"):
        models.load("ssd_mobilenet_v2_coco", backend="tensorrt")


def test_openvino_loads_after_gstreamer(tmp_path):
    """GStreamer first, OpenVINO second, reading an ONNX network: the process aborted in compile_model
    ("dlSym cannot locate method 'create_extensions'") until importing vidpipe put GCC's unwinder first
    (vidpipe.unwinder)."""
    code = (
        "import torch, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "import vidpipe.gst\n"
        "from vidpipe import models\n"
        "import openvino as ov\n"
        "det = models.load('ssd_mobilenet_v2_coco', precision='fp32', channels_last=False)\n"
        f"torch.onnx.export(det.model, (torch.rand(1, 3, 300, 300),), '{tmp_path}/net.onnx', dynamo=False)\n"
        "core = ov.Core()\n"
        "core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES')\n"
        f"core.compile_model(core.read_model('{tmp_path}/net.onnx'), 'CPU', {{'INFERENCE_PRECISION_HINT': 'f32'}})\n"
        "print('compiled')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "compiled" in result.stdout, result.stderr[-2000:]


def test_a_full_cache_disk_runs_uncached(sample, tmp_path):
    """Both caches (the converted weights, the OpenVINO model) on a 64 KiB tmpfs: warnings, no leftover
    partial files, and the run completes."""

    cache, listing = tmp_path / "cache", tmp_path / "listing.txt"
    exe = Path(sys.executable).with_name("vidpipe")
    command = (
        f"VIDPIPE_CACHE={cache} {exe} detect {sample} --backend openvino --max-frames 8; rc=$?; "
        f"find {cache} -type f > {listing}; exit $rc"
    )
    result = run_on_small_disk(cache, "64k", command)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    warned = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warned == [
        f"vidpipe: warning: cannot write the model cache in {cache} (a write failed: read-only or full?): the model "
        "runs uncached, converted again at each start"
    ], result.stderr  # once for both caches, without torch's or OpenVINO's cryptic texts
    assert "s, not cached)" in result.stderr and "cached for the next runs" not in result.stderr
    assert "frames      8" in result.stderr
    assert listing.read_text() == ""  # nothing half-written left behind


@pytest.fixture(scope="module")
def unseen(sample):
    """Frames of the clip's second half: int8's calibration frames all come from its first half."""
    with vidpipe.open(sample) as src:
        return [f.tensor.clone() for f in src if f.index >= 776 and f.index % 15 == 0]


def test_int8_keeps_the_detections_on_frames_it_was_not_calibrated_on(unseen, cache, monkeypatch):
    """``--precision int8`` (NNCF, calibrated on the shipped frames): at least 95 % of eager fp32's
    detections (>= 0.5) found by int8 and the other way round, by the bar bf16 meets (same label,
    IoU >= 0.85, |Δscore| <= 0.08); quantised once, then read from the cache."""
    pytest.importorskip("nncf")
    from vidpipe.models.openvino_backend import CALIBRATION

    monkeypatch.setenv("VIDPIPE_CACHE", str(cache))
    eager = models.load("ssd_mobilenet_v2_coco", precision="fp32", threshold=0.3)
    int8 = models.load("ssd_mobilenet_v2_coco", backend="openvino", precision="int8", threshold=0.3)
    assert int8.precision == "int8" and int8.converted is not None and int8.model.path.name.endswith("-int8.xml")
    assert max(int(p.stem) for p in CALIBRATION.glob("*.jpg")) < 776
    forward, backward = _both_ways(eager(unseen), int8(unseen), floor=0.5, iou=0.85, score=0.08)
    print(f"int8: eager→int8 {forward[0]}/{forward[1]}, int8→eager {backward[0]}/{backward[1]}")
    assert forward[1] >= 40 and forward[0] >= 0.95 * forward[1] and backward[0] >= 0.95 * backward[1]
    again = models.load("ssd_mobilenet_v2_coco", backend="openvino", precision="int8")
    assert again.converted is None  # read from the cache


def test_int8_is_asked_for_never_chosen_and_needs_openvino(cache, monkeypatch):
    from vidpipe.models import base

    monkeypatch.setattr(base, "cpu_flags", lambda: {"avx512_bf16", "amx_bf16", "avx512_vnni", "amx_int8"})
    assert base.choose_precision("auto", torch.device("cpu"))[0] == "bf16"
    with pytest.raises(ModelError, match="int8 runs on the OpenVINO backend"):
        models.load("ssd_mobilenet_v2_coco", backend="torch", precision="int8")
    result = vidpipe_cli("detect", str(SAMPLE), "--backend", "torch", "--precision", "int8")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "int8 runs on the OpenVINO backend" in result.stderr
