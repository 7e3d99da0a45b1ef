"""Detections: one typed result per frame that every sink accepts (defined in :mod:`vidpipe.types`)."""

from ..types import Detections

__all__ = ["Detections"]
