"""The tuning benchmark: the same model, clip and threads, four ways, in one run.

(a) model only: the default detector on frames decoded in advance (preprocess + forward + postprocess)
(b) ``vidpipe detect`` end to end: decode → batch → detect → JSONL, as the CLI runs it
(c) the seed's loop: a pad probe on ``fakesink``, per frame map → numpy copy → ``ToTensor`` → model,
    batch 1, fp32, NCHW (with the real resize and post-processing, so that it finds the same objects)
(d) OpenCV: ``cv2.VideoCapture`` + ``cv2.dnn`` on the same SSD-MobileNetV2 graph
(e) as (b), with the precision ``--precision auto`` chooses on this CPU (bf16 where it computes bf16
    natively, else fp32)
(f) as (e), with ``--backend openvino`` (when OpenVINO is installed)
(g) the defaults (``--backend auto``, ``--precision auto``, no output that draws): frames scaled to the
    model's input inside GStreamer, in the stream's own thread
(h) model only with (g)'s detector, on frames decoded in advance: the backend's own speed

The four run one after the other in each round; prints FPS (best round) and the ratios b/a, b/c, b/d
of the best rounds and the median of the per-round ratios (timings on a shared 2-core machine vary by
±15 % from run to run); ``--chart FILE.png`` draws a bar chart of the best rounds.

    python benchmarks/pipeline.py [--frames 300] [--rounds 5] [--chart docs/pipeline-benchmark.png]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as TF
from _common import SAMPLE, opencv_net

import vidpipe
from vidpipe import models
from vidpipe.gst import Gst
from vidpipe.models.base import Batch
from vidpipe.sinks import JsonlSink


def model_only(det: models.Detector, frames: list[torch.Tensor], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(frames), batch):
        det(frames[i : i + batch])
    return len(frames) / (time.perf_counter() - start)


def vidpipe_detect(det: models.Detector, count: int, batch: int) -> float:
    out = Path(tempfile.gettempdir()) / "vidpipe-bench.jsonl"
    start = time.perf_counter()
    with vidpipe.open(SAMPLE) as src:
        stats = vidpipe.Pipeline(src, det, batch=batch, max_frames=count, sinks=[JsonlSink(out)]).run()
    assert stats.frames == count
    return count / (time.perf_counter() - start)


def vidpipe_defaults(det: models.Detector, count: int, batch: int) -> float:
    """As ``vidpipe detect SAMPLE --json`` runs: the pipeline opens the file itself."""
    out = Path(tempfile.gettempdir()) / "vidpipe-bench.jsonl"
    start = time.perf_counter()
    pipeline = vidpipe.Pipeline(str(SAMPLE), det, batch=batch, max_frames=count, sinks=[JsonlSink(out)])
    stats = pipeline.run()
    assert stats.frames == count
    return count / (time.perf_counter() - start)


def seed_loop(det: models.Detector, count: int) -> float:
    """The original post's structure: all work inside a pad probe on the streaming thread."""
    pipeline = Gst.parse_launch(
        f"filesrc location={SAMPLE} ! decodebin ! videoconvert ! video/x-raw,format=RGB ! fakesink name=s sync=false"
    )
    done = []

    def on_frame_probe(pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        if len(done) >= count:
            return Gst.PadProbeReturn.DROP
        buf = info.get_buffer()
        structure = pad.get_current_caps().get_structure(0)
        height, width = structure.get_value("height"), structure.get_value("width")
        with buf.map(Gst.MapFlags.READ) as mapping:
            image = np.ndarray((height, width, 3), dtype=np.uint8, buffer=mapping.data).copy()
        tensor = TF.to_tensor(image)  # torchvision's ToTensor: CHW float in [0, 1]
        with torch.no_grad():
            x = torch.nn.functional.interpolate(tensor[None], size=(300, 300), mode="bilinear") * 2 - 1
            det.postprocess(det.model(x), Batch(x, [(height, width)]))
        done.append(1)
        return Gst.PadProbeReturn.OK

    pipeline.get_by_name("s").get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, on_frame_probe)
    start = time.perf_counter()
    pipeline.set_state(Gst.State.PLAYING)
    bus = pipeline.get_bus()
    while len(done) < count:
        msg = bus.timed_pop_filtered(10 * Gst.MSECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
        if msg is not None:
            break
    elapsed = time.perf_counter() - start
    pipeline.set_state(Gst.State.NULL)
    return len(done) / elapsed


def opencv_loop(count: int) -> float:
    net = opencv_net()
    start = time.perf_counter()
    capture = cv2.VideoCapture(str(SAMPLE))
    done = 0
    while done < count:
        ok, image = capture.read()
        if not ok:
            break
        height, width = image.shape[:2]
        net.setInput(cv2.dnn.blobFromImage(image, 1.0, (300, 300), swapRB=True))
        out = net.forward()[0, 0]
        out = out[out[:, 2] >= 0.5]
        _ = out[:, 3:7] * [width, height, width, height]
        done += 1
    return done / (time.perf_counter() - start)


def chart(results: dict[str, float], path: Path) -> None:
    from PIL import Image, ImageDraw

    width, bar_h, gap, left = 760, 34, 14, 330
    height = gap + len(results) * (bar_h + gap) + 30
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    top = max(results.values())
    for i, (name, fps) in enumerate(results.items()):
        y = gap + i * (bar_h + gap)
        length = int((width - left - 80) * fps / top)
        draw.rectangle([left, y, left + length, y + bar_h], fill=(56, 110, 220) if i == 1 else (150, 160, 175))
        draw.text((10, y + bar_h // 2 - 6), name, fill="black")
        draw.text((left + length + 8, y + bar_h // 2 - 6), f"{fps:.1f} FPS", fill="black")
    draw.text((10, height - 22), "SSD-MobileNetV2 COCO, 384x288 clip, 2 CPU cores (higher is better)", fill="gray")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--chart", type=Path)
    args = parser.parse_args()
    det = models.load("ssd_mobilenet_v2_coco")
    auto = models.load("ssd_mobilenet_v2_coco", precision="auto")
    seed_det = models.load("ssd_mobilenet_v2_coco", channels_last=False)
    with vidpipe.open(SAMPLE) as src:
        frames = [f.tensor for f, _ in zip(src, range(args.frames), strict=False)]
    det(frames[: args.batch])
    auto(frames[: args.batch])
    try:
        openvino = models.load("ssd_mobilenet_v2_coco", precision="auto", backend="openvino")
        openvino(frames[: args.batch])
    except vidpipe.VidpipeError as exc:
        print(f"(f) left out: {exc}")
        openvino = None
    names = {
        "a": f"(a) model only, batch {args.batch}",
        "b": "(b) vidpipe detect, end to end",
        "c": "(c) seed-style probe loop, batch 1",
        "d": f"(d) OpenCV {cv2.__version__} VideoCapture + dnn",
        "e": f"(e) vidpipe detect, --precision auto ({auto.precision})",
    }
    defaults = models.load("ssd_mobilenet_v2_coco", precision="auto", backend="auto")
    defaults(frames[: args.batch])
    if openvino is not None:
        names["f"] = f"(f) as (e), --backend openvino ({openvino.precision})"
    names["g"] = f"(g) the defaults ({defaults.backend} {defaults.precision})"
    names["h"] = f"(h) model only, {defaults.backend} {defaults.precision}, batch {args.batch}"
    runs = {
        "a": lambda: model_only(det, frames, args.batch),
        "b": lambda: vidpipe_detect(det, args.frames, args.batch),
        "c": lambda: seed_loop(seed_det, args.frames),
        "d": lambda: opencv_loop(args.frames),
        "e": lambda: vidpipe_detect(auto, args.frames, args.batch),
    }
    if openvino is not None:
        runs["f"] = lambda: vidpipe_detect(openvino, args.frames, args.batch)
    runs["g"] = lambda: vidpipe_defaults(defaults, args.frames, args.batch)
    runs["h"] = lambda: model_only(defaults, frames, args.batch)
    rates: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(args.rounds):
        for key, run in runs.items():
            rates[key].append(run())
    best = {key: max(values) for key, values in rates.items()}
    print(f"{args.frames} frames of the bundled clip, {torch.get_num_threads()} torch threads, best of {args.rounds}\n")
    for key, name in names.items():
        rounds = ", ".join(f"{v:.1f}" for v in rates[key])
        print(f"{name:<42} {best[key]:7.1f} FPS   (rounds: {rounds})")
    b = best["b"]
    print(
        f"\nbest rounds:             b/a = {b / best['a']:.2f}   b/c = {b / best['c']:.2f}   b/d = {b / best['d']:.2f}"
    )
    ratios = {k: statistics.median(rb / ro for rb, ro in zip(rates["b"], rates[k], strict=True)) for k in "acd"}
    print(f"median of round ratios:  b/a = {ratios['a']:.2f}   b/c = {ratios['c']:.2f}   b/d = {ratios['d']:.2f}")
    print(f"precision auto ({auto.precision_reason}): e/b = {best['e'] / b:.2f}")
    if "f" in best:
        print(f"--backend openvino: f/b = {best['f'] / b:.2f}, f/e = {best['f'] / best['e']:.2f}")
    g = {k: statistics.median(rg / ro for rg, ro in zip(rates["g"], rates[k], strict=True)) for k in "eh"}
    print(f"the defaults: g/e = {best['g'] / best['e']:.2f} (median of rounds {g['e']:.2f}; e was the default "
          f"before --backend auto), g/h = {best['g'] / best['h']:.2f} (median {g['h']:.2f})")  # fmt: skip
    if args.chart:
        chart({names[k]: best[k] for k in names}, args.chart)
        print(f"chart: {args.chart}")


if __name__ == "__main__":
    main()
