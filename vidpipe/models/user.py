"""User models: a TorchScript file, or ``path/to/module.py:factory``.

The model takes a list of ``float[3, H, W]`` RGB tensors in [0, 1] (one per frame, the frame's own size)
and returns one ``{"boxes": [N, 4] x1y1x2y2 pixels, "scores": [N], "labels": [N] int}`` dict per image —
torchvision's detection convention (a scripted torchvision model's ``(losses, detections)`` works too).
Labels are looked up in the model's ``classes`` attribute (a list of names) when it has one, else in
COCO's category ids. A factory may also return a ready :class:`~vidpipe.models.base.Detector`.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError, WeightsError
from .base import Detector
from .torchvision_models import TorchvisionStyleDetector


def load_torchscript(path: Path, **kwargs: Any) -> TorchvisionStyleDetector:
    try:
        with warnings.catch_warnings():  # PyTorch's deprecation notice of torch.jit.load, on every load
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise WeightsError(
            f"{path}: not a loadable TorchScript file ({type(exc).__name__}); a YOLO checkpoint from Ultralytics "
            f"runs once exported to ONNX: yolo export model={path.name} format=onnx, then --model {path.stem}.onnx"
        ) from None
    return TorchvisionStyleDetector(model, name=str(path), **kwargs)


def load_factory(spec: str, weights: str | None = None, **kwargs: Any) -> Detector:
    """``path/to/module.py:factory`` — call ``factory()`` (or ``factory(weights=...)``)."""
    file, _, attr = spec.rpartition(":")
    path = Path(file)
    if not path.is_file():
        raise ModelError(f"{spec}: no such Python file {file}")
    module_name = f"vidpipe_user_{path.stem}"
    spec_obj = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec_obj)
    sys.modules[module_name] = module
    try:
        spec_obj.loader.exec_module(module)
    except Exception as exc:
        raise ModelError(f"{spec}: importing {file} failed: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelError(f"{spec}: {file} has no callable {attr!r}")
    try:
        made = factory(weights=weights) if weights is not None else factory()
    except Exception as exc:
        raise ModelError(f"{spec}: {attr}() failed: {type(exc).__name__}: {exc}") from None
    if isinstance(made, Detector):
        return made
    if not isinstance(made, nn.Module):
        raise ModelError(f"{spec}: {attr}() returned {type(made).__name__}, not an nn.Module or Detector")
    return TorchvisionStyleDetector(made, name=spec, **kwargs)
