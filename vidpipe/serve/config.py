"""The service's configuration: one pydantic model for the YAML file and for the API's request bodies,
``${ENV}`` substitution for secrets, one line per problem, and the state file of API changes."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError, VidpipeError
from ..gst.uri import parse_source
from ..pipeline.config import ModelConfig, Strict
from ..pipeline.config import StreamConfig as CoreStreamConfig
from ..pipeline.specs import check_stream_name
from ..redact import remember_source
from .confighelp import hint
from .events import DB_NAME, SNAPSHOTS
from .webhooks import WebhookConfig

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
MAX_DEPTH = 64  # levels of nesting in a configuration (its own need a handful)
MAX_VALUES = 1_000_000  # values once its aliases are expanded (a "billion laughs" file has far more)


OWN_ENTRIES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal", SNAPSHOTS)  # in output_dir


def check_serve_name(name: str) -> str:
    """A stream name of the service: a safe token (:func:`check_stream_name`) that is none of the
    service's own entries in ``output_dir`` (its recordings would go to ``output_dir/NAME/``)."""
    check_stream_name(name)
    if name.lower() in OWN_ENTRIES:
        raise VidpipeError(f"invalid stream name {name!r}: output_dir/{name} is the event store's; choose another")
    return name


def _stream_name(name: str) -> str:
    try:
        return check_serve_name(name)
    except VidpipeError as exc:
        raise ValueError(str(exc)) from None


StreamName = Annotated[str, AfterValidator(_stream_name)]


class Record(Strict):
    """What a stream records, under the service's ``output_dir``/STREAM/ (one file set per start)."""

    json_lines: bool = Field(False, alias="json", description="detections and events as JSON Lines")
    csv: bool = Field(False, description="one row per detection")
    video: bool = Field(False, description="a video of the stream (fragmented MP4)")
    annotated: bool = Field(
        True,
        description="video: the annotated video, re-encoded (true), or the camera's own stream without "
        "re-encoding, in hourly files camera-YYYYmmdd-HHMMSS.mp4 (false)",
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ClipsConfig(Strict):
    """A clip of the camera's own video per line crossed, zone entered or left, loitering (no re-encoding)."""

    pre_roll: Annotated[float, Field(ge=0, le=600)] = Field(5.0, description="seconds before the event")
    post_roll: Annotated[float, Field(ge=0, le=600)] = Field(5.0, description="seconds after the event")


class StreamEventsConfig(Strict):
    """A stream's own evidence settings, over the service's ``events:``."""

    snapshots: bool | None = Field(None, description="default: events.snapshots")
    clips: ClipsConfig | bool | None = Field(
        None, description="false: none for this stream; {pre_roll, post_roll} (or true: events.clips, else 5 s)"
    )


MIN_VIEW_FPS, MAX_VIEW_FPS = 0.1, 30  # a live view's frames a second (web.fps and ?fps=): one in 10 s at least
MAX_URI = 4096  # characters of a stream's uri


class StreamConfig(CoreStreamConfig):
    """One stream of the service: its source, the options every front door shares (checked by
    :class:`vidpipe.pipeline.config.StreamConfig`) and what it records."""

    uri: str = Field(
        min_length=1, max_length=MAX_URI, description="a file, rtsp://, http(s)://, /dev/videoN or testsrc:// source"
    )
    record: Record = Field(default_factory=Record)
    events: StreamEventsConfig | None = Field(None, description="this stream's snapshots and clips (over events:)")

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        remember_source(value)  # (its password masked in every message, whatever characters it holds)
        if value.startswith("testsrc://"):  # its parameters are checked now (a frame size among them)
            try:
                parse_source(value)
            except VidpipeError as exc:
                raise ValueError(str(exc)) from None
        return value


class MqttConfig(Strict):
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


class AuthConfig(Strict):
    token: str | None = Field(None, min_length=8)


class WebConfig(Strict):
    hosts: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+$")]] = Field(
        default_factory=list, description="names the service is reached by, besides IP addresses and localhost"
    )
    fps: Annotated[float, Field(ge=MIN_VIEW_FPS, le=MAX_VIEW_FPS)] = 5.0
    height: Annotated[int, Field(ge=64, le=2160)] = 360
    quality: Annotated[int, Field(ge=10, le=95)] = 80
    max_viewers: Annotated[int, Field(ge=1, le=10000)] = Field(
        100, description="live views (MJPEG streams, the mosaic) open at once; one more is answered 503"
    )


class ClusterConfig(Strict):
    """Spread the streams over Ray workers (the ``ray`` extra): ``address`` is ``ray`` (a local Ray,
    started and stopped with the service), ``auto`` or ``ray://HOST:PORT`` (a running cluster)."""

    address: str = Field("ray", pattern=r"^(ray|auto|ray://\S+|[^\s:/]+:\d+)$")
    workers: Annotated[int, Field(ge=1)] | None = Field(None, description="default: one per cpus_per_worker CPUs")
    cpus_per_worker: Annotated[int, Field(ge=1)] = 1


class RetentionConfig(Strict):
    """Evidence and recordings under output_dir deleted oldest first (the events' rows stay, marked)."""

    days: Annotated[float, Field(gt=0)] | None = Field(None, description="delete files older than this")
    max_gb: Annotated[float, Field(gt=0)] | None = Field(None, description="keep the files under this size in all")


class EventsConfig(Strict):
    """The event store (``output_dir/events.db``) and each analytics event's snapshot and clip."""

    store: bool = Field(True, description="keep every event in output_dir/events.db (SQLite)")
    snapshots: bool = Field(True, description="a JPEG per line crossed, zone entered or left, loitering")
    queue: Annotated[int, Field(ge=1)] = 1000
    clips: ClipsConfig | None = Field(None, description="a clip per line and zone event: {pre_roll: 5, post_roll: 5}")
    retention: RetentionConfig | None = Field(None, description="{days: 30, max_gb: 50}")


class ServeConfig(Strict):
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


class _Loader(yaml.SafeLoader):
    """YAML's safe loader refusing a key given twice in one mapping (the later would silently win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # (``<<: *defaults``: its keys may be overridden)
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                continue  # (refused as unhashable below, with its line)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (give each key once)", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


class _Substitution:
    """``${NAME}`` / ``${NAME:-default}`` in every string of the loaded YAML, from the environment
    (:meth:`copy`); ``missing`` lists the variables that are not set, a line each."""

    def __init__(self) -> None:
        self.missing: list[str] = []
        self.left = MAX_VALUES  # values still allowed, aliases expanded

    def copy(self, value: Any, path: str = "", depth: int = 0) -> Any:
        """``value`` substituted, a copy: :class:`ConfigError` when it nests deeper than ``MAX_DEPTH`` (an
        alias of itself too) or its aliases expand to more than ``MAX_VALUES`` values."""
        self.left -= 1
        if self.left < 0:
            raise ConfigError([f"{path or '(top level)'}: over {MAX_VALUES} values once its aliases are expanded"])
        if isinstance(value, dict | list) and depth >= MAX_DEPTH:
            where = ".".join(path.split(".")[:4]) + "..."
            raise ConfigError([f"{where}: nested more than {MAX_DEPTH} levels deep (or an alias within itself)"])
        if isinstance(value, dict):
            return {key: self.copy(item, f"{path}.{key}" if path else str(key), depth + 1)
                    for key, item in value.items()}  # fmt: skip
        if isinstance(value, list):
            return [self.copy(item, f"{path}.{i}", depth + 1) for i, item in enumerate(value)]
        if isinstance(value, str):
            return _ENV.sub(lambda match: self._lookup(match, path), value)
        return value

    def _lookup(self, match: re.Match, path: str) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        self.missing.append(f"{path}: environment variable {name} is not set")
        return ""


def load_config(path: str | Path | None) -> ServeConfig:
    """The configuration in ``path`` (None: the defaults, no stream). Raises :class:`ConfigError` with
    one line per problem, each naming the file and the key."""
    if path is None:
        return ServeConfig()
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read ({exc.strerror})"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{file}: not UTF-8 text (byte {exc.start}); save it as UTF-8"]) from None
    try:
        data = yaml.load(text, Loader=_Loader)  # (a safe loader)
    except RecursionError:
        raise ConfigError([f"{file}: not valid YAML: nested too deeply"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{file}: not valid YAML{where}: {problem}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{file}: expected a mapping of settings (model, streams, mqtt, auth, web, cluster)"])
    substitution = _Substitution()
    try:
        data = substitution.copy(data)
    except ConfigError as exc:
        raise ConfigError([f"{file}: {line}" for line in exc.problems]) from None
    if substitution.missing:
        raise ConfigError([f"{file}: {line}" for line in substitution.missing])
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
                check_serve_name(name): None if value is None else StreamConfig.model_validate(value)
                for name, value in data.get("streams", {}).items()
            }
        except (OSError, ValueError, AttributeError, RecursionError, VidpipeError) as exc:  # (too deep: recursion)
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
