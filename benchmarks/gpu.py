"""CUDA check: the default detector on a GPU in fp32, fp16 and bf16 — agreement with CPU fp32 on real
frames, and model-only speed by batch size; then, where GStreamer is importable, end to end: N streams of
the bundled clip decoded by GStreamer through ``vidpipe.Pipeline`` (batch 32, fp16) for the default model
and SSD300. Needs no GStreamer when ``--frames`` is given (the end-to-end part is then left out, said so).

    python benchmarks/gpu.py [--device cuda] [--frames FRAMES.pt] [--weights WEIGHTS] [--streams 8]
    python benchmarks/gpu.py --device cpu --end-to-end-only --streams 2 --max-frames 64   # on a CPU

``--frames``: a file saved with ``torch.save(list_of_uint8_HxWx3_tensors)``; default: the first 64
frames of the bundled clip, decoded with ``vidpipe.open``.
"""

from __future__ import annotations

import argparse
import time

import torch
from torchvision.ops import box_iou

from vidpipe import models
from vidpipe.errors import ModelError
from vidpipe.models.detections import Detections

# precision: (IoU, |Δscore|) a GPU detection must meet to count as the CPU fp32 detection's partner
TOLERANCES = {"fp32": (0.99, 0.005), "fp16": (0.9, 0.03), "bf16": (0.85, 0.08)}


def agreement(reference: list[Detections], other: list[Detections], iou: float, score: float) -> tuple[int, int]:
    matched = total = 0
    for ref, got in zip(reference, other, strict=True):
        ref = ref[ref.scores >= 0.5]
        total += len(ref)
        if len(ref) and len(got):
            ok = (box_iou(ref.boxes, got.boxes) >= iou) & (ref.class_ids[:, None] == got.class_ids[None])
            ok &= (ref.scores[:, None] - got.scores[None]).abs() <= score
            matched += int(ok.any(1).sum())
    return matched, total


def fps(det: models.Detector, frames: list[torch.Tensor], batch: int, repeats: int = 3) -> float:
    work = (frames * ((batch * 4) // len(frames) + 1))[: max(batch * 4, len(frames))]
    det(work[:batch])
    best = 0.0
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, len(work), batch):
            det(work[i : i + batch])
        torch.cuda.synchronize()
        best = max(best, len(work) / (time.perf_counter() - start))
    return best


def synchronize(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def end_to_end(device: str, streams: int, precision: str, max_frames: int | None = None, weights=None) -> None:
    """N copies of the bundled clip through the whole pipeline (GStreamer decoding, NVIDIA's where it
    has it → batches across streams → detector → results), for the default model and SSD300 (random
    weights), with 1 and 2 batches in flight."""
    try:
        import vidpipe
        from vidpipe.options import StreamOptions, default_batch
    except Exception as exc:  # no GStreamer bindings on this machine
        print(f"\nend to end left out: GStreamer is not importable here ({type(exc).__name__}: {exc})")
        return
    from _common import SAMPLE

    batch = default_batch(device)
    options = StreamOptions(gpu_decode=device.startswith("cuda"), max_frames=max_frames)
    with vidpipe.open(SAMPLE, gpu_decode=options.gpu_decode) as probe:
        print(f"\nend to end: {streams} streams of {SAMPLE.name}, batch {batch}, {precision}")
        print(f"decoding: {probe.decoder} ({probe.decoding.note})")
    for name, extra in (("ssd_mobilenet_v2_coco", {"weights": weights}), ("ssd300", {"random_weights": True})):
        det = models.load(name, device=device, precision=precision, **extra)
        det([torch.zeros((288, 384, 3), dtype=torch.uint8)] * batch)  # warm-up
        for in_flight in (1, 2):
            synchronize(device)
            start = time.perf_counter()
            sources = [(f"s{i}", str(SAMPLE)) for i in range(streams)]
            pipeline = vidpipe.Pipeline(
                detector=det, sources=sources, batch=batch, options=options, in_flight=in_flight
            )
            stats = pipeline.run()
            synchronize(device)
            seconds = time.perf_counter() - start
            rate = stats.frames / seconds
            print(f"{name:<22} in flight {in_flight}: {stats.frames} frames in {seconds:.2f} s: {rate:.1f} FPS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", help="torch.save'd list of uint8 HxWx3 frames")
    parser.add_argument("--weights", help="weights for ssd_mobilenet_v2_coco (default: the bundled graph)")
    parser.add_argument("--streams", type=int, default=8, help="streams of the bundled clip end to end")
    parser.add_argument("--end-to-end-only", action="store_true", help="skip the model-only part")
    parser.add_argument("--max-frames", type=int, help="frames per stream end to end (default: all 1552)")
    args = parser.parse_args()
    precision = "fp16" if args.device.startswith("cuda") else "auto"
    if args.end_to_end_only:
        end_to_end(args.device, args.streams, precision, args.max_frames, args.weights)
        return
    if args.frames:
        frames = torch.load(args.frames)
    else:
        from _common import SAMPLE

        import vidpipe

        with vidpipe.open(SAMPLE) as src:
            frames = [f.tensor for f, _ in zip(src, range(64), strict=False)]
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(args.device)}, {len(frames)} frames")
    reference = models.load("ssd_mobilenet_v2_coco", weights=args.weights, threshold=0.3)(frames)
    print(f"CPU fp32 reference: {sum(len(r[r.scores >= 0.5]) for r in reference)} detections >= 0.5")
    print(
        f"\n{'precision':<9} {'agreement with CPU fp32':<38} " + " ".join(f"{f'b{b} FPS':>9}" for b in (1, 8, 32, 128))
    )
    for precision, (iou, score) in TOLERANCES.items():
        det = models.load("ssd_mobilenet_v2_coco", weights=args.weights, device=args.device, precision=precision,
                          threshold=0.3)  # fmt: skip
        matched, total = agreement(reference, det(frames), iou, score)
        rates = " ".join(f"{fps(det, frames, b):>9.1f}" for b in (1, 8, 32, 128))
        text = f"{matched}/{total} (IoU>={iou}, |dscore|<={score})"
        print(f"{precision:<9} {text:<38} {rates}")
    ssd300 = models.load("ssd300", random_weights=True, device=args.device, precision="fp16")
    print(f"\nssd300 (random weights) fp16: batch 32 {fps(ssd300, frames, 32):.1f} FPS")
    try:
        models.load("ssd_mobilenet_v2_coco", weights=args.weights, precision="fp16")
    except ModelError as exc:
        print(f"fp16 on the CPU refused: {exc}")
    if not args.frames:
        end_to_end(args.device, args.streams, precision, args.max_frames, args.weights)


if __name__ == "__main__":
    main()
