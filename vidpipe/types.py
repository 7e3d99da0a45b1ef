"""The plain data that flows through vidpipe: frames, detections, results, events, source facts.

This module imports neither GStreamer nor any model, so sinks, stages and user code depend on it alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["Detections", "Event", "Frame", "Gap", "Result", "SourceInfo"]


@dataclass(slots=True)
class Frame:
    """One decoded video frame.

    ``tensor`` is ``torch.uint8[H, W, 3]``, RGB, contiguous: exactly the decoded pixels.
    ``index`` counts from 0 in decoding order; ``pts`` is the presentation time in seconds; ``stream``
    names the source the frame came from; ``wall`` is the UNIX time at which it left the decoder.
    """

    tensor: torch.Tensor
    index: int
    pts: float
    stream: str = "0"
    wall: float = field(default_factory=time.time)

    @property
    def width(self) -> int:
        return int(self.tensor.shape[1])

    @property
    def height(self) -> int:
        return int(self.tensor.shape[0])


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
    ``labels``: N class names.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    class_ids: torch.Tensor
    labels: list[str]

    def __post_init__(self) -> None:
        n = self.scores.shape[0] if self.scores.dim() == 1 else -1
        if self.boxes.dim() != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"boxes must be [N, 4], got {list(self.boxes.shape)}")
        if n != self.boxes.shape[0] or self.class_ids.shape != (n,) or len(self.labels) != n:
            raise ValueError(
                f"parallel arrays differ in length: boxes {self.boxes.shape[0]}, scores "
                f"{list(self.scores.shape)}, class_ids {list(self.class_ids.shape)}, labels {len(self.labels)}"
            )

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
            self.boxes[index], self.scores[index], self.class_ids[index], [self.labels[i] for i in picked]
        )

    def to_dict(self) -> list[dict]:
        """JSON-ready list of ``{label, class_id, score, box}`` (box in pixels, 2 decimals)."""
        boxes = self.boxes.tolist()
        scores = self.scores.tolist()
        ids = self.class_ids.tolist()
        return [
            {"label": label, "class_id": cid, "score": round(score, 4), "box": [round(v, 2) for v in box]}
            for label, cid, score, box in zip(self.labels, ids, scores, boxes, strict=True)
        ]


@dataclass(slots=True)
class Result:
    """One frame and what was detected in it."""

    frame: Frame
    detections: Detections


@dataclass(slots=True)
class Event:
    """Something that happened to a stream, in order with its frames: ``kind`` is for example
    ``frames_missing``; ``message`` says it in words; ``fields`` are extra facts (pts, counts)."""

    stream: str
    kind: str
    message: str
    wall: float = field(default_factory=time.time)
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "wall": round(self.wall, 6),
            "event": self.kind,
            "message": self.message,
            **self.fields,
        }
