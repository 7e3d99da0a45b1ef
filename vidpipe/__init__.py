"""vidpipe: GStreamer video into PyTorch tensors, object detection, and useful outputs.

``vidpipe.open`` (frames), ``vidpipe.detect`` (frames + detections, one source or several),
``vidpipe.Pipeline`` (streams → batcher → detector → stages → sinks), ``vidpipe.models.load`` (detectors).
Attributes load on first use, so ``vidpipe.models`` works on a machine without GStreamer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .unwinder import prefer_gcc_unwinder

prefer_gcc_unwinder()  # before anything loads GStreamer's libunwind (see vidpipe.unwinder)

from .errors import VidpipeError  # noqa: E402

if TYPE_CHECKING:
    from . import errors, models
    from .api import Pipeline, detect
    from .gst.opening import open
    from .gst.source import Source
    from .models import Detector
    from .options import MotionOptions, StreamOptions
    from .pipeline import Stats, StreamsFailedError
    from .types import Detections, Event, Frame, Result, SourceInfo

__all__ = [
    "Detections",
    "Detector",
    "Event",
    "Frame",
    "MotionOptions",
    "Pipeline",
    "Result",
    "Source",
    "SourceInfo",
    "Stats",
    "StreamOptions",
    "StreamsFailedError",
    "VidpipeError",
    "detect",
    "errors",
    "models",
    "open",
]
__version__ = "0.1.0"

_WHERE = {
    "Detections": "types",
    "Event": "types",
    "Frame": "types",
    "Result": "types",
    "SourceInfo": "types",
    "Detector": "models",
    "StreamOptions": "options",
    "MotionOptions": "options",
    "Pipeline": "api",
    "Stats": "pipeline",
    "StreamsFailedError": "pipeline",
    "detect": "api",
    "Source": "gst.source",
    "open": "gst.opening",
}


def __getattr__(name: str) -> object:
    if name in ("errors", "models"):
        return importlib.import_module(f".{name}", __name__)
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vidpipe' has no attribute {name!r}")
