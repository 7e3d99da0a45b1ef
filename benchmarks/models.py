"""Model-only speed: ms/frame and FPS of each built-in model at batch 1/4/8, fp32/bf16, in one run,
next to OpenCV DNN running the same SSD-MobileNetV2 graph.

Frames come from the bundled clip, decoded in advance; the time covers preprocess + forward +
postprocess; best of 3 passes for SSD-MobileNetV2, one pass for SSD300. ``ssd300`` runs with random
weights (same work as NVIDIA's checkpoint, which is not bundled). SSD-MobileNetV2 rows show their
agreement with eager fp32 (detections >= 0.5 matched both ways: same class, IoU >= 0.9, |Δscore| <=
0.03). OpenVINO rows: ``--backend openvino`` fp32 and bf16. ONNX Runtime rows: the default model
through ``vidpipe export`` (one image per run: the graph takes one image of any size), and a YOLOv8n
(the architecture of ``tests/yolo_nets.py``, random weights, a few planted boxes so that NMS does
realistic work) at 640x640 with a dynamic batch.

    python benchmarks/models.py [--frames 32] [--device cpu]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch
from _common import ROOT, SAMPLE, opencv_net

import vidpipe
from vidpipe import models


def load_frames(count: int) -> list[torch.Tensor]:
    with vidpipe.open(SAMPLE) as src:
        return [f.tensor for f, _ in zip(src, range(count), strict=False)]


def detector_fps(det: models.Detector, frames: list[torch.Tensor], batch: int, rounds: int = 1) -> float:
    """Best of ``rounds`` passes over the frames (this machine's timings vary by ±15 % run to run)."""
    det(frames[:batch])  # warm-up
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(0, len(frames), batch):
            det(frames[i : i + batch])
        if det.device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, len(frames) / (time.perf_counter() - start))
    return best


def opencv_fps(frames: list[torch.Tensor]) -> float:
    net = opencv_net()
    images = [f.numpy() for f in frames]
    net.setInput(cv2.dnn.blobFromImage(images[0], 1.0, (300, 300)))
    net.forward()
    start = time.perf_counter()
    for image in images:
        net.setInput(cv2.dnn.blobFromImage(image, 1.0, (300, 300), swapRB=False))
        net.forward()
    return len(images) / (time.perf_counter() - start)


def agreement(reference: list, other: list) -> str:
    """Share of the reference's detections (>= 0.5) that the other finds (same class, IoU >= 0.9,
    |Δscore| <= 0.03), both ways, as in tests/test_models.py."""
    from torchvision.ops import box_iou

    def matched(a, b):
        a = a[a.scores >= 0.5]
        if not len(a) or not len(b):
            return 0, len(a)
        ok = (box_iou(a.boxes, b.boxes) >= 0.9) & (a.class_ids[:, None] == b.class_ids[None])
        ok &= (a.scores[:, None] - b.scores[None]).abs() <= 0.03
        return int(ok.any(1).sum()), len(a)

    fwd = [matched(a, b) for a, b in zip(reference, other, strict=True)]
    bwd = [matched(b, a) for a, b in zip(reference, other, strict=True)]
    f, b = (sum(m for m, _ in x) / max(1, sum(n for _, n in x)) for x in (fwd, bwd))
    return f"{f * 100:.0f} % / {b * 100:.0f} %"


def openvino_rows(frames: list[torch.Tensor]) -> None:
    try:
        import openvino  # noqa: F401
    except ImportError:
        print("(OpenVINO rows left out: openvino is not installed)")
        return
    eager = models.load("ssd_mobilenet_v2_coco", precision="fp32", threshold=0.47)
    reference = eager(frames)
    for precision in ("fp32", "bf16"):
        det = models.load("ssd_mobilenet_v2_coco", backend="openvino", precision=precision, threshold=0.47)
        same = agreement(reference, det(frames))
        for batch in (1, 4, 8):
            fps = detector_fps(det, frames, batch, 3)
            label = "ssd_mobilenet_v2_coco (OpenVINO)"
            print(f"{label:<34} {precision:<9} {'NCHW':<13} {batch:>5} {1000 / fps:>9.1f} {fps:>7.1f}   "
                  f"agreement {same}")  # fmt: skip


def onnx_rows(frames: list[torch.Tensor]) -> None:
    from vidpipe.models.export import export_onnx

    folder = Path(tempfile.mkdtemp(prefix="vidpipe-bench-onnx-"))
    eager = models.load("ssd_mobilenet_v2_coco", precision="fp32", threshold=0.47)
    exported = models.load(str(export_onnx(eager, folder / "ssd.onnx")), threshold=0.47)
    fps = detector_fps(exported, frames, 1, 3)
    same = agreement(eager(frames), exported(frames))
    label = "ssd_mobilenet_v2_coco (ONNX Runtime)"
    print(f"{label:<34} {'fp32':<9} {'NCHW':<13} {1:>5} {1000 / fps:>9.1f} {fps:>7.1f}   agreement {same}")
    sys.path.insert(0, str(ROOT / "tests"))
    import yolo_nets

    torch.manual_seed(0)
    net = yolo_nets.Planted(yolo_nets.YOLOv8n(), [(100, [320, 320, 100, 200] + [0.9] + [0.0] * 79)], "yolo", 0.0)
    yolo = models.load(str(yolo_nets.export(net, folder / "yolov8n.onnx")))
    for batch in (1, 4, 8):
        fps = detector_fps(yolo, frames, batch, 2)
        label = "YOLOv8n 640x640 (ONNX Runtime)"
        print(f"{label:<34} {'fp32':<9} {'NCHW':<13} {batch:>5} {1000 / fps:>9.1f} {fps:>7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    frames = load_frames(args.frames)
    precisions = ("fp32", "bf16") if args.device == "cpu" else ("fp32", "fp16", "bf16")
    print(f"model-only, {len(frames)} frames of 384x288, {torch.get_num_threads()} threads, device {args.device}\n")
    print(f"{'model':<34} {'precision':<9} {'layout':<13} {'batch':>5} {'ms/frame':>9} {'FPS':>7}")
    configs = [("ssd_mobilenet_v2_coco", {}), ("ssd300", {"random_weights": True})]
    for name, options in configs:
        for precision in precisions:
            layouts = (True, False) if name == "ssd_mobilenet_v2_coco" and precision == "fp32" else (None,)
            for channels_last in layouts:
                det = models.load(name, device=args.device, precision=precision, channels_last=channels_last, **options)
                layout = "channels-last" if det.channels_last else "NCHW"
                rounds = 3 if name == "ssd_mobilenet_v2_coco" else 1
                same = ""
                if name == "ssd_mobilenet_v2_coco":
                    reference = models.load(name, precision="fp32", threshold=0.47)(frames)
                    det.threshold = 0.47
                    same = f"   agreement {agreement(reference, det(frames))}"
                    det.threshold = 0.5
                for batch in (1, 4, 8):
                    fps = detector_fps(det, frames, batch, rounds)
                    print(f"{name:<34} {precision:<9} {layout:<13} {batch:>5} {1000 / fps:>9.1f} {fps:>7.1f}{same}")
    if args.device == "cpu":
        det = models.load("ssd_mobilenet_v2_coco")
        threads = torch.get_num_threads()
        for count in sorted({1, threads}):
            torch.set_num_threads(count)
            fps = detector_fps(det, frames, 4, 3)
            print(f"{f'ssd_mobilenet_v2_coco, {count} thread(s)':<34} {'fp32':<9} {'channels-last':<13} {4:>5} "
                  f"{1000 / fps:>9.1f} {fps:>7.1f}")  # fmt: skip
        torch.set_num_threads(threads)
    if args.device == "cpu":
        openvino_rows(frames)
        onnx_rows(frames)
    fps = opencv_fps(frames)
    label = f"OpenCV DNN {cv2.__version__} (same graph)"
    print(f"{label:<34} {'fp32':<9} {'NCHW':<13} {1:>5} {1000 / fps:>9.1f} {fps:>7.1f}")


if __name__ == "__main__":
    main()
