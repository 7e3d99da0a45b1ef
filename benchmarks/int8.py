"""int8 for the default model with OpenVINO NNCF post-training quantisation: does it keep the detections?

vidpipe's ``--precision int8`` is calibrated on the frames it ships (49 frames of the first half of the
bundled clip, ``vidpipe/models/calibration``). This measures, on frames of the clip's second half (never
seen by the calibration), the agreement of int8 with eager PyTorch fp32 — the share of fp32's detections
(score >= 0.5) that int8 finds and the other way round — and its model-only speed (batch 4, vidpipe's
pre- and post-processing) beside OpenVINO bf16 and fp32.

Agreement (fp32→int8 / int8→fp32) is counted three ways: ``strict`` (same class, IoU >= 0.9, |Δscore| <=
0.03: the bar of benchmarks/models.py), ``bf16 test bar`` (IoU >= 0.85, |Δscore| <= 0.08: what
tests/test_openvino.py asks of bf16) and ``detection`` (same class, IoU >= 0.5: the usual
detection-matching rule). ``--variants`` adds PTQ with the box/class heads kept in floating point.

    python benchmarks/int8.py [--test 400] [--variants]
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch
from _common import SAMPLE

import vidpipe
from vidpipe import models
from vidpipe.models.base import Batch


def frames_of(start: int, stop: int, count: int) -> list[torch.Tensor]:
    step = max(1, (stop - start) // count)
    keep = set(range(start, stop, step)[:count])
    with vidpipe.open(SAMPLE) as src:
        return [f.tensor.clone() for f in src if f.index in keep]


def matched(a, b, iou: float, score: float | None) -> tuple[int, int]:
    from torchvision.ops import box_iou

    a = a[a.scores >= 0.5]
    if not len(a) or not len(b):
        return 0, len(a)
    ok = (box_iou(a.boxes, b.boxes) >= iou) & (a.class_ids[:, None] == b.class_ids[None])
    if score is not None:
        ok &= (a.scores[:, None] - b.scores[None]).abs() <= score
    return int(ok.any(1).sum()), len(a)


def agreement(reference: list, other: list, iou: float, score: float | None) -> tuple[float, float]:
    fwd = [matched(a, b, iou, score) for a, b in zip(reference, other, strict=True)]
    bwd = [matched(b, a, iou, score) for a, b in zip(reference, other, strict=True)]
    return tuple(sum(m for m, _ in x) / max(1, sum(n for _, n in x)) for x in (fwd, bwd))  # type: ignore[return-value]


def inputs_of(det, frames: list[torch.Tensor]) -> list[np.ndarray]:
    return [det.preprocess([f]).images.float().numpy() for f in frames]


def run_compiled(det, compiled, frames: list[torch.Tensor], batch: int = 4) -> list:
    request = compiled.create_infer_request()
    found = []
    for i in range(0, len(frames), batch):
        b = det.preprocess(frames[i : i + batch])
        request.infer({0: b.images.float().contiguous().numpy()})
        outputs = tuple(torch.from_numpy(t.data.copy()) for t in request.output_tensors)
        found.extend(det.results(outputs, Batch(b.images, b.sizes)))
    return found


def fps_of(det, compiled, frames: list[torch.Tensor], rounds: int = 3) -> float:
    run_compiled(det, compiled, frames[:8])
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        run_compiled(det, compiled, frames)
        best = max(best, len(frames) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", type=int, default=400, help="frames of the clip's second half to test on")
    parser.add_argument("--variants", action="store_true", help="also the variants vidpipe does not use")
    args = parser.parse_args()
    logging.getLogger("nncf").setLevel(logging.ERROR)
    from vidpipe.models.openvino_backend import calibration_frames

    total = 1552
    calib = calibration_frames()
    test = frames_of(total // 2, total, args.test)
    eager = models.load("ssd_mobilenet_v2_coco", precision="fp32", threshold=0.3)
    ref_test = eager(test)
    rows = []
    for precision in ("fp32", "bf16", "int8"):
        started = time.perf_counter()
        det = models.load("ssd_mobilenet_v2_coco", backend="openvino", precision=precision, threshold=0.3)
        label = f"OpenVINO {precision}" + (" (vidpipe's --precision int8)" if precision == "int8" else "")
        if det.converted is not None:
            print(f"{label}: converted in {time.perf_counter() - started:.1f} s", flush=True)
        rows.append((label, det, det.model.compiled))
    if args.variants:
        import nncf
        import openvino as ov

        det = rows[0][1]
        core = ov.Core()
        fp_model = core.read_model(str(det.model.path))
        inputs = inputs_of(det, calib)
        ops = [op.get_friendly_name() for op in fp_model.get_ordered_ops() if op.get_type_name() == "Convolution"]
        heads = [name for name in ops if "head" in name.lower()]
        kept = nncf.quantize(
            fp_model, nncf.Dataset(inputs), preset=nncf.QuantizationPreset.MIXED, subset_size=len(inputs),
            ignored_scope=nncf.IgnoredScope(names=heads),
        )  # fmt: skip
        config = {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": 2}
        rows.append((f"int8, {len(heads)} head convolutions in bf16", det, core.compile_model(kept, "CPU", config)))
    print(
        f"\n{len(calib)} calibration frames (shipped: the clip's first half), {len(test)} test frames (its second"
        f" half); {sum(len(r[r.scores >= 0.5]) for r in ref_test)} fp32 detections >= 0.5 in the test frames"
    )
    print(f"{'variant':<46} {'FPS b4':>7} {'strict':>17} {'bf16 test bar':>17} {'detection':>17}")
    for name, det, compiled in rows:
        found = run_compiled(det, compiled, test)
        cells = [agreement(ref_test, found, *rule) for rule in ((0.9, 0.03), (0.85, 0.08), (0.5, None))]
        fps = fps_of(det, compiled, test)
        text = " ".join(f"{a * 100:>7.1f}/{b * 100:>5.1f} %" for a, b in cells)
        print(f"{name:<46} {fps:>7.1f} {text}", flush=True)


if __name__ == "__main__":
    main()
