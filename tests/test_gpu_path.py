"""The GPU path's logic, tested without a GPU: fixed batch shapes and warm-up, continuous batching, the
precision table, the decoder check and its fallback, and the device script's CPU mode. CUDA-only
decisions are faked (``wants_fixed_shapes``, ``continuous_batching``) to run the same code on the CPU."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import vidpipe
from vidpipe import models
from vidpipe.cli.detect import decoding_summary, model_summary
from vidpipe.gst import decoders
from vidpipe.models import base
from vidpipe.models.base import batch_shapes, padded_size
from vidpipe.models.detections import Detections, all_safe, sanitize
from vidpipe.options import FILE_QUEUE
from vidpipe.pipeline import engine
from vidpipe.pipeline.batcher import Batcher, End
from vidpipe.pipeline.engine import Engine
from vidpipe.pipeline.inflight import InFlight, continuous_batching
from vidpipe.pipeline.stats import Stats, StreamStats
from vidpipe.types import Frame


@pytest.fixture(scope="module")
def detector():
    return models.load("ssd_mobilenet_v2_coco")


@pytest.fixture(scope="module")
def footage(sample):
    """Every 60th frame of the bundled clip."""
    with vidpipe.open(sample) as src:
        return [f.tensor for f in src if f.index % 60 == 0][:12]


def _network_batches(det, monkeypatch) -> list[int]:
    """The batch sizes the detector's network is called with, from here on."""
    seen: list[int] = []
    forward = type(det).forward

    def counting(self, batch):
        seen.append(int(batch.images.shape[0]))
        return forward(self, batch)

    monkeypatch.setattr(type(det), "forward", counting)
    return seen


# -- fixed batch shapes and warm-up ----------------------------------------------------------------------------


def test_batch_shapes_are_powers_of_two_up_to_the_batch():
    assert batch_shapes(32) == (1, 2, 4, 8, 16, 32)
    assert batch_shapes(12) == (1, 2, 4, 8, 12)
    assert batch_shapes(1) == (1,)
    assert batch_shapes(2) == (1, 2)
    shapes = batch_shapes(32)
    assert [padded_size(n, shapes) for n in (1, 2, 3, 5, 9, 17, 31, 32)] == [1, 2, 4, 8, 16, 32, 32, 32]
    assert padded_size(40, shapes) == 40  # above every shape: as it is
    assert padded_size(5, ()) == 5
    with pytest.raises(vidpipe.errors.ModelError):
        batch_shapes(0)


def test_fixed_shapes_only_on_cuda():
    assert base.wants_fixed_shapes(torch.device("cuda")) is True
    assert base.wants_fixed_shapes(torch.device("cpu")) is False


def test_warm_up_runs_each_shape_once_and_padding_changes_no_detection(footage, monkeypatch):
    det = models.load("ssd_mobilenet_v2_coco")
    expected = det(footage[:5])
    assert det.prepare(8) == 0.0 and det.shapes == ()  # on the CPU: nothing fixed, nothing warmed
    seen = _network_batches(det, monkeypatch)
    assert det.prepare(8, fixed=True) > 0  # the CUDA path, forced
    assert seen == [1, 2, 4, 8] and det.shapes == (1, 2, 4, 8)
    assert det.prepare(8, fixed=True) == 0.0 and seen == [1, 2, 4, 8]  # once per batch size
    assert "batches padded to 1, 2, 4, 8, each warmed up before the run" in model_summary(det)
    seen.clear()
    found = det(footage[:5])  # 5 frames run as 8, the 3 blank ones' results dropped
    assert seen == [8] and len(found) == 5
    for a, b in zip(expected, found, strict=True):
        assert torch.equal(a.class_ids, b.class_ids)
        assert torch.allclose(a.boxes, b.boxes, atol=1e-3) and torch.allclose(a.scores, b.scores, atol=1e-4)


def test_padding_keeps_the_memory_layout(detector):
    det = models.load("ssd_mobilenet_v2_coco")
    det.shapes = (1, 2, 4)
    batch = det.preprocess([torch.zeros((30, 40, 3), dtype=torch.uint8)] * 3)
    padded = det.pad(batch)
    assert padded.images.shape[0] == 4 and padded.sizes == batch.sizes
    assert padded.images.is_contiguous(memory_format=torch.channels_last) == det.channels_last
    assert torch.equal(padded.images[:3], batch.images) and not padded.images[3].any()


def test_a_pipeline_on_cuda_warms_up_before_its_clock_starts(sample, footage, monkeypatch):
    """With CUDA's decisions faked: the pipeline warms every shape before its clock starts, then runs
    only those shapes, continuously batched; the detections are those of a CPU run."""
    reference = vidpipe.Pipeline(sample, models.load("ssd_mobilenet_v2_coco"), batch=4, max_frames=7)
    plain = [len(r.detections) for r in reference]
    monkeypatch.setattr(base, "wants_fixed_shapes", lambda device: True)
    monkeypatch.setattr(engine, "continuous_batching", lambda device: True)
    det = models.load("ssd_mobilenet_v2_coco")
    seen = _network_batches(det, monkeypatch)
    pipeline = vidpipe.Pipeline(sample, det, batch=4, max_frames=7)
    counts = [len(r.detections) for r in pipeline]
    assert counts == plain
    assert seen[:3] == [1, 2, 4] and set(seen) <= {1, 2, 4}  # warm-up first, then fixed shapes only
    assert det.warmed is not None


# -- continuous batching ---------------------------------------------------------------------------------------


def _frame(stream: str, index: int) -> Frame:
    return Frame(torch.zeros((24, 32, 3), dtype=torch.uint8), index, index / 30, stream=stream, wall=time.time())


def _file_batcher(batch: int, max_wait: float, capacity: int = FILE_QUEUE) -> Batcher:
    batcher = Batcher(batch=batch, max_wait=max_wait, abandon=threading.Event())
    batcher.add_stream(StreamStats("f"))
    batcher.configure("f", live=False, max_latency=None, capacity=capacity)
    return batcher


def test_continuous_batching_only_on_cuda(detector):
    assert continuous_batching(torch.device("cuda")) and not continuous_batching(torch.device("cpu"))
    assert Engine(detector, 1, Stats()).continuous is False  # the CPU keeps waiting for full batches


def test_a_files_queue_holds_a_batch_and_an_idle_device_takes_what_is_queued():
    batcher = _file_batcher(batch=32, max_wait=5.0, capacity=8)
    for i in range(20):  # a file's queue holds a whole batch, not 8 frames
        assert batcher.put("f", _frame("f", i))
    assert not batcher.ready(full=True)
    start = time.perf_counter()
    items, _ = batcher.take(fill=False)  # nothing waits for the 12 frames missing
    assert [item.index for item in items] == list(range(20)) and time.perf_counter() - start < 1.0
    for i in range(20, 52):
        batcher.put("f", _frame("f", i))
    assert batcher.ready(full=True)


def test_continuous_engine_launches_at_once_and_overlaps_only_full_batches(detector, monkeypatch):
    """Three frames queued, batch 4, max_wait 5 s: launched at once (the device is idle). Then with a
    batch in flight, a whole batch queued is launched before the first is collected; a partial one
    waits for the collection."""
    order: list[tuple[str, int]] = []
    launch, collect = InFlight.launch, InFlight.collect

    def launching(self, frames, tag=None):
        order.append(("launch", len(frames)))
        return launch(self, frames, tag)

    def collecting(self):
        tag, found = collect(self)
        order.append(("collect", len(found)))
        return tag, found

    monkeypatch.setattr(InFlight, "launch", launching)
    monkeypatch.setattr(InFlight, "collect", collecting)
    batcher = _file_batcher(batch=4, max_wait=5.0, capacity=16)
    for i in range(3):
        batcher.put("f", _frame("f", i))
    results = Engine(detector, 2, Stats(), continuous=True).run(batcher)
    start = time.perf_counter()
    assert next(results).frame.index == 0 and time.perf_counter() - start < 2.5
    assert order == [("launch", 3), ("collect", 3)]
    assert [next(results).frame.index for _ in range(2)] == [1, 2]
    for i in range(3, 13):
        batcher.put("f", _frame("f", i))
    batcher.put("f", End("f"))
    rest = list(results)
    assert [r.frame.index for r in rest if not isinstance(r, End)] == list(range(3, 13))
    assert isinstance(rest[-1], End)
    # 10 frames: 4 launched, 4 more (a whole batch) launched before collecting, then the last 2
    assert order[2:6] == [("launch", 4), ("launch", 4), ("collect", 4), ("collect", 4)]
    assert order[6:] == [("launch", 2), ("collect", 2)]


# -- precision and layout on CUDA --------------------------------------------------------------------------------


def test_precision_auto_on_cuda_reads_the_measured_table(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    chosen, why = base.choose_precision("auto", torch.device("cuda"))
    assert chosen == "fp32" and "3,114" in why and "H200" in why  # measured: fp32 wins at batch 32
    for batch in (1, 8, 32, 128, 4, 1000):  # fp32 at every batch size (the nearest measured one)
        assert base.cuda_precision(batch)[0] == "fp32"
    assert base.choose_precision("fp16", torch.device("cuda")) == ("fp16", "as asked")
    # a table where channels-last bf16 wins at batch 32: chosen, and run channels-last
    table = dict(base.CUDA_PRECISION_TABLE)
    table["bf16", "nhwc"] = {1: 100, 8: 900, 32: 4000, 128: 5000}
    monkeypatch.setattr(base, "CUDA_PRECISION_TABLE", table)
    assert base.cuda_precision(32)[0] == "bf16" and base.cuda_precision(1)[0] == "fp32"
    assert base.cuda_precision(32, bf16=False)[0] == "fp32"  # a device without bf16
    assert base.default_channels_last("bf16", torch.device("cuda"))
    table["bf16", "nhwc"] = {32: 1000}  # measured slower than NCHW: NCHW
    assert not base.default_channels_last("bf16", torch.device("cuda"))
    monkeypatch.setattr(base, "CUDA_PRECISION_TABLE", {})
    assert base.cuda_precision(32, bf16=False)[0] == "fp16"  # nothing measured: half precision


def test_layout_channels_last_for_half_precision_on_cuda():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert base.default_channels_last("fp16", cuda) and base.default_channels_last("bf16", cuda)
    assert not base.default_channels_last("fp32", cuda)  # fp32 stays NCHW (TF32, measured)
    assert base.default_channels_last("fp32", cpu) and base.default_channels_last("bf16", cpu)


def test_the_precision_table_is_the_one_in_the_docs():
    text = (Path(__file__).resolve().parent.parent / "docs" / "performance.md").read_text()
    names = {"fp32": "fp32 (TF32)", "fp16": "fp16", "bf16": "bf16"}
    for (precision, layout), row in base.CUDA_PRECISION_TABLE.items():
        shown = "NCHW" if layout == "nchw" else "channels-last"
        figures = [f"{row[b]:,.0f}" if b in row else "–" for b in (1, 8, 32, 128)]
        line = f"| {names[precision] if layout == 'nchw' else precision} | {shown} | " + " | ".join(figures) + " |"
        assert line in text, line


# -- the decoder check and its fallback ----------------------------------------------------------------------------


@pytest.fixture
def fresh_check():
    decoders.forget_check()
    yield decoders
    decoders.forget_check()


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == decoders.__name__ and r.levelname == "WARNING"]


def test_the_check_decodes_a_test_frame():
    assert decoders.probe_decoder("openh264dec") is None  # the test frame decodes (a software stand-in)
    assert decoders.probe_decoder("avdec_h264", "videoconvertscale ! video/x-raw,format=RGB") is None
    assert "jpegdec" in decoders.probe_decoder("jpegdec") or "link" in decoders.probe_decoder("jpegdec")
    assert decoders.probe_decoder("no_such_element") is not None


def test_no_nvidia_decoder_here_falls_back_in_one_line(fresh_check, sample, caplog):
    caplog.set_level("WARNING")
    found = decoders.nvidia_decoding()
    assert not found.gpu and found.note.startswith("software decoding: GStreamer has no NVIDIA decoder")
    assert decoders.nvidia_decoding() is found  # decided once per process
    assert _warnings(caplog) == [found.note]  # one line
    with vidpipe.open(sample, gpu_decode=True) as src:
        assert src.decoder == "avdec_h264" and not src.decoding.gpu
        assert decoding_summary([src]).startswith("decoding    avdec_h264 (software decoding: ")
    assert len(_warnings(caplog)) == 1


def test_a_decoder_that_fails_the_test_frame_is_not_used(fresh_check, monkeypatch, caplog):
    caplog.set_level("WARNING")
    monkeypatch.setattr(decoders, "NVIDIA_DECODERS", ("jpegdec",))  # present, cannot decode H.264
    found = decoders.nvidia_decoding()
    assert not found.gpu and "could not decode a test frame (jpegdec: " in found.note
    assert _warnings(caplog) == [found.note]


def test_a_decoder_that_decodes_the_test_frame_is_used(fresh_check, monkeypatch, caplog):
    caplog.set_level("WARNING")
    monkeypatch.setattr(decoders, "NVIDIA_DECODERS", ("openh264dec",))  # a stand-in that works
    found = decoders.nvidia_decoding()
    assert found.gpu and not found.convert_on_gpu  # no CUDA converters here
    assert (
        found.note
        == "NVIDIA decoding (openh264dec), converted on the CPU: no cudaupload, cudaconvertscale, cudadownload"
    )
    assert _warnings(caplog) == []


def test_software_decoding_as_asked(fresh_check, monkeypatch, caplog):
    caplog.set_level("WARNING")
    monkeypatch.setenv("VIDPIPE_NVDEC", "0")
    monkeypatch.setattr(decoders, "NVIDIA_DECODERS", ("openh264dec",))
    found = decoders.nvidia_decoding()
    assert not found.gpu and found.note == "software decoding: as asked (VIDPIPE_NVDEC=0)"
    assert _warnings(caplog) == []


# -- the device script ------------------------------------------------------------------------------------------


def test_the_device_script_runs_on_the_cpu(tmp_path):
    """``bash benchmarks/gpu_on_device.sh --device cpu``: the same script and table as on the GPU
    machine, on a few frames with this machine's GStreamer."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path))
    done = subprocess.run(
        ["bash", str(root / "benchmarks" / "gpu_on_device.sh"), "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = (tmp_path / "gpu.txt").read_text()
    assert text == done.stdout
    model = [line for line in text.splitlines() if line.startswith("| fp32 | nhwc |")]
    assert len(model) == 1 and re.search(r"\| (\d+)/\1 \(IoU", model[0])  # fp32 agrees with itself
    runs = [line.split(" | ") for line in text.splitlines() if re.match(r"\| [12] \| 4 \| software \|", line)]
    assert [int(row[4]) for row in runs] == [4, 8]  # frames: 1 and 2 streams of 4
    assert all(float(row[5].replace(",", "")) > 0 for row in runs)
    assert "out of time" not in text and "failed" not in text
    handoff = [line for line in text.splitlines() if line.startswith("| handoff | 50 |")]
    assert len(handoff) == 1 and handoff[0].endswith("| yes |"), text[-800:]  # (the mapping, on system memory)


# -- per-frame host work: one safety check for the batch ------------------------------------------------------


def _found(boxes, scores=None, dtype=torch.float32) -> Detections:
    boxes = torch.tensor(boxes, dtype=dtype).reshape(-1, 4)
    scores = torch.full((len(boxes),), 0.9, dtype=dtype) if scores is None else torch.tensor(scores, dtype=dtype)
    return Detections(boxes, scores, torch.ones(len(boxes), dtype=torch.long), ["person"] * len(boxes))


@pytest.mark.parametrize(
    ("frames", "safe"),
    [
        ([[[0, 0, 320, 240]], [[10, 20, 30, 40], [1, 1, 2, 2]], []], True),
        ([[], []], True),
        ([[[0, 0, 320, 240]], [[10, 20, 330, 40]]], False),  # past the frame's right edge
        ([[[0, 0, 320, 240]], [[30, 20, 10, 40]]], False),  # corners the wrong way
        ([[[-1, 0, 10, 10]]], False),
        ([[[0, 0, float("nan"), 10]]], False),
        ([[[0, 0, float("inf"), 10]]], False),
    ],
)
def test_one_check_tells_a_batch_that_needs_no_sanitizing(frames, safe):
    found = [_found(f) for f in frames]
    sizes = [(240, 320)] * len(found)
    assert all_safe(found, sizes) is safe
    per_frame = [sanitize(d, s)[0] for d, s in zip(found, sizes, strict=True)]
    if safe:  # the per-frame path would change nothing either
        assert all(a is b for a, b in zip(per_frame, found, strict=True))


def test_one_check_falls_back_for_scores_and_dtypes():
    assert not all_safe([_found([[0, 0, 1, 1]], [float("nan")])], [(10, 10)])
    assert not all_safe([_found([[0, 0, 1, 1]], dtype=torch.float16)], [(10, 10)])
    assert all_safe([_found([], dtype=torch.float16)], [(10, 10)])  # empty: nothing to change


# -- frames that stay on the GPU: the mapping and the copy, here on system memory ----------------------------------


@pytest.mark.parametrize("width", [384, 302])  # 302 × 3 = 906 bytes: GStreamer pads the rows to 908
def test_the_handoff_copy_gives_the_reader_s_pixels(sample, width):
    """``FrameCopier`` (the GPU handoff's copy: the buffer mapped through ctypes) gives the pixels that
    ``BufferReader`` gives, rows padded or not."""
    from vidpipe.gst import Gst
    from vidpipe.gst.buffers import BufferReader
    from vidpipe.gst.cuda import FrameCopier

    pipeline = Gst.parse_launch(
        f"filesrc location={sample} ! decodebin ! videoconvertscale ! video/x-raw,format=RGB,width={width},height=200 "
        "! appsink name=sink sync=false"
    )
    pipeline.set_state(Gst.State.PLAYING)
    try:
        for _ in range(5):
            got = pipeline.get_by_name("sink").try_pull_sample(5 * Gst.SECOND)
            reader, copier = BufferReader(got.get_caps()), FrameCopier(got.get_caps(), "cpu")
            expected = reader.to_tensor(got.get_buffer())
            assert torch.equal(copier.to_tensor(got.get_buffer()), expected) and expected.float().std() > 10
    finally:
        pipeline.set_state(Gst.State.NULL)


def test_the_handoff_copy_follows_the_video_meta_s_row_pitch():
    """A CUDA pool pitches its rows and says so in the buffer's ``GstVideoMeta``: the copy reads by it."""
    import numpy as np

    from vidpipe.gst import Gst, GstVideo
    from vidpipe.gst.cuda import FrameCopier

    pitch, picture = 64, np.random.default_rng(1).integers(0, 256, (4, 16, 3), dtype=np.uint8)
    rows = np.zeros((4, pitch), dtype=np.uint8)
    rows[:, : 16 * 3] = picture.reshape(4, -1)
    buffer = Gst.Buffer.new_wrapped(rows.tobytes())
    GstVideo.buffer_add_video_meta_full(
        buffer, GstVideo.VideoFrameFlags.NONE, GstVideo.VideoFormat.RGB, 16, 4, 1, [0, 0, 0, 0], [pitch, 0, 0, 0]
    )
    copier = FrameCopier(Gst.Caps.from_string("video/x-raw,format=RGB,width=16,height=4"), "cpu")
    assert copier.stride == 48  # (the caps alone would say 48)
    assert torch.equal(copier.to_tensor(buffer), torch.from_numpy(picture))
    with pytest.raises(ValueError, match="not RGB video caps"):
        FrameCopier(Gst.Caps.from_string("video/x-raw,format=NV12,width=16,height=4"), "cpu")
