"""The element's properties: their GObject declarations, and their values mapped into the one
configuration model (checked there, with the same words as every other front door; named here as
properties)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gi

gi.require_version("GObject", "2.0")
from gi.repository import GObject  # noqa: E402

from ..options import MotionOptions  # noqa: E402

if TYPE_CHECKING:
    from ..pipeline.config import ModelConfig, StreamConfig

DEFAULT_MODEL = "ssd_mobilenet_v2_coco"
RW = GObject.ParamFlags.READWRITE
# the ranges of the options every front door shares are wide: their rules (vidpipe.rules) check them, in the
# same words as the CLI, the service and Python
# (inf reaches the rules, which refuse it by name; GObject itself refuses nan, with its own warning)
MAX_FLOAT, MIN_INT, MAX_INT = float("inf"), -(2**31), 2**31 - 1
LIVE_PROPERTIES = ("interval", "post-messages")  # read at each frame: the others are read at the start
SPECS = {  # GObject's property declarations (the element's __gproperties__)
    "model": (str, "model", "detector: a name (see 'vidpipe models') or an .onnx file", DEFAULT_MODEL, RW),
    "weights": (str, "weights", "weights file for the model (empty: the model's own)", "", RW),
    "backend": (str, "backend", "auto, torch or openvino", "auto", RW),
    "device": (str, "device", "cpu, cuda or cuda:N", "cpu", RW),
    "precision": (str, "precision", "auto, fp32, bf16, fp16 or int8 (OpenVINO only)", "auto", RW),
    "threshold": (float, "threshold", "minimum score, 0 to 1 (-1: the model's)", -MAX_FLOAT, MAX_FLOAT, -1.0, RW),
    "classes": (str, "classes", "keep only these labels, comma-separated (empty: all)", "", RW),
    "interval": (int, "interval", "detect in every Nth frame; the others get the last results", 1, 10_000, 1, RW),
    "track": (bool, "track", "give each object a track id (ByteTrack)", False, RW),
    "lines": (str, "lines", "counting lines NAME=x1,y1,x2,y2, separated by ';' (turn tracking on)", "", RW),
    "zones": (str, "zones", "zones NAME=x1,y1,x2,y2,x3,y3,..., separated by ';' (turn tracking on)", "", RW),
    "anchor": (str, "anchor", "the point of a box that counts: bottom_center or center", "bottom_center", RW),
    "draw": (bool, "draw", "draw boxes, labels, lines and zones on the frames", False, RW),
    "batch-size": (int, "batch size", "frames detected together (held up to max-latency)", MIN_INT, MAX_INT, 1, RW),
    "max-latency": (float, "max latency", "seconds a frame may be held to fill a batch", 0.0, 60.0, 0.1, RW),
    "post-messages": (bool, "post messages", "post an element message per frame on the bus", False, RW),
    "json": (str, "json", "write detections and events as JSON Lines to this file (empty: none)", "", RW),
    "stream": (str, "stream", "the stream name in messages and JSON Lines", "0", RW),
    "motion": (str, "motion", "skip the detector where nothing moved: auto (live pipelines), on or off", "auto", RW),
    "motion-threshold": (float, "motion threshold", "grey levels a pixel must change by to count as motion",
                         -MAX_FLOAT, MAX_FLOAT, MotionOptions().threshold, RW),
    "motion-min-area": (float, "motion min area", "fraction of the frame that must change for motion",
                        -MAX_FLOAT, MAX_FLOAT, MotionOptions().min_area, RW),
    "motion-masks": (str, "motion masks", "polygons x1,y1,x2,y2,x3,y3,... whose changes never count, separated "
                     "by ';'", "", RW),
}  # fmt: skip
# the fields whose property is not FIELD-NAME (a nested one's: PARENT-FIELD)
FIELDS = {"name": "model", "batch": "batch-size", "motion.mode": "motion"}


def defaults() -> dict:
    """Each property's default value."""
    return {name: spec[3] if spec[0] is not float and spec[0] is not int else spec[-2] for name, spec in SPECS.items()}


def property_name(field: str) -> str:
    """A configuration field as the element spells it: ``max_det`` → ``max-det``."""
    return FIELDS.get(field, field.replace("_", "-").replace(".", "-"))


def _split(text: str) -> list[str]:
    """The items of a ';'-separated property, stripped, empty ones left out."""
    return [item.strip() for item in text.split(";") if item.strip()]


def configs(props: dict) -> tuple[ModelConfig, StreamConfig]:
    """The model's and the stream's configuration from the element's properties; :class:`VidpipeError`
    ``vidpipe_detect: PROPERTY must be ...`` for a value that breaks its rule."""
    from pydantic import ValidationError

    from ..errors import VidpipeError
    from ..pipeline.config import ModelConfig, StreamConfig, config_error

    model = {
        "name": props["model"], "weights": props["weights"] or None, "backend": props["backend"],
        "device": props["device"], "precision": props["precision"],
        "threshold": None if props["threshold"] == -1 else props["threshold"],
        "classes": props["classes"] or None, "batch": props["batch-size"],
    }  # fmt: skip
    stream = {
        "track": props["track"], "lines": _split(props["lines"]), "zones": _split(props["zones"]),
        "motion": {"mode": props["motion"], "threshold": props["motion-threshold"],
                   "min_area": props["motion-min-area"], "masks": _split(props["motion-masks"])},
    }  # fmt: skip
    try:
        return (
            ModelConfig.model_validate({k: v for k, v in model.items() if v is not None}),
            StreamConfig.model_validate(stream),
        )
    except ValidationError as exc:
        raise VidpipeError(f"vidpipe_detect: {config_error(exc, property_name)}") from None
