"""vidpipe: GStreamer video into PyTorch tensors, object detection, and useful outputs."""

from __future__ import annotations

from .errors import VidpipeError
from .frames import Frame
from .source import Source, SourceInfo, open

__all__ = ["Frame", "Source", "SourceInfo", "VidpipeError", "open"]
__version__ = "0.1.0"
