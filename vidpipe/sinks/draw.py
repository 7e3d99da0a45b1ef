"""Drawing detections on frames (torchvision's ``draw_bounding_boxes``), one colour per class."""

from __future__ import annotations

import torch
from torchvision.utils import draw_bounding_boxes

from ..types import Detections

PALETTE = [
    (255, 56, 56), (56, 255, 56), (56, 56, 255), (255, 157, 0), (255, 0, 230), (0, 230, 255),
    (255, 255, 0), (140, 56, 255), (0, 255, 140), (255, 110, 160),
]  # fmt: skip
LINE_WIDTH = 3


def color_for(class_id: int) -> tuple[int, int, int]:
    """The RGB colour of a class's boxes."""
    return PALETTE[class_id % len(PALETTE)]


def draw(frame: torch.Tensor, detections: Detections) -> torch.Tensor:
    """Return a copy of ``uint8[H, W, 3]`` ``frame`` with boxes, labels and scores drawn on it."""
    if len(detections) == 0:
        return frame
    labels = [
        f"{label} {score:.2f}" for label, score in zip(detections.labels, detections.scores.tolist(), strict=True)
    ]
    colors = [color_for(c) for c in detections.class_ids.tolist()]
    drawn = draw_bounding_boxes(
        frame.permute(2, 0, 1),
        detections.boxes,
        labels=labels,
        colors=colors,
        width=LINE_WIDTH,
        label_colors="black",
        label_background_colors=colors,
        fill_labels=True,
    )
    return drawn.permute(1, 2, 0).contiguous()
