"""Detections: one typed result per frame that every sink accepts."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
