"""One configuration model for every front door: a stream's options (:class:`StreamConfig`) and the
detector's (:class:`ModelConfig`). The CLI maps its flags into them, the service reads them from its
YAML and API bodies, the element from its properties, the Python API from its keywords, and the cluster
sends them to its workers; each value is checked here, by the rules of :mod:`vidpipe.rules`, so every
front door refuses the same values with the same words (:func:`config_error` names the option as that
front door spells it)."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)  # fmt: skip

from .. import rules
from ..analytics import Line, Zone, parse_line, parse_zone
from ..analytics.lines import check_names
from ..analytics.motion import motion_problem, parse_mask
from ..analytics.privacy import parse_region
from ..errors import ConfigError, VidpipeError
from ..models import DEFAULT_MODEL
from ..options import MotionOptions, StreamOptions

MAX_SHAPES = 64  # counting lines, and zones, of one stream
MAX_ZONE_POINTS = 256
MAX_SHAPE_TEXT = 8192  # characters of one line or zone
ONNX_ONLY = ("layout", "names", "max_det", "imgsz")


def _rule(rule: Callable[[object], object]) -> BeforeValidator:
    """A field checked by ``rule`` (None stays None: the option is not given)."""

    def check(value: object) -> object:
        if value is None:
            return None
        try:
            return rule(value)
        except rules.RuleError as exc:
            raise ValueError(str(exc)) from None

    return BeforeValidator(check)


def _shape(parse: Callable[[str], Line | Zone], kind: str, cls: type) -> Callable[[object], object]:
    """A stream's own line or zone: the text (checked by ``parse``, without a ``STREAM:`` prefix) or an
    object made in Python (checked when it was made)."""

    def rule(value: object) -> object:
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise rules.RuleError(f"must be a {kind} as text, got {rules.shown(value)}")
        if len(value) > MAX_SHAPE_TEXT:
            raise rules.RuleError(f"{kind} text of {len(value)} characters, more than {MAX_SHAPE_TEXT}")
        points = (value.count(",") + 2) // 2  # counted before parsing: a zone's checks grow as points²
        if kind == "zone" and points > MAX_ZONE_POINTS:
            raise rules.RuleError(f"zone {value.split('=', 1)[0]!r}: {points} points, more than {MAX_ZONE_POINTS}")
        try:
            shape = parse(value)
        except VidpipeError as exc:
            raise rules.RuleError(str(exc)) from None
        if shape.stream is not None:
            raise rules.RuleError(f"{value!r}: a stream's own {kind} takes no STREAM: prefix")
        return value

    return rule


def _region(value: object) -> str:
    """A privacy region's text, checked (``x1,y1,x2,y2,x3,y3,...`` or ``rel:...``)."""
    if not isinstance(value, str) or len(value) > MAX_SHAPE_TEXT:
        raise rules.RuleError(f"must be a region x1,y1,x2,y2,x3,y3,... as text, got {rules.shown(value)[:80]}")
    try:
        parse_region(value)
    except VidpipeError as exc:
        raise rules.RuleError(str(exc)) from None
    return value


PositiveNumber = Annotated[float | None, _rule(rules.positive_number)]
FrameRate = Annotated[float | None, _rule(rules.frame_rate)]
Count = Annotated[int | None, _rule(rules.count)]
LineItem = Annotated[Any, _rule(_shape(parse_line, "line", Line)), WithJsonSchema({"type": "string"})]
ZoneItem = Annotated[Any, _rule(_shape(parse_zone, "zone", Zone)), WithJsonSchema({"type": "string"})]


class Strict(BaseModel):
    """A part of the configuration: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class MotionConfig(Strict):
    """Motion gating of a stream (docs/motion.md): frames where nothing moved skip the detector; checked
    by :func:`vidpipe.analytics.motion.check_motion`."""

    mode: Literal["auto", "on", "off"] = Field("auto", description="auto: live streams only")
    threshold: float = Field(MotionOptions().threshold, description="grey levels (1-255) a pixel must change by")
    min_area: float = Field(MotionOptions().min_area, description="fraction of the frame that must change")
    masks: list[Annotated[str, Field(max_length=MAX_SHAPE_TEXT)]] = Field(
        default_factory=list, max_length=MAX_SHAPES, description="x1,y1,x2,y2,x3,y3,... regions to ignore"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_options(cls, value: object) -> object:
        if isinstance(value, MotionOptions):  # (Python's MotionOptions: its fields, checked here)
            return {"mode": value.mode, "threshold": value.threshold, "min_area": value.min_area,
                    "masks": list(value.masks)}  # fmt: skip
        return value

    @field_validator("threshold", "min_area")
    @classmethod
    def _check_value(cls, value: float, info: ValidationInfo) -> float:
        problem = motion_problem(info.field_name, value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("masks")
    @classmethod
    def _check_masks(cls, masks: list[str]) -> list[str]:
        for mask in masks:
            try:
                parse_mask(mask, repr(mask))
            except VidpipeError as exc:
                raise ValueError(str(exc)) from None
        return masks

    def options(self) -> MotionOptions:
        return MotionOptions(self.mode, self.threshold, self.min_area, tuple(self.masks))


class StreamConfig(Strict):
    """One stream's own options (beside the run's): how it is read and what is counted in it."""

    detect_fps: FrameRate = Field(None, description="frames per second of stream time that reach the detector")
    max_latency: PositiveNumber = Field(None, description="seconds: older live frames are dropped")
    max_frames: Count = Field(None, description="stop the stream after this many frames")
    track: bool = Field(False, description="give each object a track id (lines and zones turn it on)")
    lines: list[LineItem] = Field(
        default_factory=list, max_length=MAX_SHAPES, description="NAME=x1,y1,x2,y2 counting lines"
    )
    zones: list[ZoneItem] = Field(
        default_factory=list, max_length=MAX_SHAPES, description="NAME=x1,y1,x2,y2,x3,y3,... zones"
    )
    loop: bool = Field(False, description="play a file at its own speed, again and again (a demo camera)")
    privacy: list[Annotated[str, _rule(_region)]] = Field(
        default_factory=list, max_length=MAX_SHAPES,
        description="x1,y1,x2,y2,x3,y3,... (or rel:...) regions filled in every picture of the stream",
    )  # fmt: skip
    blur: Annotated[list[str], _rule(lambda value: rules.class_names(value) if value else [])] = Field(
        default_factory=list, description="labels whose boxes are blurred in every picture of the stream"
    )
    motion: MotionConfig | None = Field(None, description="motion gating (default: the run's, auto)")
    loitering: dict[str, Annotated[float, _rule(rules.positive_number)]] = Field(
        default_factory=dict, description="ZONE: SECONDS: one loitering event per track and visit that stays longer"
    )

    @model_validator(mode="after")
    def _names(self) -> StreamConfig:
        for kind, shapes in (("line", self.line_shapes()), ("zone", self.zone_shapes(loitering=False))):
            try:
                check_names([shape.name for shape in shapes], kind)
            except VidpipeError as exc:
                raise ValueError(str(exc)) from None
        names = [zone.name for zone in self.zone_shapes(loitering=False)]
        for zone in self.loitering:
            if zone not in names:
                known = ", ".join(names) or "none"
                raise ValueError(f"loitering: {zone!r} is not one of this stream's zones ({known})")
        return self

    def line_shapes(self) -> list[Line]:
        """The stream's lines, parsed."""
        return [line if isinstance(line, Line) else parse_line(line) for line in self.lines]

    def zone_shapes(self, loitering: bool = True) -> list[Zone]:
        """The stream's zones, parsed, each with its loitering time."""
        zones = [zone if isinstance(zone, Zone) else parse_zone(zone) for zone in self.zones]
        if loitering and self.loitering:
            zones = [dataclasses.replace(z, loiter=self.loitering.get(z.name, z.loiter)) for z in zones]
        return zones

    def options(self, base: StreamOptions) -> StreamOptions:
        """``base`` (the run's options) with this stream's own laid over it."""
        given = {"detect_fps": self.detect_fps, "max_latency": self.max_latency, "max_frames": self.max_frames}
        changes = {key: value for key, value in given.items() if value is not None}
        if self.loop:
            changes["loop"] = True
        if self.motion is not None:
            changes["motion"] = self.motion.options()
        return dataclasses.replace(base, **changes)


class ModelConfig(Strict):
    """The detector every stream shares (``vidpipe detect``'s model options)."""

    name: str = Field(DEFAULT_MODEL, min_length=1, description="a model name (vidpipe models), or a file")
    weights: str | None = None
    backend: str = "auto"
    precision: str = "auto"
    device: str = "cpu"
    threshold: Annotated[float | None, _rule(rules.fraction)] = None
    classes: Annotated[list[str] | None, _rule(rules.class_names)] = None
    batch: Count = None
    iou: Annotated[float | None, _rule(rules.overlap)] = None
    max_det: Count = None
    imgsz: Annotated[int | None, _rule(rules.pixels(32, 4096))] = None
    layout: str | None = None
    names: str | None = None

    @field_validator("name", "weights", "names", mode="before")
    @classmethod
    def _paths(cls, value: object) -> object:
        return os.fspath(value) if isinstance(value, os.PathLike) else value  # (a pathlib.Path is a file name)

    @field_validator(*ONNX_ONLY)
    @classmethod
    def _onnx_only(cls, value: object, info: ValidationInfo) -> object:
        if value is not None and not str(info.data.get("name", "")).lower().endswith(".onnx"):
            raise ValueError("is for ONNX models (a model FILE.onnx) only")
        return value

    def load_args(self) -> dict:
        """The keywords of :func:`vidpipe.models.load` (those given)."""
        args = self.model_dump(exclude={"classes", "batch"})
        extra = {key: args.pop(key) for key in ("iou", *ONNX_ONLY)}
        return {**args, **{key: value for key, value in extra.items() if value is not None}}


def config_error(error: ValidationError, spell: Callable[[str], str] = str, what: str = "") -> ConfigError:
    """One :class:`ConfigError`, a line per problem: the option as the front door spells it
    (``spell("detect_fps")`` → ``--detect-fps``; a nested one by its path: ``spell("motion.threshold")``), then
    the rule's words; list items by index (``--zones[0]``)."""
    lines = []
    for item in error.errors():
        loc = item["loc"]
        named = len(list(itertools.takewhile(lambda key: isinstance(key, str), loc)))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown option"
        option = spell(".".join(loc[:named])) + "".join(f"[{key}]" for key in loc[named:]) if loc else what
        lines.append(f"{option} {message}" if option else message)
    return ConfigError(lines)


def stream_config(**given: object) -> StreamConfig:
    """A :class:`StreamConfig` from Python keywords (those not None); :class:`VidpipeError` naming the
    keyword that breaks its rule."""
    try:
        return StreamConfig.model_validate({key: value for key, value in given.items() if value is not None})
    except ValidationError as exc:
        raise config_error(exc) from None


def model_config(**given: object) -> ModelConfig:
    """A :class:`ModelConfig` from Python keywords (those not None), checked as :func:`stream_config`."""
    try:
        return ModelConfig.model_validate({key: value for key, value in given.items() if value is not None})
    except ValidationError as exc:
        raise config_error(exc) from None
