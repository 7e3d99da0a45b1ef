"""Figures of a run: throughput, per-stage latency, and per stream frames, drops, reconnects, latency."""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

import torch

from ..types import Event, Result

STAGES = ("decode wait", "preprocess", "inference", "postprocess", "stages", "output")
_SAMPLES = 20_000  # latency samples kept per series (the most recent), so a run of days stays bounded
EVENTS_KEPT = 1_000  # the most recent events (a service runs for months)
# why live frames are dropped: the source outran the reader ("source"), the batcher's queue was full
# ("queue"), or the frame could no longer make the latency bound ("late")
DROP_REASONS = ("source", "queue", "late")


def _percentiles(values) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    q = torch.tensor(list(values), dtype=torch.float64).quantile(torch.tensor([0.5, 0.95], dtype=torch.float64))
    return float(q[0]), float(q[1])


@dataclass
class StreamStats:
    """One stream's figures. ``latency`` samples are seconds from the frame leaving the decoder (for a
    live stream: its arrival) to its result being handed to the sinks."""

    name: str
    source: str = ""
    live: bool = False
    frames: int = 0
    gated: int = 0  # of the frames, those the motion gate kept from the detector (nothing moved)
    dropped: int = 0  # live frames dropped: the source was faster than the pipeline, or too old
    drops: Counter = field(default_factory=Counter)  # the same, per reason (see DROP_REASONS)
    reconnects: int = 0
    labels: Counter = field(default_factory=Counter)
    latency: deque = field(default_factory=lambda: deque(maxlen=_SAMPLES))
    status: str = "starting"  # starting, running, reconnecting, ended, failed, stopped, removed
    error: str | None = None
    last_frame: float | None = None  # UNIX time of the last result
    counts: dict = field(default_factory=dict)  # the stream's line and zone counts (see Chain.totals)

    _times: deque = field(default_factory=lambda: deque(maxlen=64))  # monotonic times of recent results

    def drop(self, reason: str, frames: int = 1) -> None:
        """Count live frames dropped for ``reason`` (one of ``DROP_REASONS``)."""
        if frames:
            self.dropped += frames
            self.drops[reason] += frames

    def delivered(self, now: float) -> None:
        """A result of this stream went out at ``now`` (``time.monotonic()``): for :meth:`rate`."""
        self._times.append(now)

    def rate(self, window: float = 10.0) -> float:
        """Results per second over the last ``window`` seconds (0 when none came)."""
        now = time.monotonic()
        recent = [t for t in self._times if now - t <= window]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6) if now - recent[-1] < window else 0.0

    @property
    def detections(self) -> int:
        return sum(self.labels.values())

    def latency_ms(self) -> tuple[float, float]:
        p50, p95 = _percentiles(self.latency)
        return p50 * 1000, p95 * 1000

    def snapshot(self) -> dict:
        """This stream's figures as plain data (JSON-ready)."""
        p50, p95 = self.latency_ms()
        return {
            "name": self.name,
            "source": self.source,
            "live": self.live,
            "state": self.status,
            "error": self.error,
            "frames": self.frames,
            "gated": self.gated,
            "dropped": self.dropped,
            "drops": dict(self.drops),
            "fps": round(self.rate(), 2),
            "reconnects": self.reconnects,
            "detections": self.detections,
            "labels": dict(self.labels),
            "latency_ms": {"p50": round(p50, 1), "p95": round(p95, 1)} if self.latency else None,
            "last_frame": self.last_frame,
            "counts": self.counts,
        }


@dataclass
class Stats:
    """Throughput, per-stage latency (ms per frame, one sample per batch) and per-stream figures."""

    frames: int = 0
    labels: Counter = field(default_factory=Counter)
    samples: dict[str, deque] = field(default_factory=lambda: {s: deque(maxlen=_SAMPLES) for s in STAGES})
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    streams: dict[str, StreamStats] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    missing: Counter = field(default_factory=Counter)  # damaged data: frames missing, places
    sink_errors: Counter = field(default_factory=Counter)  # per output, failures isolated from the run
    watchers: list = field(default_factory=list)  # callables (stage, seconds, frames), told of every sample

    def add(self, stage: str, seconds: float, frames: int = 1) -> None:
        self.samples[stage].append(seconds * 1000.0 / max(frames, 1))
        for watcher in self.watchers:
            watcher(stage, seconds, frames)

    def stream(self, name: str) -> StreamStats:
        if name not in self.streams:
            self.streams[name] = StreamStats(name)
        return self.streams[name]

    def count(self, result: Result, latency: bool = True) -> StreamStats:
        """One more result in the run's and its stream's figures (frames, labels, last frame, rate; its
        latency from the decoder with ``latency``); returns the stream's figures."""
        stream = self.stream(result.frame.stream)
        stream.frames += 1
        stream.gated += result.frame.gated
        stream.labels.update(result.detections.labels)
        now = time.time()
        if latency:
            stream.latency.append(now - result.frame.wall)
        stream.last_frame = now
        stream.delivered(time.monotonic())
        self.frames += 1
        self.labels.update(result.detections.labels)
        return stream

    def note_event(self, event: Event) -> None:
        """Keep an event (the most recent ``EVENTS_KEPT``) and count what the summary reports."""
        self.events.append(event)
        if event.kind == "frames_missing":
            self.missing["frames"] += event.fields.get("missing", 0)
            self.missing["places"] += 1

    def drop_stream(self, name: str) -> None:
        """Forget a removed stream's figures (the totals keep what it contributed)."""
        self.streams.pop(name, None)

    def snapshot(self) -> dict:
        """The figures as plain data (JSON-ready): totals, per-stage latency, per stream."""
        return {
            "frames": self.frames,
            "fps": round(self.fps, 2),
            "wall": round(self.wall, 3),
            "labels": dict(self.labels),
            "latency_ms": {
                stage: dict(zip(("p50", "p95"), (round(v, 3) for v in self.percentiles(stage)), strict=True))
                for stage in STAGES
            },
            "missing": dict(self.missing),
            "sink_errors": dict(self.sink_errors),
            "streams": {name: s.snapshot() for name, s in list(self.streams.items())},
        }

    @property
    def wall(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def fps(self) -> float:
        return self.frames / self.wall if self.wall > 0 else 0.0

    def percentiles(self, stage: str) -> tuple[float, float]:
        return _percentiles(self.samples[stage])

    def summary(self) -> str:
        lines = [f"frames      {self.frames} in {self.wall:.2f} s ({self.fps:.1f} FPS)"]
        total = sum(self.labels.values())
        per_label = ", ".join(f"{label} {n}" for label, n in self.labels.most_common()) or "none"
        lines.append(f"detections  {total}: {per_label}")
        lines.append("latency     ms/frame   p50      p95")
        for stage in STAGES:
            if stage == "stages" and not self.samples[stage]:
                continue  # no tracking or counting
            p50, p95 = self.percentiles(stage)
            lines.append(f"  {stage:<20} {p50:8.2f} {p95:8.2f}")
        gated = sum(s.gated for s in self.streams.values())
        if gated:
            lines.append(f"motion      {gated} of {self.frames} frames gated (nothing moved: no detector run)")
        if self.missing["places"]:
            frames, places = self.missing["frames"], self.missing["places"]
            lines.append(f"damaged     {frames} frame(s) could not be decoded, in {places} place(s)")
        if len(self.streams) > 1 or any(s.live or s.status == "failed" for s in self.streams.values()):
            lines.append(self.stream_table())
        return "\n".join(lines)

    def stream_table(self) -> str:
        """One row per stream: frames, dropped, reconnects, detections, source→result latency, status."""
        rows = ["stream      frames  dropped  reconnects  detections  latency p50/p95 ms  status"]
        for s in self.streams.values():
            latency = "{:.0f} / {:.0f}".format(*s.latency_ms()) if s.live and s.latency else "-"
            rows.append(
                f"  {s.name:<9} {s.frames:>6} {s.dropped:>8} {s.reconnects:>11} {s.detections:>11}  "
                f"{latency:>18}  {s.status}"
            )
        totals = (
            sum(s.frames for s in self.streams.values()),
            sum(s.dropped for s in self.streams.values()),
            sum(s.reconnects for s in self.streams.values()),
            sum(s.detections for s in self.streams.values()),
        )
        rows.append(f"  {'total':<9} {totals[0]:>6} {totals[1]:>8} {totals[2]:>11} {totals[3]:>11}")
        return "\n".join(rows)
