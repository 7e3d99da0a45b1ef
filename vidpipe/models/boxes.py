"""Box maths shared by the detectors: centre-size decoding and per-class NMS."""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms, clip_boxes_to_image


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
