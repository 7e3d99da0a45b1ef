"""Prometheus metrics of the service (its own registry): per-stream figures read from the pipeline at
scrape time (a removed stream's label sets go with it), histograms observed as results and batches go by,
line crossings and zone occupancy from the analytics events."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..pipeline.stats import DROP_REASONS
from ..sinks.base import BaseSink
from ..types import Event, Result

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
DWELL_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics(BaseSink):
    """The service's metrics; a sink, so it sees every result and event in order. ``snapshot()`` gives
    the pipeline's figures (``Stats.snapshot()``), ``mqtt_connected()`` the broker link (None: no MQTT)."""

    def __init__(self, snapshot: Callable[[], dict], mqtt_connected: Callable[[], bool | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self.latency = Histogram(
            "vidpipe_stream_latency_seconds", "Source to result latency per frame", ["stream"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.inference = Histogram(
            "vidpipe_inference_seconds", "Time to detect one batch", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.batch_size = Histogram(
            "vidpipe_batch_size", "Frames per batch", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.crossings = Counter(
            "vidpipe_line_crossings", "Objects that crossed a counting line", ["stream", "line", "direction", "label"],
            registry=self.registry,
        )  # fmt: skip
        self.dwell = Histogram(
            "vidpipe_zone_dwell_seconds", "Seconds an object stayed in a zone (at zone_left)", ["stream", "zone"],
            buckets=DWELL_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.loitering = Counter(
            "vidpipe_zone_loitering", "Objects that stayed in a zone past its loitering time", ["stream", "zone"],
            registry=self.registry,
        )  # fmt: skip
        self._crossing_labels: dict[str, set[tuple]] = defaultdict(set)
        self._inside: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)  # (stream, zone) -> track -> label
        self._seen: dict[tuple[str, str], set[str]] = defaultdict(set)  # labels a zone's series exist for (0 or more)
        self._zone_series: set[tuple[str, str]] = set()  # (stream, zone) of the dwell and loitering series
        self.registry.register(_StreamCollector(snapshot, mqtt_connected, self._zone_objects))

    def watch(self, stage: str, seconds: float, frames: int) -> None:
        """A stage sample of the pipeline (see ``Stats.watchers``): batches' inference time and size."""
        if stage == "inference":
            self.inference.observe(seconds)
            self.batch_size.observe(frames)

    def write(self, result: Result) -> None:
        self.latency.labels(result.frame.stream).observe(max(0.0, time.time() - result.frame.wall))

    def event(self, event: Event) -> None:
        fields = event.fields
        if event.kind == "line_crossed":
            labels = (event.stream, fields["line"], fields["direction"], fields["label"])
            with self._lock:
                self._crossing_labels[event.stream].add(labels)
            self.crossings.labels(*labels).inc()
        elif event.kind in ("zone_entered", "zone_left", "loitering"):
            key = (event.stream, fields["zone"])
            with self._lock:
                inside = self._inside[key]
                self._seen[key].add(fields["label"])
                if event.kind == "zone_entered":
                    inside[fields["track_id"]] = fields["label"]
                elif event.kind == "zone_left":
                    inside.pop(fields["track_id"], None)
                if event.kind != "zone_entered":
                    self._zone_series.add(key)
            if event.kind == "zone_left":
                self.dwell.labels(*key).observe(fields.get("dwell", 0.0))
            elif event.kind == "loitering":
                self.loitering.labels(*key).inc()

    def zones(self, stream: str, names: list[str]) -> None:
        """A stream's zones: their occupancy series exist from the start (0 while empty)."""
        with self._lock:
            for name in names:
                self._inside.setdefault((stream, name), {})

    def close_stream(self, stream: str) -> None:
        """A stream ended or was removed: its label sets go."""
        self.forget(stream)

    def forget(self, stream: str) -> None:
        with self._lock:
            for labels in self._crossing_labels.pop(stream, ()):
                self.crossings.remove(*labels)
            for key in [key for key in self._inside if key[0] == stream]:
                del self._inside[key]
                self._seen.pop(key, None)
            for key in [key for key in self._zone_series if key[0] == stream]:
                self._zone_series.discard(key)
                for metric in (self.dwell, self.loitering):
                    with contextlib.suppress(KeyError):
                        metric.remove(*key)
        with contextlib.suppress(KeyError):
            self.latency.remove(stream)

    def _zone_objects(self) -> dict[tuple[str, str, str], int]:
        """``(stream, zone, label) -> inside now`` for every label seen in the zone (0 when it left) and
        ``(stream, zone, "") -> all inside`` for every zone (0 while empty): no gaps in a graph."""
        counts: dict[tuple[str, str, str], int] = {}
        with self._lock:
            for (stream, zone), inside in self._inside.items():
                counts[(stream, zone, "")] = len(inside)
                for label in self._seen.get((stream, zone), ()):
                    counts[(stream, zone, label)] = 0
                for label in inside.values():
                    counts[(stream, zone, label)] += 1
        return counts

    def text(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _StreamCollector(Collector):
    """Per-stream figures read from the pipeline at each scrape."""

    def __init__(self, snapshot, mqtt_connected, zone_objects) -> None:
        self._snapshot = snapshot
        self._mqtt = mqtt_connected
        self._zones = zone_objects

    def describe(self):
        return []

    def collect(self):
        figures = self._snapshot()
        streams = figures.get("streams", {})
        up = GaugeMetricFamily("vidpipe_stream_up", "1 while the stream delivers frames", labels=["stream"])
        frames = CounterMetricFamily("vidpipe_stream_frames", "Frames detected", labels=["stream"])
        gated = CounterMetricFamily(
            "vidpipe_frames_gated", "Frames the motion gate kept from the detector", labels=["stream"]
        )
        dropped = CounterMetricFamily(
            "vidpipe_stream_frames_dropped", "Live frames dropped, by reason", labels=["stream", "reason"]
        )
        reconnects = CounterMetricFamily("vidpipe_stream_reconnects", "Reconnections", labels=["stream"])
        last = GaugeMetricFamily(
            "vidpipe_stream_last_frame_timestamp_seconds", "UNIX time of the last result", labels=["stream"]
        )
        for name, s in streams.items():
            up.add_metric([name], 1.0 if s["state"] == "running" else 0.0)
            frames.add_metric([name], s["frames"])
            gated.add_metric([name], s.get("gated", 0))
            for reason in DROP_REASONS:
                dropped.add_metric([name, reason], s.get("drops", {}).get(reason, 0))
            reconnects.add_metric([name], s["reconnects"])
            if s["last_frame"] is not None:
                last.add_metric([name], s["last_frame"])
        yield from (up, frames, gated, dropped, reconnects, last)
        count = GaugeMetricFamily("vidpipe_streams", "Streams in the service")
        count.add_metric([], len(streams))
        yield count
        zones = GaugeMetricFamily(
            "vidpipe_zone_objects", "Tracked objects inside a zone now, by label", labels=["stream", "zone", "label"]
        )
        occupancy = GaugeMetricFamily(
            "vidpipe_zone_occupancy", "Tracked objects inside a zone now, all labels", labels=["stream", "zone"]
        )
        for (stream, zone, label), n in self._zones().items():
            if label:
                zones.add_metric([stream, zone, label], n)
            else:
                occupancy.add_metric([stream, zone], n)
        yield zones
        yield occupancy
        errors = CounterMetricFamily(
            "vidpipe_sink_errors", "Failures of an output, isolated from the run", labels=["sink"]
        )
        for sink, n in figures.get("sink_errors", {}).items():
            errors.add_metric([sink], n)
        yield errors
        connected = self._mqtt()
        if connected is not None:
            mqtt = GaugeMetricFamily("vidpipe_mqtt_connected", "1 while connected to the MQTT broker")
            mqtt.add_metric([], 1.0 if connected else 0.0)
            yield mqtt
