"""Detectors by name: ``load(name, ...)`` and ``available()``.

Names: ``ssd_mobilenet_v2_coco`` (default, works offline), ``ssd300`` (NVIDIA's, needs ``weights``),
``torchvision:<builder>``, an ONNX file (``*.onnx``, YOLO exports), a TorchScript file
(``*.pt``/``*.ts``/``*.torchscript``) or ``path/to/module.py:factory``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from ..errors import ModelError, UnknownModelError
from ..unwinder import MIXED_MESSAGE, mixed_unwinders
from .base import Batch, Detector
from .detections import Detections

log = logging.getLogger(__name__)

DEFAULT_MODEL = "ssd_mobilenet_v2_coco"
BUILT_IN = {
    "ssd_mobilenet_v2_coco": "SSD-MobileNetV2 COCO (TF 2018-03-29 weights, offline) - default",
    "ssd300": "NVIDIA SSD300 ResNet-50 COCO (the original post's model; needs --weights)",
}
BACKENDS = ("auto", "torch", "openvino")
# (width, height) the built-in models' networks take: frames can be scaled to it inside GStreamer
INPUT_SIZES = {"ssd_mobilenet_v2_coco": (300, 300), "ssd300": (300, 300)}
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")

__all__ = ["DEFAULT_MODEL", "Batch", "Detections", "Detector", "available", "choose_backend", "load"]


def available() -> dict[str, str]:
    """Model names with a one-line description."""
    from .torchvision_models import PREFIX, builders

    names = dict(BUILT_IN)
    for builder in builders():
        names[PREFIX + builder] = "torchvision detector (torchvision's weights cache, or --weights)"
    names["FILE.pt"] = "a TorchScript detector (torchvision output convention)"
    names["FILE.onnx"] = "an ONNX detector run by ONNX Runtime: YOLO (v5/v7, v8/v9/v11, end-to-end) exports"
    names["FILE.py:factory"] = "a Python factory returning an nn.Module or Detector"
    return names


def model_file(name: str) -> Path | None:
    """The local file a model name reads: an ONNX or TorchScript file, or the module of ``FILE.py:factory``
    (None for the built-in and ``torchvision:`` names)."""
    if ".py:" in name:
        return Path(name.rpartition(":")[0])
    if name.lower().endswith(".onnx") or name.endswith(TORCHSCRIPT_SUFFIXES):
        return Path(name)
    return None


def choose_backend(backend: str, name: str, device: str = "cpu") -> tuple[str, str]:
    """What runs the model's network, and why. ``auto``: OpenVINO for a built-in model on the CPU where
    it is installed (the fastest verified path: the same detections as eager fp32, see the README's
    agreement table), PyTorch on CUDA, for other models, and where OpenVINO is missing."""
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r} (use {', '.join(BACKENDS)})")
    if backend != "auto":
        return backend, "as asked"
    if not str(device).startswith("cpu"):
        return "torch", "auto: PyTorch on CUDA"
    if name not in BUILT_IN:
        return "torch", "auto: OpenVINO runs the built-in models only"
    if importlib.util.find_spec("openvino") is None:
        return "torch", "auto: OpenVINO is not installed (pip install 'vidpipe[openvino]')"
    if mixed_unwinders():
        log.warning("OpenVINO is not used: %s", MIXED_MESSAGE)
        return "torch", "auto: OpenVINO cannot run safely in this process (GStreamer loaded before vidpipe)"
    return "openvino", "auto: OpenVINO on the CPU"


def load(
    name: str = DEFAULT_MODEL,
    *,
    weights: str | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    threshold: float | None = None,
    backend: str = "torch",
    **options,
) -> Detector:
    """Build a detector by name. ``precision``: fp32/bf16 on CPU (int8 with ``backend="openvino"``),
    fp16/bf16/fp32 on CUDA, or ``auto`` (bf16 where the CPU computes it natively, else fp32; on CUDA the
    fastest in a measured table):
    ``detector.precision`` and ``detector.precision_reason`` say what was chosen and why.
    ``threshold`` overrides the model's default minimum score. ``backend="openvino"`` runs a built-in
    model's network with OpenVINO (fp32 or bf16 by the same rule); ``iou`` sets the NMS IoU of any model
    that selects its boxes outside its graph; ``"auto"`` chooses (see
    :func:`choose_backend`); ``detector.backend_reason`` says why. These defaults (fp32, PyTorch) are the
    reference; ``vidpipe detect`` and :func:`vidpipe.detect` use ``auto`` for both. Raises
    :class:`vidpipe.errors.ModelError`. ``detector.load_args`` keeps these arguments (a cluster's
    workers load the same detector from them)."""
    name = os.fspath(name) if isinstance(name, os.PathLike) else name
    if not isinstance(name, str):
        raise UnknownModelError(f"model must be a name (see `vidpipe models`) or a file path, got {name!r}")
    load_args = {"name": name, "weights": weights, "device": device, "precision": precision,
                 "threshold": threshold, "backend": backend, **options}  # fmt: skip
    iou = options.pop("iou", None) if not name.lower().endswith(".onnx") else None
    detector = _load_backend(name, weights=weights, device=device, precision=precision, threshold=threshold,
                             backend=backend, **options)  # fmt: skip
    if iou is not None:
        detector.set_iou(iou)
    detector.load_args = load_args
    return detector


def _load_backend(
    name: str, *, weights: str | None, device: str, precision: str, threshold: float | None, backend: str, **options
) -> Detector:
    chosen, why = choose_backend(backend, name, device)
    if precision == "int8" and chosen != "openvino":
        raise ModelError(
            f"{name}: --precision int8 runs on the OpenVINO backend (built-in models on the CPU, "
            f"pip install 'vidpipe[openvino,int8]'); here {why.removeprefix('auto: ')}"
        )
    if chosen == "openvino":
        from .openvino_backend import use_openvino

        detector = load(name, weights=weights, device=device, precision="fp32", threshold=threshold,
                        channels_last=False, **options)  # fmt: skip
        detector = use_openvino(detector, precision)
        detector.backend_reason = why
        return detector
    detector = _load_torch(name, weights=weights, device=device, precision=precision, threshold=threshold, **options)
    detector.backend_reason = why
    return detector


def _load_torch(
    name: str, *, weights: str | None, device: str, precision: str, threshold: float | None, **options
) -> Detector:
    common = {"device": device, "precision": precision, "threshold": threshold, **options}
    if name == "ssd_mobilenet_v2_coco":
        from .ssd_mobilenet_v2 import SSDMobileNetV2Detector

        return SSDMobileNetV2Detector(weights=weights, **common)
    if name == "ssd300":
        from .ssd300 import SSD300Detector

        return SSD300Detector(weights=weights, **common)
    if name.startswith("torchvision:"):
        from .torchvision_models import load_torchvision

        return load_torchvision(name.split(":", 1)[1], weights=weights, **common)
    if ".py:" in name:
        from .user import load_factory

        return load_factory(name, weights=weights, **common)
    if name.lower().endswith(".onnx"):
        from .onnx import OnnxDetector

        if weights is not None:
            raise ModelError(f"{name}: an ONNX file holds its own weights; --weights does not apply")
        common.pop("precision")
        return OnnxDetector(name, **common)
    if name.endswith(TORCHSCRIPT_SUFFIXES):
        from .user import load_torchscript
        from .weights import check_file

        return load_torchscript(check_file(name, "TorchScript file", UnknownModelError), **common)
    known = ", ".join([*BUILT_IN, "torchvision:<builder>", "FILE.onnx", "FILE.pt", "FILE.py:factory"])
    raise UnknownModelError(f"unknown model {name!r} (known: {known}; `vidpipe models` lists them all)")
