"""SSD box selection for a batch: one batched NMS over (frame, class) groups against a loop of per-frame
NMS calls (what vidpipe did before), on real model outputs for frames of the bundled clip.

Prints ms per frame of the selection step alone (threshold 0.5, IoU 0.6, at most 100 per frame), best
of 5 passes of 20 calls, at batch 4 and 32. On a GPU the batched form also saves a host
synchronisation per frame.

    python benchmarks/postprocess.py [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import SAMPLE

import vidpipe
from vidpipe import models
from vidpipe.models.boxes import decode_center_size, multiclass_nms, select_per_frame
from vidpipe.models.ssd_mobilenet_v2 import BOX_SCALES
from vidpipe.types import Detections


def per_frame(det, boxes, scores, sizes) -> list[Detections]:
    out = []
    for i, (h, w) in enumerate(sizes):
        b, s, c = multiclass_nms(boxes[i].clamp(0, 1), scores[i], threshold=0.5, iou=0.6, max_detections=100)
        b, ids = (b * b.new_tensor([w, h, w, h])).cpu(), (c + 1).cpu()
        out.append(Detections(b, s.cpu(), ids, [det.label(x) for x in ids.tolist()]))
    return out


def best_ms(fn, frames: int) -> float:
    fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(20):
            fn()
        best = min(best, (time.perf_counter() - start) / 20 / frames * 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    det = models.load("ssd_mobilenet_v2_coco", device=args.device)
    with vidpipe.open(SAMPLE) as src:
        frames = [f.tensor for f, _ in zip(src, range(264), strict=False)][200:]
    for n in (4, 32):
        batch = det.preprocess(frames[:n])
        codes, logits = (t.float() for t in det.forward(batch))
        boxes = decode_center_size(codes[..., [1, 0, 3, 2]], det.anchors, BOX_SCALES)
        scores = torch.sigmoid(logits[..., 1:])

        def old(boxes=boxes, scores=scores, sizes=batch.sizes):
            return per_frame(det, boxes, scores, sizes)

        def new(boxes=boxes, scores=scores, sizes=batch.sizes):
            return select_per_frame(boxes, scores, sizes, threshold=0.5, iou=0.6, max_detections=100, label=det.label)

        old, new = best_ms(old, n), best_ms(new, n)
        print(f"batch {n:>2}: per-frame NMS {old:.3f} ms/frame, batched {new:.3f} ms/frame, ratio {old / new:.2f}")


if __name__ == "__main__":
    main()
