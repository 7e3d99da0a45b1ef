"""vidpipe: GStreamer video into PyTorch tensors, object detection, and useful outputs."""

from __future__ import annotations

from . import errors, models
from .errors import VidpipeError
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
