"""Frames that stay on the GPU, measured before a source uses them (issue 31): the bundled clip decoded by
NVIDIA's decoder and converted to RGB by ``cudaconvertscale``, then into PyTorch two ways, in one run:

(a) **handoff**: the RGB frame stays in CUDA memory and is copied device to device into a PyTorch tensor
    (:class:`vidpipe.gst.cuda.FrameCopier`), GStreamer working in PyTorch's CUDA context
    (:func:`vidpipe.gst.cuda.share_torch_context`);
(b) **download**: ``cudadownload`` to system memory, the one host copy vidpipe's sources make today, and
    the upload PyTorch does (pinned, as the batch does);
(c) (a) without the shared context, to learn whether sharing it is needed (in its own process: a kernel
    reading another context's memory may break that process's CUDA).

Each prints frames, FPS, and whether its frames equal (b)'s, pixel for pixel. Every variant runs in a
child process with a timeout; a failure is one line. ``--device cpu`` runs the same code on this
machine's software decoder and system memory (the mapping and the copy; no handoff to measure).

    python benchmarks/gpu_handoff.py [--device cuda] [--frames 600] [--size 300x300]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "media" / "sample.mp4"
VARIANTS = {
    "cuda": ("download", "handoff", "handoff, own context"),
    "cpu": ("download", "handoff"),
}


def description(variant: str, cuda: bool, size: str | None) -> str:
    scale = ""
    if size:
        width, height = size.split("x")
        scale = f",width={width},height={height}"
    if not cuda:  # (this machine: software decoding, the same mapping on system memory)
        return (f"filesrc location={SAMPLE} ! qtdemux ! h264parse ! avdec_h264 ! videoconvertscale "
                f"! video/x-raw,format=RGB{scale} ! appsink name=sink sync=false max-buffers=8")  # fmt: skip
    tail = "" if variant.startswith("handoff") else " ! cudadownload ! video/x-raw,format=RGB"
    return (
        f"filesrc location={SAMPLE} ! qtdemux ! h264parse ! nvh264dec ! cudaupload ! cudaconvertscale "
        f"! video/x-raw(memory:CUDAMemory),format=RGB{scale}{tail} ! appsink name=sink sync=false max-buffers=8"
    )


def run_variant(variant: str, device: str, frames: int, size: str | None, out: Path) -> dict:
    """One variant in this process: frames pulled, copied into tensors on ``device``, timed; the frames'
    checksums saved to ``out`` for the comparison."""
    import torch

    from vidpipe.gst import Gst
    from vidpipe.gst.buffers import BufferReader
    from vidpipe.gst.cuda import FrameCopier, share_torch_context

    cuda = device.startswith("cuda")
    pipeline = Gst.parse_launch(description(variant, cuda, size))
    if cuda and variant == "handoff":
        share_torch_context(pipeline, device)
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    sums, copier, reader, count, start = [], None, None, 0, None
    try:
        while count < frames:
            sample = sink.try_pull_sample(10 * Gst.SECOND)
            if sample is None:
                break
            buffer = sample.get_buffer()
            if start is None:  # (the clock starts at the first frame: caps negotiated, contexts made)
                start = time.perf_counter()
            if variant.startswith("handoff"):
                copier = copier or FrameCopier(sample.get_caps(), device)
                tensor = copier.to_tensor(buffer)
            else:
                reader = reader or BufferReader(sample.get_caps())
                tensor = reader.to_tensor(buffer).pin_memory().to(device, non_blocking=True) if cuda else (
                    reader.to_tensor(buffer))  # fmt: skip
            sums.append(int(tensor.sum(dtype=torch.int64)))  # (also waits for the copy)
            count += 1
        error = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
        if count == 0:
            why = error.parse_error()[0].message if error is not None else "no frame came out"
            return {"error": why}
    finally:
        pipeline.set_state(Gst.State.NULL)
    seconds = time.perf_counter() - start
    out.write_text(json.dumps(sums))
    return {"frames": count, "fps": (count - 1) / seconds if seconds > 0 and count > 1 else 0.0}


def child(args: argparse.Namespace, variant: str, out: Path) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--device", args.device, "--frames", str(args.frames),
               "--out", str(out)] + (["--size", args.size] if args.size else [])  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {last}"}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--size", help="WxH the converter scales to (default: the clip's own size)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds each variant may take")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child:
        try:
            print(json.dumps(run_variant(args.child, args.device, args.frames, args.size, args.out)))
        except Exception as exc:  # (one line for the table, whatever broke)
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return
    import tempfile

    print(f"\nframes into PyTorch on {args.device}: {SAMPLE.name}, {args.size or 'own size'}, {args.frames} frames\n")
    print("| path | frames | FPS | frames equal to download's |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        sums = {}
        for variant in VARIANTS["cuda" if args.device.startswith("cuda") else "cpu"]:
            out = Path(tmp) / f"{len(sums)}.json"
            got = child(args, variant, out)
            if "error" in got:
                print(f"| {variant} | failed: {got['error']} | | |", flush=True)
                continue
            sums[variant] = json.loads(out.read_text())
            reference = sums.get("download")
            same = "-" if variant == "download" or reference is None else (
                "yes" if sums[variant] == reference[: len(sums[variant])] else "NO")  # fmt: skip
            print(f"| {variant} | {got['frames']} | {got['fps']:,.1f} | {same} |", flush=True)


if __name__ == "__main__":
    main()
