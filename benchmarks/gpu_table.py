"""The device check as one table (run by ``benchmarks/gpu_on_device.sh``; rows in Markdown, to paste into
docs/performance.md): the model alone per precision, layout and batch (FPS, agreement with CPU fp32 on
real frames), then ``vidpipe detect`` as a user runs it on 1, 8 and 32 streams of the bundled clip, with
NVIDIA decoding and with software decoding (``VIDPIPE_NVDEC=0``): decoder used, FPS, latency. Everything
runs against a deadline (``--budget`` seconds); what does not fit is said, not run.

    python benchmarks/gpu_table.py [--device cuda] [--weights W] [--budget 280]
    python benchmarks/gpu_table.py --device cpu      # a few frames of each part: checks the script (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from vidpipe import models

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "media" / "sample.mp4"
# precision: (IoU, |Δscore|) a detection must meet to count as the CPU fp32 detection's partner (gpu.py's)
TOLERANCES = {"fp32": (0.99, 0.005), "fp16": (0.9, 0.03), "bf16": (0.85, 0.08)}
PLANS = {
    "cuda": {
        "precisions": ("fp32", "fp16", "bf16"),
        "layouts": ("nchw", "nhwc"),
        "batches": (1, 8, 32, 128),
        "frames": 64,
        "repeats": 2,
        "runs": ((1, None), (8, 400), (32, 200)),  # (streams, --max-frames per stream)
        "decoders": ("nvdec", "software"),
        "run_timeout": 90.0,
    },
    "cpu": {
        "precisions": ("fp32",),
        "layouts": ("nhwc",),
        "batches": (1, 4),
        "frames": 4,
        "repeats": 1,
        "runs": ((1, 4), (2, 4)),
        "decoders": ("software",),
        "run_timeout": 60.0,
    },
}


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def agreement(reference, other, iou: float, score: float) -> tuple[int, int]:
    """CPU fp32 detections (score >= 0.5) with a partner in ``other``: same class, IoU and score close."""
    from torchvision.ops import box_iou

    matched = total = 0
    for ref, got in zip(reference, other, strict=True):
        ref = ref[ref.scores >= 0.5]
        total += len(ref)
        if len(ref) and len(got):
            ok = (box_iou(ref.boxes, got.boxes) >= iou) & (ref.class_ids[:, None] == got.class_ids[None])
            ok &= (ref.scores[:, None] - got.scores[None]).abs() <= score
            matched += int(ok.any(1).sum())
    return matched, total


def fps(det, frames: list[torch.Tensor], batch: int, repeats: int, device: str) -> float:
    """Frames per second of ``det`` called batch by batch on uint8 host frames (best of ``repeats``)."""
    work = (frames * ((batch * 2) // len(frames) + 1))[: max(batch * 2, len(frames))]
    work = work[: len(work) - len(work) % batch] or work[:batch]
    det(work[:batch])  # warm-up of this shape
    best = 0.0
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        for i in range(0, len(work), batch):
            det(work[i : i + batch])
        synchronize(device)
        best = max(best, len(work) / (time.perf_counter() - start))
    return best


def model_only(args, plan: dict, frames: list[torch.Tensor], deadline: float) -> None:
    reference = models.load("ssd_mobilenet_v2_coco", weights=args.weights, threshold=0.3)(frames)
    found = sum(len(r[r.scores >= 0.5]) for r in reference)
    print(f"\nmodel only: ssd_mobilenet_v2_coco called on {len(frames)} frames of the clip (uint8, host memory)")
    print(f"CPU fp32 reference: {found} detections >= 0.5\n")
    batches = plan["batches"]
    print("| precision | layout | agreement with CPU fp32 | " + " | ".join(f"batch {b}" for b in batches) + " |")
    print("|---|---|---|" + "---|" * len(batches))
    for precision in plan["precisions"]:
        for layout in plan["layouts"]:
            if time.monotonic() > deadline:
                print(f"| {precision} | {layout} | out of time | " + " | ".join("-" for _ in batches) + " |")
                continue
            try:
                det = models.load("ssd_mobilenet_v2_coco", weights=args.weights, device=args.device,
                                  precision=precision, threshold=0.3, channels_last=layout == "nhwc")  # fmt: skip
            except Exception as exc:  # (bf16 on a GPU without it, ...)
                print(f"| {precision} | {layout} | not run: {exc} | " + " | ".join("-" for _ in batches) + " |")
                continue
            iou, score = TOLERANCES[precision]
            matched, total = agreement(reference, det(frames), iou, score)
            rates = []
            for batch in batches:
                if time.monotonic() > deadline:
                    rates.append("out of time")
                    continue
                rates.append(f"{fps(det, frames, batch, plan['repeats'], args.device):,.0f}")
            text = f"{matched}/{total} (IoU >= {iou}, dscore <= {score})"
            print(f"| {precision} | {layout} | {text} | " + " | ".join(rates) + " |", flush=True)
            del det


def network_only(args, deadline: float) -> None:
    """The network alone on a fixed input (no pre/post), eager with and without cuDNN's autotuning and
    replayed from a CUDA graph: whether graphs or ``cudnn.benchmark`` per fixed batch size pay (CUDA only)."""
    print("\nnetwork only (ms per batch, fixed input): eager | eager, cudnn.benchmark | CUDA graph\n")
    print("| precision | layout | batch | eager | cudnn.benchmark | CUDA graph |")
    print("|---|---|---|---|---|---|")

    def timed(step, rounds: int = 20) -> float:
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(rounds):
            step()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / rounds * 1000

    for precision, layout in (("fp32", "nchw"), ("bf16", "nhwc"), ("fp16", "nhwc")):
        det = models.load("ssd_mobilenet_v2_coco", weights=args.weights, device=args.device, precision=precision,
                          channels_last=layout == "nhwc")  # fmt: skip
        for batch in (8, 32, 128):
            if time.monotonic() > deadline:
                print(f"| {precision} | {layout} | {batch} | out of time | | |")
                continue
            images = det.to_input(torch.rand((batch, 3, 300, 300), device=args.device) * 2 - 1)
            cells = []
            with torch.inference_mode():
                for autotune in (False, True):
                    torch.backends.cudnn.benchmark = autotune
                    cells.append(f"{timed(partial(det.model, images)):.2f}")
                torch.backends.cudnn.benchmark = False
                try:
                    stream = torch.cuda.Stream()
                    stream.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(stream):
                        for _ in range(3):
                            det.model(images)
                    torch.cuda.current_stream().wait_stream(stream)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        det.model(images)
                    cells.append(f"{timed(graph.replay):.2f}")
                except Exception as exc:  # (a model that cannot be captured)
                    cells.append(f"failed: {type(exc).__name__}")
            print(f"| {precision} | {layout} | {batch} | " + " | ".join(cells) + " |", flush=True)


def cli_run(args, streams: int, max_frames: int | None, decoder: str, timeout: float) -> dict:
    """``vidpipe detect`` on ``streams`` copies of the clip, in a fresh process as a user runs it."""
    env = dict(os.environ)
    if decoder == "software":
        env["VIDPIPE_NVDEC"] = "0"
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        command = [sys.executable, "-m", "vidpipe", "detect", *[f"s{i}={SAMPLE}" for i in range(streams)]]
        command += ["--device", args.device, "--summary", str(summary)]
        if max_frames is not None:
            command += ["--max-frames", str(max_frames)]
        if args.weights:
            command += ["--weights", args.weights]
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        seconds = time.perf_counter() - start
        if done.returncode != 0 or not summary.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return {"error": f"exit {done.returncode}: {last}"}
        record = json.loads(summary.read_text())
    decoding = re.search(r"^decoding\s+(\S+)", done.stderr, re.M)
    latencies = [s["latency_ms"] for s in record["streams"].values() if s.get("latency_ms")]
    model = re.search(r"^model\s+(.*)$", done.stderr, re.M)
    return {
        "decoder": decoding.group(1) if decoding else "software (CPU run)",
        "frames": record["frames"],
        "fps": record["fps"],
        "p50": statistics.median(lat["p50"] for lat in latencies) if latencies else None,
        "p95": max(lat["p95"] for lat in latencies) if latencies else None,
        "inference_p95": record["latency_ms"]["inference"]["p95"],
        "seconds": seconds,
        "model": model.group(1) if model else "",
    }


def end_to_end(args, plan: dict, deadline: float) -> None:
    print(f"\nthe CLI: vidpipe detect on N streams of {SAMPLE.name} --device {args.device} (defaults otherwise)\n")
    print("| streams | frames/stream | decoding asked | decoder used | frames | FPS | stream latency p50 / p95 ms "
          "| inference p95 ms/frame | process s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    models_seen = set()
    for streams, max_frames in plan["runs"]:
        for decoder in plan["decoders"]:
            per_stream = "all" if max_frames is None else str(max_frames)
            left = deadline - time.monotonic()
            if left < 10:
                print(f"| {streams} | {per_stream} | {decoder} | out of time | | | | | |", flush=True)
                continue
            got = cli_run(args, streams, max_frames, decoder, min(plan["run_timeout"], left))
            if "error" in got:
                print(f"| {streams} | {per_stream} | {decoder} | failed: {got['error']} | | | | | |", flush=True)
                continue
            models_seen.add(got["model"])
            latency = "-" if got["p50"] is None else f"{got['p50']:,.0f} / {got['p95']:,.0f}"
            print(
                f"| {streams} | {per_stream} | {decoder} | {got['decoder']} | {got['frames']} | {got['fps']:,.1f} "
                f"| {latency} | {got['inference_p95']:.2f} | {got['seconds']:.1f} |",
                flush=True,
            )
    for model in sorted(models_seen):
        print(f"\nmodel line of the runs: {model}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the device check) or cpu (the script's own check)")
    parser.add_argument("--weights", help="weights of ssd_mobilenet_v2_coco (default: the bundled graph)")
    parser.add_argument("--budget", type=float, default=280.0, help="seconds for the whole table")
    parser.add_argument("--skip-model", action="store_true", help="leave out the model-only part")
    args = parser.parse_args()
    deadline = time.monotonic() + args.budget
    plan = PLANS["cpu" if args.device == "cpu" else "cuda"]
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"device check: {name}, torch {torch.__version__}, budget {args.budget:.0f} s")
    try:
        import vidpipe
        from vidpipe.gst import Gst
        from vidpipe.gst.decoders import nvidia_decoding
    except Exception as exc:  # no GStreamer bindings: the model-only part on generated frames
        print(f"GStreamer: not importable ({type(exc).__name__}: {exc}); the CLI part is left out")
        frames = [torch.randint(0, 256, (288, 384, 3), dtype=torch.uint8) for _ in range(plan["frames"])]
        if not args.skip_model:
            model_only(args, plan, frames, deadline)
        return
    print(f"GStreamer {Gst.version_string()}")
    if args.device.startswith("cuda"):
        print(f"decoder check: {nvidia_decoding().note}")
    with vidpipe.open(SAMPLE) as src:
        frames = [f.tensor for f, _ in zip(src, range(plan["frames"]), strict=False)]
    if not args.skip_model:
        model_only(args, plan, frames, deadline - 150 if args.device.startswith("cuda") else deadline)
    end_to_end(args, plan, deadline - 30 if args.device.startswith("cuda") else deadline)
    if args.device.startswith("cuda") and not args.skip_model:
        network_only(args, deadline)
    print(f"\ndone in {args.budget - (deadline - time.monotonic()):.0f} s")


if __name__ == "__main__":
    main()
