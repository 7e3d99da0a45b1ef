"""Box maths shared by the detectors: centre-size decoding, per-class NMS, SSD prediction heads."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torchvision.ops import batched_nms, clip_boxes_to_image

from .detections import Detections


def decode_center_size(
    codes: torch.Tensor, anchors: torch.Tensor, scales: tuple[float, float, float, float]
) -> torch.Tensor:
    """Decode box regressions against anchors.

    ``codes``: ``[..., 4]`` as ``(tx, ty, tw, th)``; ``anchors``: ``[A, 4]`` as ``(cx, cy, w, h)``;
    ``scales``: divisors of the codes (TF's (10, 10, 5, 5) is scales for ty, tx, th, tw reordered).
    Returns ``[..., 4]`` boxes as ``x1, y1, x2, y2`` in the anchors' units.
    """
    cxy = codes[..., :2] / codes.new_tensor(scales[:2]) * anchors[:, 2:] + anchors[:, :2]
    wh = torch.exp(codes[..., 2:] / codes.new_tensor(scales[2:])) * anchors[:, 2:]
    return torch.cat((cxy - wh / 2, cxy + wh / 2), dim=-1)


def multiclass_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    *,
    threshold: float,
    iou: float,
    max_detections: int,
    clip: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class NMS for one image.

    ``boxes``: ``[A, 4]`` shared by all classes; ``scores``: ``[A, C]``. Keeps (anchor, class) pairs
    with score >= threshold, suppresses within each class at ``iou``, returns the ``max_detections``
    best as ``(boxes [K, 4], scores [K], class_index [K])`` sorted by score.
    """
    if clip is not None:
        boxes = clip_boxes_to_image(boxes, clip)
    anchor_idx, class_idx = (scores >= threshold).nonzero(as_tuple=True)
    kept_scores = scores[anchor_idx, class_idx]
    kept_boxes = boxes[anchor_idx]
    keep = batched_nms(kept_boxes.float(), kept_scores.float(), class_idx, iou)[:max_detections]
    return kept_boxes[keep], kept_scores[keep], class_idx[keep]


def select_per_frame(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    sizes: Sequence[tuple[int, int]],
    *,
    threshold: float,
    iou: float,
    max_detections: int,
    label: Callable[[int], str],
) -> list[Detections]:
    """SSD post-processing for a batch: ``boxes [N, A, 4]`` normalised x1y1x2y2, ``scores [N, A, C]``
    without the background column (class id = column + 1), ``sizes`` each frame's (h, w). Boxes are
    clipped to the frame, suppressed per class and mapped to the frame's pixels."""
    results = []
    for i, (height, width) in enumerate(sizes):
        kept, kept_scores, class_index = multiclass_nms(
            boxes[i].clamp(0.0, 1.0), scores[i], threshold=threshold, iou=iou, max_detections=max_detections
        )
        kept = (kept * kept.new_tensor([width, height, width, height])).cpu()
        class_ids = (class_index + 1).cpu()
        results.append(Detections(kept, kept_scores.cpu(), class_ids, [label(c) for c in class_ids.tolist()]))
    return results


def prediction_heads(channels: Sequence[int], per_cell: Sequence[int], outputs: int) -> nn.ModuleList:
    """One 3×3 convolution per feature map predicting ``outputs`` values for each of its anchors."""
    return nn.ModuleList(nn.Conv2d(c, n * outputs, 3, padding=1) for c, n in zip(channels, per_cell, strict=True))
