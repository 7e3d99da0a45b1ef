"""Tracking: ByteTrack (from the ``trackers`` package) gives each detection an id that stays with its
object across frames; one tracker per stream."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from ..errors import VidpipeError
from ..types import Result

INSTALL_HINT = "tracking needs the 'trackers' package: pip install 'vidpipe[track]'"


def _bytetrack() -> Callable[..., object]:
    """A maker of ByteTrack trackers, each with its own queue of batched Kalman updates."""
    try:
        from trackers import ByteTrackTracker

        from .kalman import BatchedXYXYEstimator
    except ImportError as exc:
        raise VidpipeError(f"{INSTALL_HINT} ({exc})") from None

    def make(**settings: object) -> object:
        return ByteTrackTracker(**settings, state_estimator_class=BatchedXYXYEstimator.for_tracker())

    return make


class Tracker:
    """Stage that sets ``detections.track_ids``: ids are per stream, start at 0 and are never reused in
    a run; -1 marks a detection not (yet) tracked: an object gets its id once it has been seen in
    ``min_frames`` frames in a row.

    The tracker is told the real time between frames (each frame's presentation time), so it predicts
    motion right when only some frames are detected (``--detect-fps``) or a live stream drops frames. A
    track survives ``lost_after`` seconds without a detection (occlusions) before its id is retired.
    ``activation`` is the least score that starts a new track (default: every detection the model
    reports); ``high`` separates ByteTrack's first (confident) matching round from its second.
    """

    def __init__(
        self,
        *,
        lost_after: float = 1.0,
        min_frames: int = 2,
        activation: float = 0.0,
        high: float = 0.5,
        min_iou: float = 0.1,
    ) -> None:
        if lost_after <= 0:
            raise VidpipeError(f"lost_after must be above 0 seconds, got {lost_after}")
        if min_frames < 1:
            raise VidpipeError(f"min_frames must be at least 1, got {min_frames}")
        self._make = _bytetrack()
        self._settings = {
            "lost_track_buffer": max(1, round(lost_after * 30)),  # counted in 30 fps frames by ByteTrack
            "frame_rate": 30.0,
            "track_activation_threshold": activation,
            "minimum_consecutive_frames": min_frames,
            "minimum_iou_threshold": min_iou,
            "high_conf_det_threshold": high,
        }
        self._streams: dict[str, _StreamTracker] = {}
        self.tracks: Counter[str] = Counter()  # unique tracks per label, all streams

    def __call__(self, result: Result) -> Result:
        stream = result.frame.stream
        state = self._streams.get(stream)
        if state is None:
            state = self._streams[stream] = _StreamTracker(self._make(**self._settings))
        found = result.detections
        track_ids = state.update(found, result.frame.pts)
        # ByteTrack hands out ids in increasing order, each first seen in the frame that confirmed it:
        # an id above the highest seen so far is a new track (no set of every id ever seen to keep).
        newest = state.newest
        for label, track in zip(found.labels, track_ids.tolist(), strict=True):
            if track > newest:
                self.tracks[label] += 1
                state.newest = max(state.newest, track)
        return replace(result, detections=found.with_track_ids(track_ids))


class _StreamTracker:
    """One stream's ByteTrack, fed strictly increasing times (a live stream's clock restarts when it
    reconnects; the same timestamp twice would make ByteTrack skip its prediction)."""

    # Steps are whole multiples of STEP seconds (~1 ms): exact in binary, so a steady frame rate gives
    # ByteTrack the same step every frame and it reuses its motion matrices instead of rebuilding them.
    STEP = 2**-10

    def __init__(self, tracker: object) -> None:
        self.tracker = tracker
        self.last: float | None = None  # last time given to the tracker
        self.last_pts: float | None = None
        self.newest = -1  # the highest track id seen

    def clock(self, pts: float) -> float:
        """The time to give the tracker: it starts at 0 and advances as pts does, rounded down to ``STEP``
        (never more time than passed: a track re-detected exactly ``lost_after`` seconds later, as at
        ``--detect-fps 5`` after 1 s, is still the same track) and by at least one ``STEP`` (also when
        pts repeats, or goes back as a restarted clock does)."""
        steps = 0 if self.last is None else max(math.floor((pts - self.last_pts) / self.STEP + 1e-6), 1)
        now = (self.last or 0.0) + steps * self.STEP
        self.last, self.last_pts = now, pts
        return now

    def update(self, found, pts: float) -> torch.Tensor:
        import supervision as sv

        n = len(found)
        detections = sv.Detections(
            xyxy=found.boxes.float().numpy().reshape(n, 4).astype(np.float64),
            confidence=found.scores.float().numpy(),
            class_id=found.class_ids.numpy(),
            data={"index": np.arange(n)},
        )
        tracked = self.tracker.update(detections, timestamp=self.clock(pts))
        track_ids = torch.full((n,), -1, dtype=torch.int64)
        if len(tracked):
            track_ids[torch.as_tensor(tracked.data["index"])] = torch.as_tensor(tracked.tracker_id, dtype=torch.int64)
        return track_ids
