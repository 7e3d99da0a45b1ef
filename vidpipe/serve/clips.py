"""Clips of events: once an event's post-roll has passed, its stream's ring segments from ``pre_roll``
before to ``post_roll`` after are remuxed into ``output_dir/STREAM/clips/EVENTID.mp4`` (no re-encoding)
and the event's row says so. A thread of its own does it: the pipeline never waits. A clip that cannot
be written (disk full) is said once and tried again while its segments are kept; one given up (no video
for that time) has the reason in its row (``clip_failed``).

After a kill (SIGKILL, a power cut) the clips still due are not lost: :meth:`ClipMaker.recover` queues the
earlier run's events that have neither a clip nor a reason for none, and cuts them from the segments the
camera recorders adopted (:class:`~vidpipe.gst.segments.CameraRecorder` with ``adopt``)."""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from pathlib import Path

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from ..gst.clips import ClipError, cut
from ..gst.segments import CameraRecorder
from ..types import Event
from .events import EventStore, StoreError, safe_part

Item = tuple[float, int, str, float, bool]  # (when to try, event id, stream, its time, of an earlier run)

log = logging.getLogger(__name__)

WAIT_S = 30.0  # the longest wait after the post-roll for the segment that holds its end (a long GOP)
RETRY_S = 10.0  # a clip that failed is tried again after this long
KEEP_EXTRA_S = 90.0  # ring seconds kept beyond pre + post roll (the wait above, retries)


class ClipMaker:
    """Cuts each event's clip from its stream's camera recorder (``cameras``: stream -> recorder) for the
    streams given their pre- and post-roll in ``rolls`` (stream -> (pre_roll, post_roll))."""

    def __init__(self, store: EventStore, cameras: dict[str, CameraRecorder]):
        self.store = store
        self.output_dir = store.output_dir
        self.cameras = cameras
        self.rolls: dict[str, tuple[float, float]] = {}
        self.by_pts: set[str] = set()  # streams mapped by stream time, not UNIX time (files read at full speed)
        self.made = 0
        self.failed = 0  # clips given up (no video for that time, or it could not be written)
        self._pending: list[Item] = []
        self._last: tuple[tuple[Path, ...], Path] | None = None  # the last clip's segments and file
        self._failing = False
        self._wake = threading.Condition()
        self._stop = False
        for stale in self.output_dir.glob("*/clips/*.mp4.part"):  # a clip being cut when the service was killed
            stale.unlink(missing_ok=True)
        try:
            self._earlier = store.last_id()  # the events of earlier runs: ids up to this
        except StoreError:
            self._earlier = 0
        self._thread = threading.Thread(target=self._run, name="vidpipe-clips", daemon=True)
        self._thread.start()

    @staticmethod
    def keep(pre_roll: float, post_roll: float) -> float:
        """Seconds of ring a stream's camera recorder keeps for clips."""
        return pre_roll + post_roll + KEEP_EXTRA_S

    def add(self, event_id: int, event: Event) -> None:
        """An event stored (the store's writer thread: only queues)."""
        rolls = self.rolls.get(event.stream)
        by_pts = event.stream in self.by_pts
        at = event.fields.get("pts") if by_pts else event.wall
        if rolls is None or event.stream not in self.cameras or not isinstance(at, int | float):
            return
        with self._wake:
            heapq.heappush(self._pending, (time.time() if by_pts else at + rolls[1], event_id, event.stream, at, False))
            self._wake.notify()

    def recover(self) -> int:
        """Queue the clips an earlier run left due (killed before their post-roll passed): its events of
        the streams with clips, since the oldest video its rings kept, that have neither a clip nor a
        reason for none. Cut from the adopted segments, or given up with the reason. How many."""
        found = 0
        for stream, (pre_roll, post_roll) in list(self.rolls.items()):
            camera = self.cameras.get(stream)
            if camera is None:
                continue
            since = time.time() - self.keep(pre_roll, post_roll)
            since = min(since, camera.earlier_from) if camera.earlier_from is not None else since
            try:
                rows = self.store.without_clip(stream, since - post_roll, self._earlier)
            except StoreError as exc:
                log.error("clips: the clips due before the restart are not looked for: %s", exc)
                return found
            by_pts = stream in self.by_pts
            with self._wake:
                for row in rows:
                    at = row.get("pts") if by_pts else row["wall"]
                    if isinstance(at, int | float):
                        heapq.heappush(self._pending, (time.time(), row["id"], stream, float(at), True))
                        found += 1
                self._wake.notify()
        if found:
            log.info("clips: %d clip(s) due before the restart, cut from the video kept since", found)
        return found

    def pending(self, event_id: int) -> bool:
        """Whether the clip of an event is still to come."""
        with self._wake:
            return any(item[1] == event_id for item in self._pending)

    def close(self) -> None:
        """Cut the clips whose video is there (the recorders closed first), give up the others."""
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stop and (not self._pending or self._pending[0][0] > time.time()):
                    timeout = self._pending[0][0] - time.time() if self._pending else None
                    self._wake.wait(timeout=min(timeout, 1.0) if timeout is not None else 1.0)
                if self._stop:
                    due, self._pending = sorted(self._pending), []
                else:
                    due = [heapq.heappop(self._pending)]
            for item in due:
                self._try(*item, final=self._stop)
            if self._stop:
                return

    def _try(self, _when: float, event_id: int, stream: str, at: float, earlier: bool, final: bool = False) -> None:
        camera, rolls = self.cameras.get(stream), self.rolls.get(stream)
        if camera is None or rolls is None:
            return
        pre_roll, post_roll = rolls
        by_pts = stream in self.by_pts
        start, end = at - pre_roll, at + post_roll
        late = earlier or (not by_pts and time.time() > end + WAIT_S)  # (an earlier run's video: all there is)
        if not final and not late and not camera.recorded_until(end, by_pts):
            self._later(time.time() + 0.5, event_id, stream, at, earlier)
            return
        parts = camera.covering(start, end, by_pts, earlier)
        if not parts:
            why = "its video was not on disk at the restart" if earlier else "no video was recorded around it"
            self._give_up(event_id, stream, why)
            return
        folder = self.output_dir / safe_part(stream) / "clips"
        out = folder / f"{event_id}.mp4"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._write([part.path for part in parts], out, parts[0].parser)
            self.store.set_clip(event_id, out.relative_to(self.output_dir).as_posix())
        except (ClipError, StoreError, OSError) as exc:
            if not self._failing:
                log.error("clips: %s; clips are not written until it works again", exc)
            self._failing = True
            if not final and (by_pts or time.time() < at + self.keep(*rolls) - pre_roll - RETRY_S):
                self._later(time.time() + RETRY_S, event_id, stream, at, earlier)
            else:
                self._give_up(event_id, stream, f"it could not be written ({exc})")
            return
        if self._failing:
            log.warning("clips: written again")
        self._failing = False
        self.made += 1

    def _write(self, parts: list[Path], out: Path, parser: str) -> None:
        """The clip at ``out``: a link to the last clip when it has the same segments (events close
        together share one file), else cut from the segments."""
        key = tuple(parts)
        if self._last is not None and self._last[0] == key and self._last[1].is_file():
            try:
                os.link(self._last[1], out)
                return
            except OSError:
                pass
        cut(parts, out, parser)
        self._last = (key, out)

    def _give_up(self, event_id: int, stream: str, why: str) -> None:
        """No clip for an event: counted, said, and its row says why."""
        self.failed += 1
        log.info("stream %s: no clip for event %d: %s", stream, event_id, why)
        try:
            self.store.set_clip_failed(event_id, why)
        except StoreError as exc:
            if not self._failing:  # (a full disk: said once already)
                log.error("clips: event %d is not marked as without a clip: %s", event_id, exc)

    def _later(self, when: float, event_id: int, stream: str, at: float, earlier: bool) -> None:
        with self._wake:
            heapq.heappush(self._pending, (when, event_id, stream, at, earlier))


class ClipsCollector(Collector):
    """Clips made and given up, and buffers each camera recorder could not record, for Prometheus."""

    def __init__(self, maker: ClipMaker | None, cameras: dict[str, CameraRecorder]) -> None:
        self.maker = maker
        self.cameras = cameras

    def describe(self):
        return []

    def collect(self):
        if self.maker is not None:
            made = CounterMetricFamily("vidpipe_clips_made", "Event clips written")
            made.add_metric([], self.maker.made)
            failed = CounterMetricFamily("vidpipe_clips_failed", "Event clips given up (no video, not writable)")
            failed.add_metric([], self.maker.failed)
            yield from (made, failed)
        dropped = CounterMetricFamily(
            "vidpipe_camera_recording_dropped", "Buffers of the camera's stream not recorded", labels=["stream"]
        )
        for name, camera in list(self.cameras.items()):
            dropped.add_metric([name], camera.dropped)
        yield dropped
