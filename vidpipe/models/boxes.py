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
    clipped to the frame, suppressed per frame and class and mapped to the frame's pixels.

    The whole batch is handled at once on the model's device: one threshold, one ``batched_nms`` over
    (frame, class) groups, the best ``max_detections`` of each frame kept, and one copy of the final
    boxes to the host (no per-frame synchronisation). Same result as :func:`multiclass_nms` per frame."""
    n, _, classes = scores.shape
    frame_idx, anchor_idx, class_idx = (scores >= threshold).nonzero(as_tuple=True)
    kept_scores = scores[frame_idx, anchor_idx, class_idx].float()
    kept_boxes = boxes[frame_idx, anchor_idx].clamp(0.0, 1.0).float()
    keep = batched_nms(kept_boxes, kept_scores, frame_idx * classes + class_idx, iou)  # by score, descending
    keep = keep[torch.sort(frame_idx[keep], stable=True).indices]  # grouped by frame, best first
    frame_of = frame_idx[keep]
    counts = torch.bincount(frame_of, minlength=n)
    rank = torch.arange(len(keep), device=keep.device) - (torch.cumsum(counts, 0) - counts)[frame_of]
    keep = keep[rank < max_detections]
    frame_of = frame_idx[keep]
    # one copy back to the host: boxes, score, class id and frame of every kept detection
    columns = (kept_boxes[keep], kept_scores[keep, None], class_idx[keep, None] + 1, frame_of[:, None])
    packed = torch.cat([c.to(torch.float32) for c in columns], dim=1).cpu()
    frame_of = packed[:, 6].long()
    scale = torch.tensor([[w, h, w, h] for h, w in sizes], dtype=torch.float32)
    out_boxes, out_scores, out_ids = packed[:, :4] * scale[frame_of], packed[:, 4], packed[:, 5].long()
    per_frame = torch.bincount(frame_of, minlength=n).tolist()
    results = []
    for frame_boxes, frame_scores, frame_ids in zip(
        out_boxes.split(per_frame), out_scores.split(per_frame), out_ids.split(per_frame), strict=True
    ):
        results.append(Detections(frame_boxes, frame_scores, frame_ids, [label(c) for c in frame_ids.tolist()]))
    return results


def prediction_heads(channels: Sequence[int], per_cell: Sequence[int], outputs: int) -> nn.ModuleList:
    """One 3×3 convolution per feature map predicting ``outputs`` values for each of its anchors."""
    return nn.ModuleList(nn.Conv2d(c, n * outputs, 3, padding=1) for c, n in zip(channels, per_cell, strict=True))
