"""The rules of a pipeline's arguments and of a stream's options, checked in one place for the local
runner and the cluster's."""

from __future__ import annotations

import dataclasses
import math

from ..errors import VidpipeError
from ..options import StreamOptions

SINK_ERRORS = ("stop", "isolate")


def check_arguments(
    detector: object, source: object, sources: object, *, keep_alive: bool, batch: object, max_frames: object,
    sink_errors: str, in_flight: object = None,
) -> None:  # fmt: skip
    """Raise :class:`VidpipeError` naming the first argument of a pipeline that breaks its rule."""
    if detector is None:
        raise VidpipeError("a pipeline needs a detector")
    if source is not None and sources is not None:
        raise VidpipeError("give one source, or sources=[...], not both")
    if source is None and sources is None and not keep_alive:
        raise VidpipeError("give one source, or sources=[...] (or keep_alive=True to add streams later)")
    for name, value in (("batch", batch), ("max_frames", max_frames), ("in_flight", in_flight)):
        if (value is not None or name == "batch") and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise VidpipeError(f"{name} must be at least 1, got {value!r}")
    if sink_errors not in SINK_ERRORS:
        raise VidpipeError(f"sink_errors must be one of {', '.join(SINK_ERRORS)}, got {sink_errors!r}")


def stream_options(
    base: StreamOptions, *, detect_fps: object = None, max_latency: object = None, max_frames: object = None
) -> StreamOptions:
    """``base`` with a stream's own options laid over it, each checked (a positive, finite number)."""
    changes: dict = {}
    numbers = (("detect_fps", detect_fps, "a number"), ("max_latency", max_latency, "a number of seconds"))
    for name, value, unit in numbers:
        if value is None:
            continue
        if isinstance(value, bool) or not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise VidpipeError(f"{name} must be {unit} above 0, got {value!r}")
        changes[name] = float(value)
    if max_frames is not None:
        if not isinstance(max_frames, int) or isinstance(max_frames, bool) or max_frames < 1:
            raise VidpipeError(f"max_frames must be at least 1, got {max_frames!r}")
        changes["max_frames"] = max_frames
    return dataclasses.replace(base, **changes)
