"""MQTT: events, counts and status published to a broker (paho-mqtt 2), never in the pipeline's way.

Topics under the prefix (``vidpipe`` by default): ``available`` (``online``/``offline``, retained, the
last will, QoS 1), ``{stream}/status`` (retained), ``events`` and ``{stream}/events`` (one message per
event), ``{stream}/counts``, ``{stream}/present`` (retained, on change), ``{stream}/snapshot`` (retained)
and ``stats`` (every ``stats_interval`` seconds); with ``discovery``, Home Assistant's config topics (see
discovery.py). Every retained state is published again on each connection (a broker may have lost it).
The sink side only appends to a bounded queue (the oldest message is dropped and counted when it is
full); a thread of its own publishes while the broker is there, and paho reconnects with back-off while
it is not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from ..redact import mask_secrets
from ..sinks.base import BaseSink
from ..types import Event, Result, SourceInfo
from .config import MqttConfig
from .discovery import Discovery

log = logging.getLogger(__name__)

STREAM_EVENTS = {"connected", "reconnected", "disconnected", "failed", "ended", "removed", "stopped"}
ANALYTICS_EVENTS = {"line_crossed", "zone_entered", "zone_left", "loitering"}


PRESENCE_HOLD = 2.0  # seconds without a detection of a label before it counts as gone (no flicker)


@dataclass(slots=True)
class _Message:
    topic: str
    payload: str | bytes
    retain: bool = False
    qos: int | None = None


class MqttPublisher(BaseSink):
    """Publishes a service's events to MQTT. ``stats()`` gives the figures for the ``stats`` topic,
    ``counts(stream)`` a stream's current counts (published when an analytics event changes them)."""

    def __init__(
        self, config: MqttConfig, stats: Callable[[], dict], counts: Callable[[str], dict] | None = None
    ) -> None:
        self.config = config
        self.prefix = config.prefix.rstrip("/")
        self._stats = stats
        self._counts_of = counts or (lambda _stream: {})
        self._queue: deque[_Message] = deque()
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._last: dict[str, Result] = {}  # each stream's latest result (events name its detections)
        self._seen: dict[str, dict[str, float]] = {}  # stream -> label -> when last detected (monotonic)
        self._present: dict[str, list[str]] = {}  # stream -> the labels last published as present
        self._counts: dict[str, str] = {}  # each stream's last published counts
        self._status: dict[str, str] = {}  # retained status per stream (published again on reconnect)
        self._snapshots: dict[str, bytes] = {}  # each stream's last event snapshot (likewise)
        self.discovery = Discovery(config) if config.discovery else None
        self.dropped = 0  # messages dropped while the queue was full
        self.published = 0
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=config.client_id or "",
            protocol=mqtt.MQTTv311,
        )
        if config.username:
            self.client.username_pw_set(config.username, config.password)
        self.client.will_set(self.topic("available"), "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self._thread = threading.Thread(target=self._publish_loop, name="vidpipe-mqtt", daemon=True)

    def topic(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background (a broker that is down is retried with back-off)."""
        self.client.connect_async(self.config.host, self.config.port, keepalive=30)
        self.client.loop_start()
        self._thread.start()

    def close(self) -> None:
        """Say ``offline``, flush what is queued (briefly), disconnect."""
        if self._stop.is_set():
            return
        deadline = time.monotonic() + 2.0
        while self._queue and self.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self.connected:
            info = self.client.publish(self.topic("available"), "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2.0)
        self.client.disconnect()
        self.client.loop_stop()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    # -- the sink side ------------------------------------------------------------------------------

    def open_stream(self, info: SourceInfo) -> None:
        self._set_status(info.stream, "running")

    def write(self, result: Result) -> None:
        self._last[result.frame.stream] = result
        self._presence(result)

    def _presence(self, result: Result) -> None:
        """``{stream}/present`` (retained, on change): the labels seen in the last ``PRESENCE_HOLD``
        seconds (``{"stream": "door", "present": ["person"]}``)."""
        stream, now = result.frame.stream, time.monotonic()
        seen = self._seen.setdefault(stream, {})
        for label in result.detections.labels:
            seen[label] = now
        for label in [label for label, when in seen.items() if now - when > PRESENCE_HOLD]:
            del seen[label]
        present = sorted(seen)
        if self._present.get(stream) != present:
            self._present[stream] = present
            self.put(_Message(self.topic(stream, "present"), _present_payload(stream, present), retain=True))

    def snapshot(self, stream: str, picture: bytes) -> None:
        """The last event's snapshot (JPEG bytes) on ``{stream}/snapshot`` (retained): Home Assistant's
        camera entity of the stream shows it."""
        self._snapshots[stream] = picture
        self.put(_Message(self.topic(stream, "snapshot"), picture, retain=True))

    def event(self, event: Event) -> None:
        record = event.to_dict()
        if event.kind in ANALYTICS_EVENTS:
            self._describe_object(event, record)
        if event.kind in STREAM_EVENTS or event.kind in ANALYTICS_EVENTS:
            payload = _json(record)
            self.put(_Message(self.topic("events"), payload))
            self.put(_Message(self.topic(event.stream, "events"), payload))
        if event.kind in STREAM_EVENTS:
            state = {"reconnected": "running", "connected": "running", "disconnected": "reconnecting"}
            self._set_status(event.stream, state.get(event.kind, event.kind))
        if event.kind in ANALYTICS_EVENTS:
            self.counts_changed(event.stream, self._counts_of(event.stream))

    def close_stream(self, stream: str) -> None:
        self._last.pop(stream, None)

    def added(self, stream: str, lines: list[str], zones: list[str]) -> None:
        """A stream joined the service: its discovery configs, and its counts from the start (zeros)."""
        if self.discovery is not None:
            for topic, payload in self.discovery.added(stream, lines, zones):
                self.put(_Message(topic, payload, retain=True, qos=1))
        self.counts_changed(stream, self._counts_of(stream))

    def removed(self, stream: str) -> None:
        """A stream left the service: its retained topics are cleared (its discovery configs too)."""
        self._status.pop(stream, None)
        self._counts.pop(stream, None)
        self._seen.pop(stream, None)
        self._present.pop(stream, None)
        self._snapshots.pop(stream, None)
        for topic in ("status", "counts", "present", "snapshot"):
            self.put(_Message(self.topic(stream, topic), "", retain=True))
        if self.discovery is not None:
            for topic, payload in self.discovery.removed(stream):
                self.put(_Message(topic, payload, retain=True, qos=1))

    def counts_changed(self, stream: str, counts: dict | None) -> None:
        if not counts:
            return
        payload = _json({"stream": stream, **counts})
        if self._counts.get(stream) != payload:
            self._counts[stream] = payload
            self.put(_Message(self.topic(stream, "counts"), payload, retain=True))

    def _describe_object(self, event: Event, record: dict) -> None:
        """An analytics event names its object by track id: add its score and box from that frame."""
        result = self._last.get(event.stream)
        track = event.fields.get("track_id")
        if result is None or track is None or result.detections.track_ids is None:
            return
        for i, tid in enumerate(result.detections.track_ids.tolist()):
            if tid == track:
                record["score"] = round(float(result.detections.scores[i]), 4)
                record["box"] = [round(v, 2) for v in result.detections.boxes[i].tolist()]
                return

    def _set_status(self, stream: str, state: str) -> None:
        if self._status.get(stream) != state:
            self._status[stream] = state
            self.put(_Message(self.topic(stream, "status"), _status_payload(stream, state), retain=True))

    def put(self, message: _Message) -> None:
        """Queue a message; the oldest goes (counted) when the queue is full. Never blocks."""
        with self._cond:
            if len(self._queue) >= self.config.queue:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(message)
            self._cond.notify()

    # -- the publishing thread ----------------------------------------------------------------------

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT %s:%s refused the connection: %s", self.config.host, self.config.port, reason_code)
            return
        log.info("MQTT connected to %s:%s", self.config.host, self.config.port)
        client.publish(self.topic("available"), "online", qos=1, retain=True)
        for topic, payload in self._retained():
            client.publish(topic, payload, qos=1, retain=True)
        for topic, payload in self.discovery.current() if self.discovery is not None else ():
            client.publish(topic, payload, qos=1, retain=True)
        if self.discovery is not None:  # Home Assistant's birth message: announce everything again
            client.subscribe(f"{self.discovery.root}/status", qos=1)
        self._connected.set()
        with self._cond:
            self._cond.notify_all()

    def _retained(self) -> list[tuple[str, str | bytes]]:
        """Every stream's retained state (status, counts, who is present, the last snapshot), published
        again on each connection: a broker restarted without persistence has lost it, and Home Assistant's
        sensors would show nothing until the next change."""
        retained: list[tuple[str, str | bytes]] = []
        for stream, state in list(self._status.items()):
            retained.append((self.topic(stream, "status"), _status_payload(stream, state)))
        for stream, payload in list(self._counts.items()):
            retained.append((self.topic(stream, "counts"), payload))
        for stream, present in list(self._present.items()):
            retained.append((self.topic(stream, "present"), _present_payload(stream, present)))
        for stream, picture in list(self._snapshots.items()):
            retained.append((self.topic(stream, "snapshot"), picture))
        return retained

    def _on_message(self, _client, _userdata, message) -> None:
        if self.discovery is not None and message.payload == b"online" and not message.retain:
            for topic, payload in self.discovery.current():
                self.put(_Message(topic, payload, retain=True, qos=1))

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        if self._connected.is_set():
            log.warning("MQTT broker %s:%s lost (%s); reconnecting", self.config.host, self.config.port, reason_code)
        self._connected.clear()

    def _publish_loop(self) -> None:
        next_stats = time.monotonic() + self.config.stats_interval
        while not self._stop.is_set():
            if time.monotonic() >= next_stats:
                next_stats = time.monotonic() + self.config.stats_interval
                self.put(_Message(self.topic("stats"), _json(self._stats())))
            with self._cond:
                if not self._queue or not self._connected.is_set():
                    self._cond.wait(timeout=0.5)
                    continue
                message = self._queue.popleft()
            qos = self.config.qos if message.qos is None else message.qos
            info = self.client.publish(message.topic, message.payload, qos=qos, retain=message.retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:  # the connection went meanwhile: keep it for later
                with self._cond:
                    self._queue.appendleft(message)
                self._connected.wait(timeout=0.5)
            else:
                self.published += 1


def _status_payload(stream: str, state: str) -> str:
    return _json({"stream": stream, "state": state, "wall": round(time.time(), 3)})


def _present_payload(stream: str, present: list[str]) -> str:
    return _json({"stream": stream, "present": present})


def _json(data: dict) -> str:
    return mask_secrets(json.dumps(data, separators=(",", ":"), default=str))
