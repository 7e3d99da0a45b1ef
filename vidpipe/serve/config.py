"""The service's configuration: one pydantic model for the YAML file and for the API's request bodies,
``${ENV}`` substitution for secrets, one line per problem, and the state file of API changes."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..analytics import parse_line, parse_zone
from ..analytics.motion import check_motion
from ..errors import VidpipeError
from ..gst.uri import parse_source
from ..models import DEFAULT_MODEL
from ..options import MotionOptions
from ..pipeline.specs import check_stream_name
from .confighelp import hint
from .webhooks import WebhookConfig

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(VidpipeError):
    """A configuration that cannot be used: ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _stream_name(name: str) -> str:
    try:
        return check_stream_name(name)
    except VidpipeError as exc:
        raise ValueError(str(exc)) from None


StreamName = Annotated[str, AfterValidator(_stream_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Record(_Strict):
    """What a stream records, under the service's ``output_dir``/STREAM/ (one file set per start)."""

    json_lines: bool = Field(False, alias="json", description="detections and events as JSON Lines")
    csv: bool = Field(False, description="one row per detection")
    video: bool = Field(False, description="the annotated video (fragmented MP4)")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


MAX_URI = 4096  # characters of a stream's uri
MAX_SHAPES = 64  # counting lines, and zones, of one stream
MAX_ZONE_POINTS = 256
MAX_SHAPE_TEXT = 8192  # characters of one line or zone
Shape = Annotated[str, Field(max_length=MAX_SHAPE_TEXT)]


class Motion(_Strict):
    """Motion gating of a stream (docs/motion.md): frames where nothing moved skip the detector."""

    mode: Literal["auto", "on", "off"] = Field("auto", description="auto: live streams only")
    threshold: float = Field(MotionOptions().threshold, description="grey levels (1-255) a pixel must change by")
    min_area: float = Field(MotionOptions().min_area, description="fraction of the frame that must change")
    masks: list[Shape] = Field(
        default_factory=list, max_length=MAX_SHAPES, description="x1,y1,x2,y2,x3,y3,... regions to ignore"
    )

    @model_validator(mode="after")
    def _check(self) -> Motion:
        try:
            check_motion(self.options())
        except VidpipeError as exc:
            raise ValueError(str(exc)) from None
        return self

    def options(self) -> MotionOptions:
        return MotionOptions(self.mode, self.threshold, self.min_area, tuple(self.masks))


class StreamConfig(_Strict):
    """One stream: its source and how it is analysed and recorded (within the limits above: a body
    that asks for more is refused before anything is built)."""

    uri: str = Field(
        min_length=1, max_length=MAX_URI, description="a file, rtsp://, http(s)://, /dev/videoN or testsrc:// source"
    )
    detect_fps: Annotated[float, Field(gt=0)] | None = None
    max_latency: Annotated[float, Field(gt=0)] | None = None
    track: bool = False
    lines: list[Shape] = Field(
        default_factory=list, max_length=MAX_SHAPES, description="NAME=x1,y1,x2,y2 counting lines"
    )
    zones: list[Shape] = Field(
        default_factory=list, max_length=MAX_SHAPES, description="NAME=x1,y1,x2,y2,x3,y3,... zones"
    )
    loop: bool = Field(False, description="play a file at its own speed, again and again (a demo camera)")
    record: Record = Field(default_factory=Record)
    motion: Motion = Field(default_factory=Motion)
    loitering: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="ZONE: SECONDS: one loitering event per track and visit that stays longer"
    )

    @model_validator(mode="after")
    def _loitering_zones(self) -> StreamConfig:
        names = [text.split("=", 1)[0].strip() for text in self.zones]
        for zone in self.loitering:
            if zone not in names:
                known = ", ".join(names) or "none"
                raise ValueError(f"loitering: {zone!r} is not one of this stream's zones ({known})")
        return self

    def zone_shapes(self) -> list:
        """The stream's zones for the pipeline, each with its loitering time."""
        zones = []
        for text in self.zones:
            zone = parse_zone(text)
            zones.append(dataclasses.replace(zone, loiter=self.loitering.get(zone.name)))
        return zones

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        if value.startswith("testsrc://"):  # its parameters are checked now (a frame size among them)
            try:
                parse_source(value)
            except VidpipeError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("lines")
    @classmethod
    def _lines(cls, value: list[str]) -> list[str]:
        return _own_shapes(value, parse_line, "line")

    @field_validator("zones")
    @classmethod
    def _zones(cls, value: list[str]) -> list[str]:
        return _own_shapes(value, parse_zone, "zone")


def _own_shapes(texts: list[str], parse, kind: str) -> list[str]:
    for text in texts:
        points = (text.count(",") + 2) // 2  # counted before parsing: a zone's checks grow as points²
        if kind == "zone" and points > MAX_ZONE_POINTS:
            raise ValueError(f"zone {text.split('=', 1)[0]!r}: {points} points, more than {MAX_ZONE_POINTS}")
        try:
            shape = parse(text)
        except VidpipeError as exc:
            raise ValueError(str(exc)) from None
        if shape.stream is not None:
            raise ValueError(f"{text!r}: a stream's own {kind} takes no STREAM: prefix")
    return texts


class ModelConfig(_Strict):
    """The detector every stream shares (as ``vidpipe detect``'s options)."""

    name: str = DEFAULT_MODEL
    weights: str | None = None
    backend: str = "auto"
    precision: str = "auto"
    device: str = "cpu"
    threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    classes: list[str] | None = None
    batch: Annotated[int, Field(ge=1)] | None = None


class MqttConfig(_Strict):
    """The MQTT broker results and events are published to."""

    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    prefix: str = Field("vidpipe", pattern=r"^[A-Za-z0-9_\-/]+$")
    qos: Annotated[int, Field(ge=0, le=2)] = 0
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    queue: Annotated[int, Field(ge=1)] = 10_000
    stats_interval: Annotated[float, Field(gt=0)] = 60.0
    discovery: bool = Field(True, description="Home Assistant MQTT discovery: a device per stream")
    discovery_prefix: str = Field("homeassistant", pattern=r"^[A-Za-z0-9_\-/]+$")


class AuthConfig(_Strict):
    token: str | None = Field(None, min_length=8)


class WebConfig(_Strict):
    hosts: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+$")]] = Field(
        default_factory=list, description="names the service is reached by, besides IP addresses and localhost"
    )
    fps: Annotated[float, Field(gt=0, le=30)] = 5.0
    height: Annotated[int, Field(ge=64, le=2160)] = 360
    quality: Annotated[int, Field(ge=10, le=95)] = 80


class ClusterConfig(_Strict):
    """Spread the streams over Ray workers (the ``ray`` extra): ``address`` is ``ray`` (a local Ray,
    started and stopped with the service), ``auto`` or ``ray://HOST:PORT`` (a running cluster)."""

    address: str = Field("ray", pattern=r"^(ray|auto|ray://\S+|[^\s:/]+:\d+)$")
    workers: Annotated[int, Field(ge=1)] | None = Field(None, description="default: one per cpus_per_worker CPUs")
    cpus_per_worker: Annotated[int, Field(ge=1)] = 1


class EventsConfig(_Strict):
    """The event store (``output_dir/events.db``) and each analytics event's snapshot."""

    store: bool = Field(True, description="keep every event in output_dir/events.db (SQLite)")
    snapshots: bool = Field(True, description="a JPEG per line crossed, zone entered or left")
    queue: Annotated[int, Field(ge=1)] = 1000


class ServeConfig(_Strict):
    """The whole configuration file."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    streams: dict[StreamName, StreamConfig] = Field(default_factory=dict)
    mqtt: MqttConfig | None = None
    auth: AuthConfig = Field(default_factory=AuthConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    output_dir: str = "recordings"
    events: EventsConfig = Field(default_factory=EventsConfig)
    cluster: ClusterConfig | None = None
    webhooks: list[WebhookConfig] = Field(default_factory=list, max_length=32)


def problems_of(error: ValidationError, where: str = "", model: type[BaseModel] | None = None) -> list[str]:
    """One line per problem: ``where: key.path: what is wrong`` (with a hint where one helps: "did you
    mean" for an unknown key of ``model``, the mapping a place expects)."""
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        extra = hint(model, tuple(item["loc"]), item["type"]) if model is not None else ""
        if extra:
            message = f"{message}; {extra}"
        lines.append(f"{where}: {key}: {message}" if where else f"{key}: {message}")
    return lines


def _substitute(value: Any, path: str, missing: list[str]) -> Any:
    """``${NAME}`` / ``${NAME:-default}`` in every string of the loaded YAML, from the environment."""
    if isinstance(value, dict):
        return {key: _substitute(item, f"{path}.{key}" if path else str(key), missing) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, f"{path}.{i}", missing) for i, item in enumerate(value)]
    if isinstance(value, str):

        def lookup(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            missing.append(f"{path}: environment variable {name} is not set")
            return ""

        return _ENV.sub(lookup, value)
    return value


def load_config(path: str | Path | None) -> ServeConfig:
    """The configuration in ``path`` (None: the defaults, no stream). Raises :class:`ConfigError` with
    one line per problem, each naming the file and the key."""
    if path is None:
        return ServeConfig()
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read ({exc.strerror})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{file}: not valid YAML{where}: {problem}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{file}: expected a mapping of settings (model, streams, mqtt, auth, web, cluster)"])
    missing: list[str] = []
    data = _substitute(data, "", missing)
    if missing:
        raise ConfigError([f"{file}: {line}" for line in missing])
    try:
        return ServeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_of(exc, str(file), ServeConfig)) from None
    except VidpipeError as exc:
        raise ConfigError([f"{file}: {exc}"]) from None


class StateFileError(VidpipeError):
    """The state file cannot be written: the change asked for was not made."""


class StateFile:
    """The streams added, replaced or removed over the API, kept beside the configuration (written
    atomically) and laid over it at the next start: ``{"streams": {name: config or null}}`` (null: a
    stream of the configuration removed over the API). The configuration file is never rewritten."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None

    def load(self) -> dict[str, StreamConfig | None]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
            return {
                check_stream_name(name): None if value is None else StreamConfig.model_validate(value)
                for name, value in data.get("streams", {}).items()
            }
        except (OSError, ValueError, AttributeError, VidpipeError) as exc:
            raise ConfigError([f"{self.path}: unusable state file ({exc}); move it away to start afresh"]) from None

    def save(self, changes: dict[str, StreamConfig | None]) -> None:
        """Write ``changes`` (atomically); :class:`StateFileError` naming the file when it cannot be."""
        if self.path is None:
            return
        data = {
            "streams": {
                name: None if value is None else value.model_dump(by_alias=True, exclude_defaults=True)
                for name, value in changes.items()
            }
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        except OSError as exc:
            raise StateFileError(f"{self.path}: cannot save the state file ({exc.strerror})") from None
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, indent=2)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.path)
        except BaseException as exc:
            Path(temp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StateFileError(f"{self.path}: cannot save the state file ({exc.strerror})") from None
            raise


def state_path_for(config: str | Path | None) -> Path | None:
    """The state file beside a configuration file: ``vidpipe.yaml`` → ``vidpipe.state.json``."""
    if config is None:
        return None
    config = Path(config)
    return config.with_name(config.stem + ".state.json")
