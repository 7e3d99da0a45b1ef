"""Home Assistant MQTT discovery: one device per stream, its entities announced on retained config topics
under ``homeassistant/`` (``mqtt.discovery_prefix``), their states read from the stream's retained
``{prefix}/{stream}/counts``:

* a sensor per counting line and direction (``door in``, ``door out``: counts since the stream started),
* a sensor per zone (``desk occupancy``: tracked objects inside now),
* a binary sensor per zone (``desk occupied``: someone is in it; device class ``occupancy``),
* a binary sensor ``person present`` (a person detected in the last 2 s, from ``{prefix}/{stream}/present``),
* a camera ``last event`` showing the last event's snapshot (``{prefix}/{stream}/snapshot``, a JPEG), when
  the service keeps snapshots (``camera``).

Each entity is available while the service is (``{prefix}/available``) and the stream runs
(``{prefix}/{stream}/status``). A removed stream's configs are cleared (empty retained payloads), and so
are those a replaced stream no longer has.
"""

from __future__ import annotations

import hashlib
import json
import re

from .. import __version__
from .config import MqttConfig

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _slug(name: str) -> str:
    """``name`` for a topic and a unique id (a short hash keeps two names that differ only in unsafe
    characters apart)."""
    slug = _UNSAFE.sub("_", name)
    return slug if slug == name else f"{slug}_{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def _literal(name: str) -> str:
    """A name as a string of Home Assistant's templates (Jinja): JSON's quoting, its characters kept (a
    ``\\uXXXX`` pair of JSON's for an emoji becomes two halves in Jinja, which matches no key)."""
    return json.dumps(name, ensure_ascii=False)


def _names(shapes: list[str]) -> list[str]:
    """The names of ``NAME=...`` lines or zones."""
    return [text.split("=", 1)[0].strip() for text in shapes]


class Discovery:
    """The discovery messages of a service's streams (``(topic, payload)`` pairs; payload ``""``
    clears a config)."""

    def __init__(self, config: MqttConfig) -> None:
        self.prefix = config.prefix.rstrip("/")
        self.root = config.discovery_prefix.rstrip("/")
        self.node = _slug(config.client_id or self.prefix.replace("/", "_"))
        self.published: dict[str, dict[str, str]] = {}  # stream -> config topic -> payload
        self.camera = False  # the service publishes each event's snapshot: announce a camera per stream

    def added(self, stream: str, lines: list[str], zones: list[str]) -> list[tuple[str, str]]:
        """The configs of a stream with these lines and zones (``NAME=...`` texts), and empty payloads
        for the configs it had before and has no more."""
        configs = self._configs(stream, _names(lines), _names(zones))
        gone = [(topic, "") for topic in self.published.get(stream, {}) if topic not in configs]
        self.published[stream] = configs
        return gone + list(configs.items())

    def removed(self, stream: str) -> list[tuple[str, str]]:
        return [(topic, "") for topic in self.published.pop(stream, {})]

    def current(self) -> list[tuple[str, str]]:
        """Every config now (published again when the broker connects: it may have lost them)."""
        return [item for configs in list(self.published.values()) for item in configs.items()]

    def _configs(self, stream: str, lines: list[str], zones: list[str]) -> dict[str, str]:
        base = f"vidpipe_{self.node}_{_slug(stream)}"
        common = {
            "state_topic": f"{self.prefix}/{stream}/counts",
            "availability": [
                {"topic": f"{self.prefix}/available"},
                {
                    "topic": f"{self.prefix}/{stream}/status",
                    "value_template": "{{ 'online' if value_json.state == 'running' else 'offline' }}",
                },
            ],
            "availability_mode": "all",
            "device": {
                "identifiers": [base],
                "name": f"vidpipe {stream}",
                "manufacturer": "vidpipe",
                "model": "vidpipe serve stream",
                "sw_version": __version__,
            },
            "origin": {"name": "vidpipe", "sw_version": __version__},
        }
        configs: dict[str, str] = {}

        def add(component: str, key: str, entity: dict) -> None:
            unique = f"{base}_{key}"
            payload = {**common, **entity, "unique_id": unique, "has_entity_name": True}
            payload = {k: v for k, v in payload.items() if v is not None}
            configs[f"{self.root}/{component}/{unique}/config"] = json.dumps(payload, separators=(",", ":"))

        add("binary_sensor", "person_present", {
            "name": "person present",
            "state_topic": f"{self.prefix}/{stream}/present",
            "value_template": "{{ 'ON' if 'person' in value_json.present else 'OFF' }}",
            "device_class": "presence",
        })  # fmt: skip
        if self.camera:
            add("camera", "last_event", {"name": "last event", "state_topic": None,
                                         "topic": f"{self.prefix}/{stream}/snapshot"})  # fmt: skip

        for line in lines:
            for direction in ("in", "out"):
                add("sensor", f"line_{_slug(line)}_{direction}", {
                    "name": f"{line} {direction}",
                    "value_template": f"{{{{ value_json.lines[{_literal(line)}][{_literal(direction)}] }}}}",
                    "state_class": "total_increasing",
                    "icon": "mdi:counter",
                })  # fmt: skip
        for zone in zones:
            inside = f"value_json.zones[{_literal(zone)}].occupancy"
            add("sensor", f"zone_{_slug(zone)}_occupancy", {
                "name": f"{zone} occupancy",
                "value_template": f"{{{{ {inside} }}}}",
                "state_class": "measurement",
                "icon": "mdi:account-group",
            })  # fmt: skip
            add("binary_sensor", f"zone_{_slug(zone)}_occupied", {
                "name": f"{zone} occupied",
                "value_template": f"{{{{ 'ON' if {inside} > 0 else 'OFF' }}}}",
                "device_class": "occupancy",
            })  # fmt: skip
        return configs
