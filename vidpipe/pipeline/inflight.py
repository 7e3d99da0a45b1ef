"""Batches in flight: the next batch is started on the device before the previous one's results are
collected, so that on a GPU one batch's upload and network run while the other's boxes are selected and
copied back. The same code runs on the CPU (one lane, nothing overlaps), where the tests exercise it."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..models.base import Batch, Detector
from ..types import Detections

DEFAULT_CUDA_IN_FLIGHT = 2  # two batches: one computing while the other's results are collected


def default_in_flight(device: torch.device) -> int:
    """Batches in flight for a device: 2 on CUDA, 1 elsewhere (on the CPU nothing would overlap, and a
    second batch in flight would only add a batch of latency)."""
    return DEFAULT_CUDA_IN_FLIGHT if device.type == "cuda" else 1


def continuous_batching(device: torch.device) -> bool:
    """Whether batches are launched as soon as the device is idle, with the frames queued then, rather
    than after waiting up to ``max_wait`` for a full batch: on CUDA, where a batch of any size costs about
    the same short time and waiting only adds latency (the batch sizes are fixed by padding, see
    :meth:`vidpipe.models.Detector.prepare`). Not on the CPU, where a batch's time grows with its frames
    and full batches are the measured optimum."""
    return device.type == "cuda"


class Lanes:
    """``count`` CUDA streams used in turn, one per batch in flight; on the CPU, contexts that do
    nothing. Work queued in one lane overlaps work queued in another on the device."""

    def __init__(self, device: torch.device, count: int) -> None:
        self.count = count
        self._streams: list[Any] = []
        if device.type == "cuda":
            self._streams = [torch.cuda.Stream(device) for _ in range(count)]
            for stream in self._streams:  # the model's weights and anchors were made on the default stream
                stream.wait_stream(torch.cuda.current_stream(device))
        self._next = 0

    def take(self) -> int:
        """The next lane, in turn."""
        lane, self._next = self._next, (self._next + 1) % self.count
        return lane

    def use(self, lane: int) -> contextlib.AbstractContextManager:
        """Run the enclosed torch work in ``lane`` (its CUDA stream; nothing on the CPU)."""
        return torch.cuda.stream(self._streams[lane]) if self._streams else contextlib.nullcontext()


@dataclass(slots=True)
class Launched:
    """A batch whose network has been started: what :meth:`InFlight.collect` needs to finish it."""

    tag: Any
    batch: Batch
    outputs: Any
    lane: int
    frames: int
    times: tuple[float, float]  # seconds: preprocess, inference (on CUDA, the time to queue the work)


class InFlight:
    """Up to ``count`` batches started before the oldest one's results are collected.

    :meth:`launch` preprocesses a batch and starts its network (asynchronously on CUDA); :meth:`collect`
    selects its boxes and brings them to the host. ``record(stage, seconds, frames)`` receives the time
    of each step (on CUDA, the preprocess and inference times are the time to queue the work, the
    postprocess time includes waiting for it)."""

    def __init__(self, detector: Detector, count: int, record: Callable[[str, float, int], None]) -> None:
        if count < 1:
            raise ValueError(f"batches in flight must be at least 1, got {count}")
        self.detector = detector
        self.count = count
        self.lanes = Lanes(detector.device, count)
        self._record = record
        self._pending: deque[Launched] = deque()

    @property
    def full(self) -> bool:
        return len(self._pending) >= self.count

    def __len__(self) -> int:
        return len(self._pending)

    def launch(self, frames: list[torch.Tensor], tag: Any = None) -> None:
        """Start a batch of ``uint8[H, W, 3]`` frames (``tag`` comes back with its detections)."""
        det, lane = self.detector, self.lanes.take()
        with self.lanes.use(lane), det.threads():
            t0 = time.perf_counter()
            batch = det.preprocess(frames)
            batch = det.pad(batch)  # up to a fixed batch size where the detector has them (CUDA)
            t1 = time.perf_counter()
            outputs = det.forward(batch)
            if self.count == 1 and det.device.type == "cuda":
                torch.cuda.synchronize(det.device)  # nothing to overlap: time the network itself
            t2 = time.perf_counter()
        self._pending.append(Launched(tag, batch, outputs, lane, len(frames), (t1 - t0, t2 - t1)))

    def collect(self) -> tuple[Any, list[Detections]]:
        """Finish the oldest batch: its tag and one :class:`Detections` per frame, on the host."""
        launched = self._pending.popleft()
        with self.lanes.use(launched.lane), self.detector.threads(), torch.inference_mode():
            t0 = time.perf_counter()
            detections = self.detector.results(launched.outputs, launched.batch)
            seconds = time.perf_counter() - t0
        for stage, spent in zip(("preprocess", "inference", "postprocess"), (*launched.times, seconds), strict=True):
            self._record(stage, spent, launched.frames)
        return launched.tag, detections

    def drain(self) -> Iterator[tuple[Any, list[Detections]]]:
        """Collect every batch still in flight, oldest first."""
        while self._pending:
            yield self.collect()
