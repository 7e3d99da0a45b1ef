"""ByteTrack's Kalman filter (from ``trackers``) with one frame's covariance algebra done in one step.

trackers' ByteTrack predicts and updates the filter of each track on its own: a dozen small numpy calls
per track and frame, the largest part of the tracking stage's time. :class:`BatchedXYXYEstimator`
(given to ByteTrack through its ``state_estimator_class`` parameter) keeps the same filter and the
same algebra, but a prediction moves only the state at once (ByteTrack needs the predicted box
straight away) and queues its covariance; an update queues its measurement. Each queue is applied
to all its filters in one batched step (the predictions first) as soon as a queued result is read,
which ByteTrack does when it predicts the next frame. Association, track life and ids stay ByteTrack's.
"""

from __future__ import annotations

import numpy as np
from trackers.utils.kalman_filter import KalmanFilter
from trackers.utils.state_representations import XYXYStateEstimator


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    return np.array(arrays)  # same-shaped arrays; a third of np.stack's time


def _t(matrices: np.ndarray) -> np.ndarray:
    return matrices.transpose(0, 2, 1)


class WorkQueue:
    """Covariance predictions and measurement updates waiting to be applied, for one tracker's filters."""

    def __init__(self) -> None:
        self.predicts: list[BatchedKalmanFilter] = []
        self.updates: list[BatchedKalmanFilter] = []

    def apply(self) -> None:
        """Apply every queued step, batched: ``KalmanFilter.predict``'s covariance, then its ``update``."""
        predicts, updates = self.predicts, self.updates
        self.predicts, self.updates = [], []
        if predicts:
            f = _stack([kf._step[0] for kf in predicts])
            q = _stack([kf._step[1] for kf in predicts])
            p = f @ _stack([kf._covariance for kf in predicts]) @ _t(f) + q
            for k, kf in enumerate(predicts):
                kf._covariance = kf.state_covariance_prior = p[k]
                kf._step = None
        if updates:
            z = _stack([kf._measurement for kf in updates])
            x = _stack([kf._state for kf in updates])
            p = _stack([kf._covariance for kf in updates])
            h = _stack([kf.observation_mtx for kf in updates])
            r = _stack([kf.measurement_noise for kf in updates])
            innovation = z - h @ x
            pht = p @ _t(h)
            innovation_cov = h @ pht + r
            gain = pht @ np.linalg.inv(innovation_cov)
            x = x + gain @ innovation
            i_kh = np.eye(x.shape[1]) - gain @ h
            p = i_kh @ p @ _t(i_kh) + gain @ r @ _t(gain)  # Joseph form, as KalmanFilter.update
            for k, kf in enumerate(updates):
                kf._state = kf.state_post = x[k]
                kf._covariance = kf.state_covariance_post = p[k]
                kf.innovation, kf.innovation_cov, kf.kalman_gain = innovation[k], innovation_cov[k], gain[k]
                kf._measurement = None


class BatchedKalmanFilter(KalmanFilter):
    """A ``KalmanFilter`` whose covariance prediction and measurement update wait in its queue.
    Reading ``state`` or ``state_covariance`` applies the queue first where they are waiting on it, so
    every reader sees exactly what ``KalmanFilter`` would give."""

    def __init__(self, dim_x: int, dim_z: int, queue: WorkQueue) -> None:
        self._queue = queue
        self._step: tuple[np.ndarray, np.ndarray] | None = None  # (F, Q) of a queued prediction
        self._measurement: np.ndarray | None = None  # of a queued update
        super().__init__(dim_x, dim_z)

    @property
    def state(self) -> np.ndarray:
        if self._measurement is not None:
            self._queue.apply()
        return self._state

    @state.setter
    def state(self, value: np.ndarray) -> None:
        if self._measurement is not None:
            self._queue.apply()
        self._state = value

    @property
    def state_covariance(self) -> np.ndarray:
        if self._step is not None or self._measurement is not None:
            self._queue.apply()
        return self._covariance

    @state_covariance.setter
    def state_covariance(self, value: np.ndarray) -> None:
        if self._step is not None or self._measurement is not None:
            self._queue.apply()
        self._covariance = value

    def predict(self) -> None:
        self._state = self.state_prior = self.transition_mtx @ self.state
        if self._step is not None:  # a second prediction before any update: the first one goes first
            self._queue.apply()
        self._step = (self.transition_mtx, self.process_noise)
        self._queue.predicts.append(self)

    def update(self, z: np.ndarray | None) -> None:
        if z is None:
            super().update(None)
            return
        if self._measurement is not None:  # a second update before any read: the first one goes first
            self._queue.apply()
        self._measurement = np.asarray(z, dtype=np.float64).reshape((self.dim_z, 1))
        self._queue.updates.append(self)


class BatchedXYXYEstimator(XYXYStateEstimator):
    """ByteTrack's default state (box corners and their velocities) on a :class:`BatchedKalmanFilter`.
    Make one class per tracker with :meth:`for_tracker`: its filters share one queue."""

    queue: WorkQueue

    @classmethod
    def for_tracker(cls) -> type[BatchedXYXYEstimator]:
        return type(cls.__name__, (cls,), {"queue": WorkQueue()})

    def clamp_velocity(self, frame_step: float = 1.0) -> None:
        """Keep the box from folding over a long step: the corners have velocities of their own, so a
        prediction over a gap (``--detect-fps 5``: 6 nominal frames) can carry one corner past the other
        and leave an inverted box that overlaps nothing. When the box would lose more than half its width
        (or height) over the step, both corners move at their mean velocity (the box keeps its size)."""
        state = self.kf.state
        changed = False
        for low, high in ((0, 2), (1, 3)):
            size = state[high, 0] - state[low, 0]
            change = (state[high + 4, 0] - state[low + 4, 0]) * frame_step
            if size > 0 and size + change < 0.5 * size:
                state[low + 4, 0] = state[high + 4, 0] = (state[low + 4, 0] + state[high + 4, 0]) / 2
                changed = True
        if changed:
            self.kf.state = state

    def _create_filter(self, bbox: np.ndarray) -> KalmanFilter:
        kf = BatchedKalmanFilter(8, 4, self.queue)
        kf.set_state(super()._create_filter(bbox).get_state())
        return kf
