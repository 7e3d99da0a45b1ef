"""Detections: one typed result per frame that every sink accepts (defined in :mod:`vidpipe.types`), and
the check that a model's detections are safe to hand on (finite, inside their frame)."""

from collections.abc import Sequence

import torch

from ..types import Detections

__all__ = ["Detections", "all_safe", "sanitize"]


def sanitize(found: Detections, size: tuple[int, int]) -> tuple[Detections, int]:
    """``found`` without detections whose box or score is not finite, boxes clipped to a frame of
    ``size`` = (h, w) with ordered corners, as float32; and how many were dropped."""
    if len(found) == 0:
        return found, 0
    boxes, scores = found.boxes.float(), found.scores.float()
    finite = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
    dropped = len(found) - int(finite.sum())
    if dropped:
        found = found[finite]
        boxes, scores = boxes[finite], scores[finite]
    height, width = size
    xs, ys = boxes[:, 0::2].clamp(0, width), boxes[:, 1::2].clamp(0, height)
    ordered = torch.stack((xs.min(1).values, ys.min(1).values, xs.max(1).values, ys.max(1).values), dim=1)
    if dropped or not torch.equal(ordered, found.boxes) or found.scores.dtype != torch.float32:
        found = Detections(ordered, scores, found.class_ids, found.labels, found.track_ids)
    return found, dropped


def all_safe(found: Sequence[Detections], sizes: Sequence[tuple[int, int]]) -> bool:
    """Whether :func:`sanitize` would leave every frame's detections as they are (float32, finite
    scores, boxes inside their frame of (h, w) ``sizes`` with ordered corners): one check for a whole
    batch instead of a few tensor operations per frame (measured: 0.7 ms per frame on 2 busy cores)."""
    present = [(d, size) for d, size in zip(found, sizes, strict=True) if len(d)]
    if not present:
        return True
    if any(d.boxes.dtype != torch.float32 or d.scores.dtype != torch.float32 for d, _ in present):
        return False
    boxes = torch.cat([d.boxes for d, _ in present])
    scores = torch.cat([d.scores for d, _ in present])
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        return False
    counts = torch.tensor([len(d) for d, _ in present], device=boxes.device)
    limits = torch.tensor([(w, h) for _, (h, w) in present], dtype=torch.float32, device=boxes.device)
    limits = limits.repeat_interleave(counts, dim=0)
    x1, y1, x2, y2 = boxes.unbind(1)  # (NaN and infinities fail the comparisons)
    ok = (x1 >= 0) & (y1 >= 0) & (x1 <= x2) & (y1 <= y2) & (x2 <= limits[:, 0]) & (y2 <= limits[:, 1])
    return bool(ok.all() & torch.isfinite(scores).all())
