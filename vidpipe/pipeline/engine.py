"""The engine: batches from the batcher through the detector (pre → forward → post, with batches in
flight), back as each frame's result, in order, with the events and stream ends between them."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import torch

from ..models.base import Detector
from ..types import Detections, Event, Frame, Result
from .batcher import Batcher, End
from .inflight import InFlight, continuous_batching
from .stats import Stats


class Engine:
    """Runs ``detector`` with ``in_flight`` batches started before the oldest one's results are
    collected, recording each step's time in ``stats``."""

    def __init__(self, detector: Detector, in_flight: int, stats: Stats, continuous: bool | None = None) -> None:
        self.detector = detector
        self.in_flight = in_flight
        self.stats = stats
        # continuous batching (default: on CUDA, see continuous_batching)
        self.continuous = continuous_batching(detector.device) if continuous is None else continuous
        self._pushed: dict[str, Detections] = {}  # the last detections of detect()'s streams (gated frames)

    def run(self, batcher: Batcher) -> Iterator[Result | Event | End]:
        """Fair batches across streams, detected in the calling thread: results, events and stream
        ends, each stream's in its own order. Up to ``in_flight`` batches are started before the oldest
        is collected; one is collected at once when no frame is waiting, so latency does not grow. The
        batcher learns how long a batch took from being taken to its results (so live frames that
        cannot make their latency bound are dropped before inference).

        Continuously batched (on CUDA), a batch is taken as soon as the device is idle (nothing in
        flight), with the frames queued then; while batches are in flight, another is launched only when
        a whole one is queued, else the oldest is collected first."""
        flight = InFlight(self.detector, self.in_flight, self.stats.add)
        continuous = self.continuous
        last: dict[str, Detections] = {}  # each stream's last detections (for the frames gated by motion)

        def collected(tag: tuple[list, float], detections: list[Detections]) -> Iterator[Result | Event | End]:
            items, taken_at = tag
            batcher.observe_service(time.time() - taken_at)
            return _merged(items, detections, last)

        while True:
            if len(flight) and (flight.full or not batcher.ready(full=continuous)):
                yield from collected(*flight.collect())
                continue
            taken = batcher.take(fill=not continuous)
            if taken is None:
                break
            items, waited = taken
            _ungate_first(items, last)
            frames = [item.tensor for item in items if isinstance(item, Frame) and not item.gated]
            if not frames:  # events, ends and gated frames only: after the batches before them
                for done in flight.drain():
                    yield from collected(*done)
                yield from _merged(items, [], last)
                continue
            self.stats.add("decode wait", waited, len(frames))
            flight.launch(frames, tag=(items, time.time()))
        for done in flight.drain():
            yield from collected(*done)

    def detect(self, frames: Sequence[Frame]) -> list[Result]:
        """Detect in ``frames`` now, in the calling thread (the push-style entry: callers that own their
        frames, such as a GStreamer element): one result each, in order. A frame gated by motion is not
        detected: it gets its stream's last detections, as in :meth:`run`."""
        items = list(frames)
        _ungate_first(items, self._pushed)
        tensors = [frame.tensor for frame in items if not frame.gated]
        detections: list[Detections] = []
        if tensors:
            flight = InFlight(self.detector, 1, self.stats.add)
            with torch.inference_mode():
                flight.launch(tensors, tag=None)
                _, detections = flight.collect()
        return list(_merged(items, detections, self._pushed))


def _ungate_first(items: Sequence[Frame | Event | End], last: dict[str, Detections]) -> None:
    """A gated frame of a stream with nothing to carry (none detected yet, or all its detected frames
    dropped as late) is detected instead: its picture is the last one decoded (nothing moved since)."""
    for item in items:
        if isinstance(item, Frame) and item.gated and item.stream not in last:
            item.motion = True
            last[item.stream] = Detections.empty()  # (until its result, in order)


def _merged(
    items: list[Frame | Event | End], detections: list, last: dict[str, Detections]
) -> Iterator[Result | Event | End]:
    """A batch's items with each frame replaced by its result, in their order. A frame gated by motion
    gets its stream's ``last`` detections (nothing moved since: they still hold, and a tracker keeps
    their ids, a still object in a zone stays counted)."""
    found = iter(detections)
    for item in items:
        if isinstance(item, Frame):
            if item.gated:
                yield Result(item, last.get(item.stream) or Detections.empty())
            else:
                detected = last[item.stream] = next(found)
                yield Result(item, detected)
        else:
            if isinstance(item, End):
                last.pop(item.stream, None)
            yield item
