"""The plain data that flows through vidpipe: frames, detections, results, events, source facts.

This module imports neither GStreamer nor any model, so sinks, stages and user code depend on it alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .redact import mask_secrets

__all__ = ["Detections", "Event", "Frame", "Gap", "Result", "Shape", "SourceInfo"]


@dataclass(slots=True)
class Frame:
    """One decoded video frame.

    ``tensor`` is ``torch.uint8[H, W, 3]``, RGB, contiguous: exactly the decoded pixels.
    ``index`` counts from 0 in decoding order; ``pts`` is the presentation time in seconds; ``stream``
    names the source the frame came from; ``wall`` is the UNIX time at which it left the decoder.
    ``picture`` is the (width, height) of the picture when the frame carries no pixels (a record that
    crossed a process: its tensor is empty); None when the tensor is the picture. ``motion`` is None
    when the stream is not motion-gated, else whether the motion gate let the frame through to the
    detector (False: nothing moved, the tensor is the last detected frame's, see docs/motion.md).
    """

    tensor: torch.Tensor
    index: int
    pts: float
    stream: str = "0"
    wall: float = field(default_factory=time.time)
    picture: tuple[int, int] | None = None
    motion: bool | None = None

    @property
    def gated(self) -> bool:
        """Whether the motion gate held this frame back from the detector."""
        return self.motion is False

    @property
    def width(self) -> int:
        """The picture's width (its pixels are those boxes are given in)."""
        return self.picture[0] if self.picture is not None else int(self.tensor.shape[1])

    @property
    def height(self) -> int:
        return self.picture[1] if self.picture is not None else int(self.tensor.shape[0])


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What is known about an opened source once its first frame is decoded.

    ``width``/``height`` are those of the yielded tensors; ``fps`` is None for variable frame rates;
    ``duration`` (seconds) and ``frames`` are None when unknown (live streams, some containers).
    ``frames`` is the count the container promises (duration × fps), not a count of decoded frames.
    """

    source: str
    width: int
    height: int
    fps: float | None
    duration: float | None
    frames: int | None
    codec: str | None
    container: str | None
    live: bool
    stream: str = "0"

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "container": self.container,
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "duration": self.duration,
            "frames": self.frames,
            "live": self.live,
        }


@dataclass(frozen=True, slots=True)
class Gap:
    """Frames that went into the decoder but never came out (damaged data), between two delivered frames."""

    after_frame: int  # index of the last frame delivered before the gap
    start: float  # pts of that frame, seconds
    end: float  # pts of the first frame after the gap
    missing: int  # frames lost in between

    def describe(self) -> str:
        return f"{self.missing} frame(s) missing between {self.start:.3f} s and {self.end:.3f} s"


@dataclass(frozen=True, slots=True)
class Detections:
    """Detected objects of one frame, as parallel arrays.

    ``boxes``: ``float32[N, 4]`` as ``x1, y1, x2, y2`` in the frame's pixels; ``scores``: ``float32[N]``;
    ``class_ids``: ``int64[N]`` (the model's class ids, COCO category ids for the built-in detectors);
    ``labels``: N class names; ``track_ids``: ``int64[N]`` once a tracker has seen them (-1 for a detection
    not tracked, for example in the first frame of an object), None when no tracker runs.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    class_ids: torch.Tensor
    labels: list[str]
    track_ids: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.scores.shape[0] if self.scores.dim() == 1 else -1
        if self.boxes.dim() != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"boxes must be [N, 4], got {list(self.boxes.shape)}")
        if n != self.boxes.shape[0] or self.class_ids.shape != (n,) or len(self.labels) != n:
            raise ValueError(
                f"parallel arrays differ in length: boxes {self.boxes.shape[0]}, scores "
                f"{list(self.scores.shape)}, class_ids {list(self.class_ids.shape)}, labels {len(self.labels)}"
            )
        if self.track_ids is not None and self.track_ids.shape != (n,):
            raise ValueError(f"track_ids must be [{n}], got {list(self.track_ids.shape)}")

    @classmethod
    def empty(cls) -> Detections:
        return cls(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64), [])

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __getitem__(self, index: torch.Tensor | slice) -> Detections:
        """Select by boolean mask, index tensor or slice; returns a new object."""
        if isinstance(index, torch.Tensor) and index.dtype == torch.bool:
            index = index.nonzero().flatten()
        picked = range(len(self))[index] if isinstance(index, slice) else index.tolist()
        return Detections(
            self.boxes[index],
            self.scores[index],
            self.class_ids[index],
            [self.labels[i] for i in picked],
            None if self.track_ids is None else self.track_ids[index],
        )

    def with_track_ids(self, track_ids: torch.Tensor) -> Detections:
        """The same detections with these track ids (``int64[N]``, -1 where not tracked)."""
        return Detections(self.boxes, self.scores, self.class_ids, self.labels, track_ids.to(torch.int64))

    def to_dict(self) -> list[dict]:
        """JSON-ready list of ``{label, class_id, score, box}`` (box in pixels, 2 decimals), with
        ``track_id`` when tracked."""
        boxes = self.boxes.tolist()
        scores = self.scores.tolist()
        ids = self.class_ids.tolist()
        found = [
            {"label": label, "class_id": cid, "score": round(score, 4), "box": [round(v, 2) for v in box]}
            for label, cid, score, box in zip(self.labels, ids, scores, boxes, strict=True)
        ]
        if self.track_ids is not None:
            for item, track in zip(found, self.track_ids.tolist(), strict=True):
                item["track_id"] = track
        return found

    def to_supervision(self) -> Any:
        """These detections as ``supervision.Detections`` (``class_name`` in its ``data``); needs the
        ``supervision`` package."""
        import numpy as np
        import supervision as sv

        return sv.Detections(
            xyxy=self.boxes.float().numpy().reshape(-1, 4),
            confidence=self.scores.float().numpy(),
            class_id=self.class_ids.numpy().astype(int),
            tracker_id=None if self.track_ids is None else self.track_ids.numpy().astype(int),
            data={"class_name": np.array(self.labels, dtype=str)},
        )

    @classmethod
    def from_supervision(cls, found: Any, names: Sequence[str] | dict[int, str] | None = None) -> Detections:
        """Detections from ``supervision.Detections``: labels from its ``class_name`` data, else from
        ``names`` (indexed by class id), else ``class_N``; scores 1.0 where it has no confidence."""
        n = len(found)
        boxes = torch.as_tensor(found.xyxy, dtype=torch.float32).reshape(n, 4)
        scores = torch.ones(n) if found.confidence is None else torch.as_tensor(found.confidence, dtype=torch.float32)
        class_ids = (
            torch.zeros(n, dtype=torch.int64)
            if found.class_id is None
            else torch.as_tensor(found.class_id, dtype=torch.int64)
        )
        if "class_name" in found.data:
            labels = [str(v) for v in found.data["class_name"]]
        else:
            labels = [_name(names, c) for c in class_ids.tolist()]
        tracks = None if found.tracker_id is None else torch.as_tensor(found.tracker_id, dtype=torch.int64)
        return cls(boxes, scores, class_ids, labels, tracks)


def _name(names: Sequence[str] | dict[int, str] | None, class_id: int) -> str:
    try:
        return str(names[class_id]) if names is not None else f"class_{class_id}"
    except (IndexError, KeyError):
        return f"class_{class_id}"


@dataclass(frozen=True, slots=True)
class Shape:
    """Something a stage wants drawn on a frame: a line (two points) or a polygon (``closed``), with a
    caption (its live counts)."""

    points: tuple[tuple[float, float], ...]
    caption: str
    closed: bool = False
    arrow: bool = False  # a counting line: draw the direction that counts as "in"


@dataclass(slots=True)
class Result:
    """One frame and what was detected in it; stages may add ``events`` that happened at this frame (a
    line crossed), ``zones`` (objects in each zone), ``shapes`` to draw (lines, zones, their counts) and
    ``privacy``, the ``bool[H, W]`` regions every picture made of this frame fills (drawings included)."""

    frame: Frame
    detections: Detections
    events: list[Event] = field(default_factory=list)
    zones: dict[str, int] | None = None
    shapes: list[Shape] = field(default_factory=list)
    privacy: torch.Tensor | None = None

    def record(self) -> dict[str, Any]:
        """The plain, pixel-free, JSON-ready record of this result (one JSONL line; see
        ``detections.schema.json``): what every non-pixel output and every process boundary carries."""
        frame = self.frame
        record = {
            "stream": frame.stream,
            "frame": frame.index,
            "pts": round(frame.pts, 6),
            "wall": round(frame.wall, 6),
            "width": frame.width,
            "height": frame.height,
            "detections": self.detections.to_dict(),
        }
        if self.zones is not None:
            record["zones"] = self.zones
        if frame.motion is not None:
            record["motion"] = frame.motion
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Result:
        """The result a record describes (the inverse of :meth:`record`), without pixels: the frame's
        tensor is empty and ``frame.picture`` holds its size. For records that crossed a process."""
        found = record["detections"]
        detections = Detections(
            torch.tensor([d["box"] for d in found], dtype=torch.float32).reshape(-1, 4),
            torch.tensor([d["score"] for d in found], dtype=torch.float32),
            torch.tensor([d["class_id"] for d in found], dtype=torch.int64),
            [d["label"] for d in found],
            torch.tensor([d["track_id"] for d in found], dtype=torch.int64)
            if found and "track_id" in found[0]
            else None,
        )
        frame = Frame(
            torch.empty((0, 0, 3), dtype=torch.uint8), record["frame"], record["pts"], record["stream"],
            record["wall"], picture=(record["width"], record["height"]), motion=record.get("motion"),
        )  # fmt: skip
        return cls(frame, detections, zones=record.get("zones"))


@dataclass(slots=True)
class Event:
    """Something that happened to a stream, in order with its frames: ``kind`` is for example
    ``frames_missing``; ``message`` says it in words; ``fields`` are extra facts (pts, counts)."""

    stream: str
    kind: str
    message: str
    wall: float = field(default_factory=time.time)
    fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:  # a source's password never reaches an output
        self.message = mask_secrets(self.message)
        for key, value in self.fields.items():
            if isinstance(value, str):
                self.fields[key] = mask_secrets(value)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """The event a :meth:`to_dict` line describes."""
        fields = {k: v for k, v in data.items() if k not in ("stream", "wall", "event", "message")}
        return cls(data["stream"], data["event"], data["message"], data["wall"], fields)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "wall": round(self.wall, 6),
            "event": self.kind,
            "message": self.message,
            **self.fields,
        }
