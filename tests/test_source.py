"""The frame source: pixel-exact tensors, complete frame counts, sources of every kind."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import vidpipe
from media import reference_decode


@pytest.mark.parametrize("name", ["h264_mp4", "vp9_webm", "mjpeg_avi", "mpeg4_avi", "h265_mkv"])
def test_frames_equal_reference_decode(clips, name):
    path, width, height = clips[name]
    reference = reference_decode(path, width, height)
    with vidpipe.open(path) as src:
        assert (src.info.width, src.info.height) == (width, height)
        frames = list(src)
    assert len(frames) == reference.shape[0], "frames yielded != frames the decoder outputs"
    for i, frame in enumerate(frames):
        assert frame.index == i
        assert frame.tensor.dtype == torch.uint8
        assert frame.tensor.shape == (height, width, 3)
        assert frame.tensor.is_contiguous()
        assert torch.equal(frame.tensor, reference[i]), f"{name}: frame {i} differs from the reference"
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)


def test_sample_clip_info_and_count(sample):
    with vidpipe.open(sample) as src:
        info = src.info
        count = sum(1 for _ in src)
    assert (info.width, info.height, info.fps) == (384, 288, 30.0)
    assert info.duration == pytest.approx(51.734, abs=0.01)
    assert info.codec.startswith("H.264")
    assert info.frames == count == 1552


def test_file_uri(clips):
    path, _width, _height = clips["h264_mp4"]
    with vidpipe.open(path.resolve().as_uri()) as src:
        assert sum(1 for _ in src) == 30


def test_scaling_inside_gstreamer(sample):
    with vidpipe.open(sample, size=(300, 300)) as src:
        frame = next(iter(src))
    assert frame.tensor.shape == (300, 300, 3)


def test_letterbox_keeps_aspect():
    # A white 400x200 picture letterboxed into 200x200 has black bars above and below.
    with vidpipe.open("testsrc://white?width=400&height=200&frames=2", size=(200, 200), keep_aspect=True) as src:
        tensor = next(iter(src)).tensor
    assert tensor.shape == (200, 200, 3)
    assert tensor[:40].max() == 0 and tensor[-40:].max() == 0
    assert tensor[60:140].min() > 200


def test_test_pattern_source():
    with vidpipe.open("testsrc://ball?width=64&height=48&fps=25&frames=10") as src:
        assert (src.info.width, src.info.height, src.info.fps, src.info.frames) == (64, 48, 25.0, 10)
        frames = list(src)
    assert len(frames) == 10
    assert frames[1].pts == pytest.approx(0.04)


def test_graph_dot_describes_the_pipeline(sample):
    with vidpipe.open(sample) as src:
        dot = src.graph_dot()
    assert dot.startswith("digraph") and "GstAppSink" in dot and "video/x-raw" in dot


@pytest.fixture(scope="module")
def rtsp_server():
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("rtsp_server.py"))], stdout=subprocess.PIPE, text=True
    )
    try:
        line = server.stdout.readline().split()
        assert line and line[0] == "READY", "RTSP server did not start"
        yield f"rtsp://127.0.0.1:{line[1]}/test"
    finally:
        server.terminate()
        server.wait(10)


def test_reads_frames_from_a_real_rtsp_server(rtsp_server):
    with vidpipe.open(rtsp_server, timeout=15) as src:
        assert src.info.live
        assert (src.info.width, src.info.height) == (320, 240)
        frames = []
        for frame in src:
            frames.append(frame)
            if len(frames) == 30:
                break
    assert [f.index for f in frames] == list(range(30))
    assert frames[-1].pts > frames[0].pts
    # The ball pattern moves: consecutive frames differ.
    assert not torch.equal(frames[0].tensor, frames[-1].tensor)


def test_unreachable_rtsp_fails_fast():
    import socket

    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(vidpipe.errors.StreamUnreachableError, match=f"127.0.0.1:{port}"):
        vidpipe.open(f"rtsp://127.0.0.1:{port}/nothing", timeout=5)
    assert time.monotonic() - start < 6


def test_reads_over_http(sample):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(sample.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{sample.name}"
        with vidpipe.open(url) as src:
            assert not src.info.live and src.info.frames == 1552
            frames = [f for f, _ in zip(src, range(40), strict=False)]
    finally:
        server.shutdown()
    with vidpipe.open(sample) as src:
        local = [f.tensor for f, _ in zip(src, range(40), strict=False)]
    assert all(torch.equal(a.tensor, b) for a, b in zip(frames, local, strict=True))


def test_live_source_drops_oldest_frames_and_counts_them():
    # 30 FPS live pattern, a consumer that takes 0.1 s per frame: the source must drop, not queue up.
    with vidpipe.open("testsrc://ball?width=160&height=120&fps=30&frames=45&live=1") as src:
        assert src.info.live
        delivered = 0
        for _ in src:
            delivered += 1
            time.sleep(0.1)
        dropped = src.frames_dropped
    assert dropped > 15
    assert delivered + dropped == 45


def test_live_source_keeps_the_frames_it_is_told_to():
    """max_buffers is honoured for a live source too: 45 frames at 30 FPS into room for 64, a consumer that
    starts late and is slow, and nothing is dropped; the default keeps 2 (the newest)."""
    uri = "testsrc://ball?width=160&height=120&fps=30&frames=45&live=1"
    with vidpipe.open(uri, max_buffers=64) as src:
        assert src.pipeline.get_by_name("sink").get_property("max-buffers") == 64
        time.sleep(0.5)
        delivered = sum(1 for _ in src)
        assert (delivered, src.frames_dropped) == (45, 0)
    with vidpipe.open(uri) as src:
        assert src.pipeline.get_by_name("sink").get_property("max-buffers") == 2
        src.stop()


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_max_buffers_is_checked(bad):
    with pytest.raises(vidpipe.errors.SourceError, match=r"testsrc://ball.*max_buffers must be a whole number"):
        vidpipe.open("testsrc://ball?frames=5", max_buffers=bad)


# -- decoding on an NVIDIA GPU (gpu_decode; on this machine: the fallback, and the mechanism) -----------------


def test_gpu_decode_falls_back_to_software_with_the_reason(sample):
    """No NVIDIA decoder here: gpu_decode=True decodes in software, says why, and gives the same frames."""
    from vidpipe.cli.detect import decoding_summary
    from vidpipe.gst.decoders import nvidia_decoding

    if nvidia_decoding().gpu:
        pytest.skip("this machine decodes on an NVIDIA GPU")
    with vidpipe.open(sample, gpu_decode=True) as gpu, vidpipe.open(sample) as cpu:
        assert not gpu.decoding.gpu and "gstreamer1.0-plugins-bad" in gpu.decoding.note
        assert gpu.decoder == cpu.decoder == "avdec_h264"
        for a, b in zip(gpu, cpu, strict=False):
            assert torch.equal(a.tensor, b.tensor)
            if a.index == 10:
                break
        line = decoding_summary([gpu])
    assert line.startswith("decoding    avdec_h264 (software decoding: GStreamer has no NVIDIA decoder")


def test_preferred_decoders_are_the_ones_decodebin_picks(sample, monkeypatch):
    """The ranking that makes decodebin pick NVIDIA's decoders, shown with a decoder this machine has and
    decodebin normally passes over (openh264dec, rank marginal, below avdec_h264)."""
    from vidpipe.gst import Gst, decoders

    factory = Gst.ElementFactory.find("openh264dec")
    if factory is None:
        pytest.skip("openh264dec (gstreamer1.0-plugins-bad) is not installed")
    rank = factory.get_rank()
    monkeypatch.setattr(decoders, "NVIDIA_DECODERS", ("openh264dec",))
    with vidpipe.open(sample) as src:
        assert src.decoder == "avdec_h264"
    try:
        decoders.prefer_nvidia_decoders()
        assert factory.get_rank() == decoders.PREFERRED_RANK
        with vidpipe.open(sample) as src:
            assert src.decoder == "openh264dec"
            assert next(iter(src)).tensor.shape == (288, 384, 3)
    finally:
        factory.set_rank(rank)


def test_gpu_chain_is_wired_in_where_nvidia_decoding_is_available(sample, monkeypatch):
    """Where NVIDIA decoding is found, the source ranks its decoders first and converts with the CUDA chain
    (here a software stand-in with the same caps, CUDA being absent), and --detect-fps still limits the
    rate before it (caps of any memory)."""
    from vidpipe.gst import Gst, launch, source
    from vidpipe.gst.decoders import Decoding

    preferred = []
    monkeypatch.setattr(source, "nvidia_decoding", lambda: Decoding(True, "NVIDIA decoding (test)", True))
    monkeypatch.setattr(source, "prefer_nvidia_decoders", lambda: preferred.append(True))
    monkeypatch.setattr(launch, "CUDA_CHAIN", "videoconvertscale name=convert ! video/x-raw(ANY),format=RGB")
    with vidpipe.open(sample, gpu_decode=True, max_fps=10) as src:
        assert src.decoding.convert_on_gpu and preferred == [True]
        rate = src.pipeline.get_by_name("frames").get_static_pad("src").get_current_caps()
        assert rate.get_structure(0).get_value("framerate") == Gst.Fraction(10, 1)
        frames = [f.pts for f in src]
    assert 10 * 51 <= len(frames) <= 10 * 52 + 1  # 51.7 s of video at 10 FPS


def test_frames_without_gst_python_overrides_are_the_same(sample, monkeypatch):
    """A GStreamer bundle without gst-python's overrides (no zero-copy map) copies the bytes out first:
    same frames, padded rows included (384x288 RGB is packed; 318x240 pads each row to 4 bytes)."""
    from vidpipe.gst import buffers

    for size in (None, (318, 240)):
        with vidpipe.open(sample, size=size) as src:
            expected = [f.tensor for f, _ in zip(src, range(5), strict=False)]
        monkeypatch.setattr(buffers, "ZERO_COPY", False)
        with vidpipe.open(sample, size=size) as src:
            got = [f.tensor for f, _ in zip(src, range(5), strict=False)]
        monkeypatch.setattr(buffers, "ZERO_COPY", True)
        assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
        assert got[0].shape == ((288, 384, 3) if size is None else (240, 318, 3))
