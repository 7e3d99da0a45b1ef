"""The fastest verified path by default: the backend chosen at run time from what is installed and the
device, and frames scaled to a fixed-input model's size inside GStreamer when no output draws on them,
with the detections kept within the agreement bounds."""

from __future__ import annotations

import pytest
from conftest import vidpipe_cli

from vidpipe import models
from vidpipe.models import base


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
