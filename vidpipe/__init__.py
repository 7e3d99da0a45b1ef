"""vidpipe: GStreamer video into PyTorch tensors, object detection, and useful outputs.

``vidpipe.open`` (frames), ``vidpipe.detect`` (frames + detections), ``vidpipe.models.load`` (detectors).
Attributes load on first use, so ``vidpipe.models`` works on a machine without GStreamer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import VidpipeError

if TYPE_CHECKING:
    from . import errors, models
    from .frames import Frame
    from .models import Detections, Detector
    from .runner import Pipeline, Result, Stats, detect
    from .source import Source, SourceInfo, open

__all__ = [
    "Detections",
    "Detector",
    "Frame",
    "Pipeline",
    "Result",
    "Source",
    "SourceInfo",
    "Stats",
    "VidpipeError",
    "detect",
    "errors",
    "models",
    "open",
]
__version__ = "0.1.0"

_WHERE = {
    "Frame": "frames",
    "Detections": "models",
    "Detector": "models",
    "Pipeline": "runner",
    "Result": "runner",
    "Stats": "runner",
    "detect": "runner",
    "Source": "source",
    "SourceInfo": "source",
    "open": "source",
}


def __getattr__(name: str) -> object:
    if name in ("errors", "models"):
        return importlib.import_module(f".{name}", __name__)
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vidpipe' has no attribute {name!r}")
