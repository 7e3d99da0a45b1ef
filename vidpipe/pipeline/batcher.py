"""The batcher: frames from every stream into batches, fairly, with bounded queues and bounded latency.

Each stream has its own bounded queue (a lane), from when it is added until its end has been taken;
streams come and go while batches run. A batch takes one frame from each stream that has one ready, in
turn (round robin, starting with a different stream each batch), so a fast file cannot starve a live
camera; it waits at most ``max_wait`` after its first frame for the batch to fill. Events and the end
of a stream travel in the same queue, so they keep their place among the stream's frames.

A frame the motion gate held back (``frame.gated``) travels like a marker: it is never batched or waited
for, and dropped only when older than its stream's latency bound (its result is the last detections of
its stream, see the engine).

Files apply back-pressure (a full queue blocks their reader, and GStreamer behind it). Live streams never
block: a full queue drops its oldest frame, and a frame that cannot reach its result within the stream's
latency bound is dropped too, both counted, so latency cannot grow however slow the model is. The bound
is from the source to the result: a frame is dropped when it is older than the bound, or when its age
plus the time a batch recently took to process (``service``) passes it while a newer frame of its stream
waits behind it (the newest frame is always processed, so a slow machine still gets results).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from ..options import FILE_QUEUE
from ..types import Event, Frame
from .stats import StreamStats


class End:
    """Queue marker: the stream has ended; ``error`` is what ended it, if anything."""

    def __init__(self, stream: str, error: BaseException | None = None) -> None:
        self.stream = stream
        self.error = error


Item = Frame | Event | End


@dataclass(eq=False)
class _Lane:
    stats: StreamStats
    room: threading.Condition  # a file's reader waits on it for room (on the batcher's lock)
    capacity: int = FILE_QUEUE
    live: bool = False
    max_latency: float | None = None
    frames: int = 0  # frames queued

    def __post_init__(self) -> None:
        self.queue: deque[Item] = deque()


class Batcher:
    """Fair batches over streams: ``put`` from each stream's reader thread, ``take`` from the inference
    thread. ``abandon`` (an event) makes every wait give up. Without ``keep_alive``, :meth:`take` ends
    (None) once every stream has ended; with it, the batcher idles with no stream until :meth:`close`."""

    def __init__(self, batch: int, max_wait: float, abandon: threading.Event, *, keep_alive: bool = False) -> None:
        self.batch = batch
        self.max_wait = max_wait
        self.keep_alive = keep_alive
        self._abandon = abandon
        # One lock; the taker waits on ``_items``, each file's reader on its own lane's ``room``: a frame
        # put wakes the taker only, a batch taken wakes only the readers whose lanes it freed (one shared
        # condition woke every blocked reader for every frame: with 32 files, 32 wake-ups a frame).
        self._lock = threading.Lock()
        self._items = threading.Condition(self._lock)
        self._freed: set[_Lane] = set()  # lanes a batch being taken has made room in
        self._lanes: dict[str, _Lane] = {}
        self._turn = 0
        self._closed = False
        self.service = 0.0  # seconds a batch recently took from being taken to its results (smoothed)

    def observe_service(self, seconds: float) -> None:
        """Tell how long the last batch took from :meth:`take` to its results (smoothed: a quarter of
        each new observation; a slower batch counts at once, so the bound is kept rather than missed)."""
        self.service = seconds if seconds > self.service else 0.75 * self.service + 0.25 * seconds

    def add_stream(self, stats: StreamStats) -> None:
        """A new stream's lane (until its end is taken): from here on the batcher waits for it."""
        with self._lock:
            self._lanes[stats.name] = _Lane(stats, threading.Condition(self._lock))
            self._items.notify_all()

    def remove_stream(self, stream: str) -> None:
        """Drop a lane at once, with whatever it holds (a stream removed before it started)."""
        with self._lock:
            lane = self._lanes.pop(stream, None)
            if lane is not None:
                lane.room.notify_all()
            self._items.notify_all()

    def configure(self, stream: str, *, live: bool, max_latency: float | None, capacity: int) -> None:
        """Set a stream's queue size and drop policy once its source is open. A file's queue holds at
        least one batch (one file alone can then fill a batch while the previous one runs)."""
        if not live:
            capacity = max(capacity, self.batch)
        with self._lock:
            lane = self._lanes[stream]
            lane.live, lane.max_latency, lane.capacity = live, max_latency, capacity

    def close(self) -> None:
        """No stream will be added any more: :meth:`take` ends once the lanes there are have ended."""
        with self._lock:
            self._closed = True
            self._items.notify_all()

    def put(self, stream: str, item: Item) -> bool:
        """Queue a frame, event or end of ``stream``. A file's frame waits for room; a live stream's
        drops its oldest queued frame instead. Returns False once the run is abandoned."""
        with self._lock:
            lane = self._lanes[stream]
            if isinstance(item, Frame) and not item.gated:
                while lane.frames >= lane.capacity:
                    if lane.live:
                        self._drop_oldest(lane)
                        break
                    if self._abandon.is_set():
                        return False
                    lane.room.wait(0.1)
                lane.frames += 1
            lane.queue.append(item)
            self._items.notify()  # (the taker: one thread)
        return True

    def _drop_oldest(self, lane: _Lane) -> None:
        for i, queued in enumerate(lane.queue):
            if isinstance(queued, Frame) and not queued.gated:
                del lane.queue[i]
                lane.frames -= 1
                lane.stats.drop("queue")
                return

    def ready(self, full: bool = False) -> bool:
        """Whether any stream has something queued (a batch taken now would not wait for it); with
        ``full``, whether a whole batch of frames is queued."""
        with self._lock:
            if full:
                return sum(lane.frames for lane in self._lanes.values()) >= self.batch
            return any(lane.queue for lane in self._lanes.values())

    def take(self, fill: bool = True) -> tuple[list[Item], float] | None:
        """The next batch: up to ``batch`` frames, with the events and ends queued before them, in
        each stream's order; and the seconds spent waiting for the first item. None when every stream
        has ended and all was taken, and no stream can come any more (or the run was abandoned).
        ``fill``: wait up to ``max_wait`` after the first frame for the batch to fill; without it, the
        frames queued are taken at once (continuous batching: the device is idle, so whatever is there
        goes now, and the frames that come meanwhile make the next batch)."""
        started = time.perf_counter()
        items: list[Item] = []
        frames = 0
        first_at: float | None = None  # when the batch got its first frame
        with self._lock:
            while not self._abandon.is_set():
                frames += self._take_round(items, self.batch - frames)
                if frames >= self.batch:
                    break
                if items and (frames == 0 or not fill):
                    break  # only events: pass them on at once (or, not filling, whatever there is)
                if frames and first_at is None:
                    first_at = time.perf_counter()
                if not items and not self._lanes and (self._closed or not self.keep_alive):
                    return None
                wait = 0.1 if first_at is None else first_at + self.max_wait - time.perf_counter()
                if wait <= 0:
                    break
                self._items.wait(wait)
            self._turn += 1
            for lane in self._freed:  # room for the readers of those files
                lane.room.notify()
            self._freed.clear()
        if not items:
            return None
        return items, (first_at or time.perf_counter()) - started

    def _take_round(self, items: list[Item], room: int) -> int:
        """Take frames in turn from each stream (with the markers before them); return the count."""
        lanes = list(self._lanes.values())
        taken = 0
        progress = True
        while progress and taken < room:
            progress = False
            for k in range(len(lanes)):
                lane = lanes[(self._turn + k) % len(lanes)]
                if taken < room and self._take_one(lane, items):
                    taken += 1
                    progress = True
        return taken

    def _too_late(self, frame: Frame, lane: _Lane, now: float) -> bool:
        """Whether a live frame cannot make its stream's latency bound: older than it already, or going
        to pass it by the time its result is out while a newer frame waits behind it."""
        age = now - frame.wall
        return age > lane.max_latency or (age + self.service > lane.max_latency and lane.frames > 0)

    def _take_one(self, lane: _Lane, items: list[Item]) -> bool:
        """Move the markers at the head of a lane, then one fresh frame, into ``items``."""
        now = time.time()
        while lane.queue:
            item = lane.queue.popleft()
            if isinstance(item, Frame) and not item.gated:
                lane.frames -= 1
                self._freed.add(lane)
                if lane.max_latency is not None and self._too_late(item, lane, now):
                    lane.stats.drop("late")  # processing it now would only add latency
                    continue
                items.append(item)
                return True
            if isinstance(item, Frame) and lane.max_latency is not None and now - item.wall > lane.max_latency:
                lane.stats.drop("late")  # (a gated frame: late only when older than the bound)
                continue
            items.append(item)
            if isinstance(item, End):  # the stream's last item: its lane goes
                if self._lanes.get(item.stream) is lane:
                    del self._lanes[item.stream]
                return False
        return False
