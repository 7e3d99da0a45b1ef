"""The second hostile round: each test reproduces a case that lost data, leaked a secret, hung, gave a
wrong result or a traceback, and checks the behaviour asked for instead (numbers follow the rows)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yolo_nets
from conftest import start_detect, start_server, stop_time, vidpipe_cli

import vidpipe
from media import encode
from vidpipe import models
from vidpipe.errors import OutputError, VidpipeError
from vidpipe.pipeline import Batcher, StreamStats, stream_specs
from vidpipe.pipeline.specs import read_sources_file
from vidpipe.redact import mask_secrets
from vidpipe.sinks import VideoSink
from vidpipe.types import Frame

H264 = "x264enc ! h264parse ! mp4mux"


def _lines(path: Path) -> list[dict]:
    """Every line of a JSONL file, parsed strictly (a bare NaN or Infinity is not JSON)."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{path}: {token} is not valid JSON")

    text = path.read_text()
    assert text == "" or text.endswith("\n")
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _frames(path: Path) -> list[vidpipe.Frame]:
    with vidpipe.open(path) as src:
        return list(src)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    return {
        "c1": encode(folder / "c1.mp4", H264, 320, 240, frames=30),
        "c2": encode(folder / "c2.mp4", H264, 320, 240, frames=30, pattern="smpte"),
        "ten": _rate_clip(folder / "ten.mp4", 10, 30),
    }


def _rate_clip(path: Path, fps: int, frames: int) -> Path:
    from media import gst_launch

    gst_launch(
        f"videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,width=320,height=240,framerate={fps}/1 "
        f"! {H264} ! filesink location={path}"
    )
    return path


# -- 1, 2, 18, 19: output paths and stream names ----------------------------------------------------------


def test_template_paths_never_overwrite_an_input(clips, tmp_path):
    for name in ("c1", "c2"):
        shutil.copy(clips[name], tmp_path / f"{name}.mp4")
    before = {name: _digest(tmp_path / f"{name}.mp4") for name in ("c1", "c2")}
    exe = Path(sys.executable).with_name("vidpipe")
    result = subprocess.run(
        [str(exe), "detect", "c1=c1.mp4", "c2=c2.mp4", "--video", "{stream}.mp4"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "is the input" in result.stderr, result.stderr
    assert {name: _digest(tmp_path / f"{name}.mp4") for name in ("c1", "c2")} == before
    # the Python API refuses it too
    detector = models.load("ssd_mobilenet_v2_coco")
    pipeline = vidpipe.Pipeline(
        detector=detector,
        sources=[("c1", str(tmp_path / "c1.mp4"))],
        sinks=[VideoSink(tmp_path / "{stream}.mp4")],
    )
    with pytest.raises(OutputError, match="is the input"):
        pipeline.run()
    assert _digest(tmp_path / "c1.mp4") == before["c1"]


@pytest.mark.parametrize(
    ("name", "why"),
    [("..", "'.'"), ("my cam", "' '"), ("Tür", "'ü'"), ("a/b", "'/'"), ("", "empty"), ("a\\b", "'\\\\'"),
     ("x\x07", "'\\x07'"), (".hidden", "'.'")],
)  # fmt: skip
def test_stream_names_are_safe_tokens(name, why):
    with pytest.raises(VidpipeError, match="invalid stream name") as raised:
        stream_specs([f"{name}=c1.mp4"])
    assert why in str(raised.value) and "letters, digits" in str(raised.value)
    with pytest.raises(VidpipeError, match="invalid stream name"):
        stream_specs([(name, "c1.mp4")])  # the Python API's (name, source) pairs too


def test_bad_stream_names_on_the_command_line(clips, tmp_path):
    result = vidpipe_cli("detect", f"..={clips['c1']}", f"x={clips['c2']}", "--video", str(tmp_path / "{stream}.mp4"))
    assert result.returncode == 2 and "invalid stream name '..'" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())
    # two streams whose expanded paths are one file
    template = str(tmp_path / "out" / "{stream}" / ".." / "v.mp4")
    result = vidpipe_cli("detect", f"a={clips['c1']}", f"b={clips['c2']}", "--video", template)
    assert result.returncode == 2 and "is also the --video" in result.stderr, result.stderr


def test_unnamed_streams_take_names_nobody_gave():
    specs = stream_specs(["1=c2.mp4", "c1.mp4", "c3.mp4"])
    assert [s.name for s in specs] == ["1", "2", "3"]
    assert [s.name for s in stream_specs(["a.mp4", "0=b.mp4"])] == ["1", "0"]


# -- 3: passwords masked ------------------------------------------------------------------------------------


def test_mask_secrets():
    assert mask_secrets("rtsp://admin:S3cret@10.0.0.5:554/s") == "rtsp://admin:***@10.0.0.5:554/s"
    assert mask_secrets("a rtsp://u:p#w@d@h/x and http://x:y@h/") == "a rtsp://u:***@h/x and http://x:***@h/"
    assert mask_secrets("rtsp://host/path@x and rtsp://user@host/") == "rtsp://host/path@x and rtsp://user@host/"


def test_passwords_are_masked_everywhere(tmp_path):
    server, url = start_server()
    secret_url = url.replace("rtsp://", "rtsp://admin:S3cretPass#1@")
    sources = tmp_path / "cams.txt"
    sources.write_text(f"# cameras\ncam={secret_url}   # the lobby\n")
    assert read_sources_file(sources) == [f"cam={secret_url}"]  # '#' in a password is no comment
    jsonl, graph = tmp_path / "o.jsonl", tmp_path / "g.dot"
    try:
        result = vidpipe_cli(
            "detect", "--sources", str(sources), "--json", str(jsonl), "--graph", str(graph),
            "--max-frames", "5", "-v",
        )  # fmt: skip
        probe = vidpipe_cli("probe", secret_url)
        probe_json = vidpipe_cli("probe", "--json", secret_url)
    finally:
        server.kill()
        server.wait(10)
    assert result.returncode == 0, result.stderr
    for text in (result.stderr, jsonl.read_text(), graph.read_text(), probe.stdout, probe_json.stdout):
        assert "S3cretPass" not in text and "#1@" not in text
    assert "admin:***@" in jsonl.read_text() and "admin:***@" in probe.stdout
    # an unreachable camera's error line too
    result = vidpipe_cli("detect", "rtsp://admin:S3cretPass@127.0.0.1:9/x")
    assert result.returncode == 2 and "S3cretPass" not in result.stderr and "admin:***@" in result.stderr


# -- 4: an annotated video survives SIGKILL -----------------------------------------------------------------


def test_sigkill_leaves_a_playable_mp4(sample, tmp_path):
    jsonl, video = tmp_path / "d.jsonl", tmp_path / "a.mp4"
    proc = start_detect(str(sample), "--json", str(jsonl), "--video", str(video), lines=150)
    time.sleep(0.5)
    proc.kill()
    proc.communicate(timeout=30)
    frames = _frames(video)  # a plain MP4 has no index here: "moov box missing"
    assert len(frames) >= 30  # every whole fragment (one a second) plays
    assert [f.index for f in frames] == list(range(len(frames)))


def test_sigkill_with_live_streams_leaves_every_video_playable(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    live = "testsrc://ball?width=320&height=240&fps=15&frames=100000&live=1"
    proc = start_detect(
        f"a={live}", f"b={live}", "--json", str(jsonl), "--video", str(tmp_path / "{stream}.mp4"), lines=70
    )
    time.sleep(1.0)
    proc.kill()
    proc.communicate(timeout=30)
    for name in ("a", "b"):
        assert len(_frames(tmp_path / f"{name}.mp4")) >= 10


# -- 5: Ctrl-C while opening or reconnecting ------------------------------------------------------------------


@pytest.mark.parametrize("server_kind", ["silent", "frozen"])
def test_ctrl_c_while_opening_stops_within_a_second(server_kind, tmp_path):
    if server_kind == "silent":  # a socket that accepts and never answers
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        url, cleanup = f"rtsp://127.0.0.1:{listener.getsockname()[1]}/x", listener.close
    else:
        server, url = start_server()
        server.send_signal(signal.SIGSTOP)

        def cleanup() -> None:
            server.send_signal(signal.SIGCONT)
            server.kill()
            server.wait(10)

    exe = Path(sys.executable).with_name("vidpipe")
    try:
        proc = subprocess.Popen(
            [str(exe), "detect", url, "--json", str(tmp_path / "o.jsonl")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _wait_for_a_socket(proc)  # past its imports (a busy machine takes seconds): GStreamer has started
        time.sleep(1.0)  # opening: waiting for a first frame that does not come (10 s timeout)
        assert proc.poll() is None
        took, stderr = stop_time(proc)
    finally:
        cleanup()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert took < 1.0, f"took {took:.2f} s to stop"


CTRL_C_DURING_IMPORT = """
import os, signal, sys

class CtrlC:  # a real SIGINT, sent when PyTorch starts loading: the user's Ctrl-C in the CLI's first seconds
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)

sys.meta_path.insert(0, CtrlC())
"""


@pytest.mark.parametrize("how", ["console script", "python -m vidpipe"])
def test_ctrl_c_while_the_cli_loads_is_one_line_not_a_traceback(how, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(CTRL_C_DURING_IMPORT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    script = str(Path(sys.executable).with_name("vidpipe"))
    start = [sys.executable, "-m", "vidpipe"] if how.startswith("python") else [script]
    done = subprocess.run([*start, "probe", "nothing.mp4"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "vidpipe: interrupted\n"


def _wait_for_a_socket(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Wait until the process holds a socket (its RTSP connection, GStreamer's own): it is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError):
            if any(
                os.readlink(f"/proc/{proc.pid}/fd/{fd}").startswith("socket:")
                for fd in os.listdir(f"/proc/{proc.pid}/fd")
            ):
                return
        time.sleep(0.05)
    raise AssertionError("the CLI opened no socket")


def test_ctrl_c_while_reconnecting_stops_within_a_second(tmp_path):
    server, url = start_server()
    jsonl = tmp_path / "o.jsonl"
    try:
        proc = start_detect(url, "--json", str(jsonl), lines=5)
        server.send_signal(signal.SIGSTOP)  # frozen: the stream stalls (5 s), then reconnects to a frozen server
        deadline = time.monotonic() + 20
        while "disconnected" not in jsonl.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # reconnecting: waiting for a first frame
        took, stderr = stop_time(proc)
    finally:
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait(10)
    assert proc.returncode == 130, stderr
    assert took < 1.0, f"took {took:.2f} s to stop"


# -- 6: --detect-fps is a maximum ---------------------------------------------------------------------------


def test_detect_fps_is_a_maximum(clips, tmp_path):
    jsonl = tmp_path / "o.jsonl"
    result = vidpipe_cli("detect", f"a={clips['c1']}", f"b={clips['ten']}", "--detect-fps", "15", "--json", str(jsonl))
    assert result.returncode == 0, result.stderr
    records = [r for r in _lines(jsonl) if "event" not in r]
    a = [r["frame"] for r in records if r["stream"] == "a"]
    b = [r["frame"] for r in records if r["stream"] == "b"]
    assert b == list(range(30))  # 10 fps, below the maximum: every frame
    assert len(a) == 15 and a == list(range(0, 30, 2))  # 30 fps: every other frame
    result = vidpipe_cli("detect", str(clips["c1"]), "--detect-fps", "30.5", "--json", str(jsonl))
    assert result.returncode == 0, result.stderr
    assert [r["frame"] for r in _lines(jsonl) if "event" not in r] == list(range(30))


# -- 7, 12, 14: whatever a model returns --------------------------------------------------------------------

WILD = '''
import math
import torch
from torch import nn

class Wild(nn.Module):
    """Returns {kind} results."""

    def forward(self, images):
        out = []
        for _ in images:
            out.append({body})
        return out

def build():
    return Wild()
'''

BOXES = (
    "{'boxes': torch.tensor([[float('nan'), 1., 2., 3.], [1., 2., float('inf'), 4.], [300., 200., 10., 20.],"
    " [-1e6, -50., 1e9, 1e12], [5., 5., 50., 50.]]), 'scores': torch.tensor([0.9, 0.9, 0.9, 0.9, float('nan')]),"
    " 'labels': torch.tensor([1, 1, 1, 1, 1])}"
)


def _model(tmp_path: Path, body: str, kind: str = "odd") -> str:
    path = tmp_path / f"wild_{abs(hash(body))}.py"
    path.write_text(WILD.format(kind=kind, body=body))
    return f"{path}:build"


def test_non_finite_inverted_and_huge_boxes_are_made_safe(clips, tmp_path):
    model = _model(tmp_path, BOXES)
    jsonl = tmp_path / "o.jsonl"
    result = vidpipe_cli("detect", str(clips["c1"]), "--model", model, "--json", str(jsonl), "--track")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("NaN or infinite") == 1  # one warning
    records = [r for r in _lines(jsonl) if "event" not in r]
    assert len(records) == 30
    for record in records:
        boxes = [d["box"] for d in record["detections"]]
        assert len(boxes) == 2  # three dropped: a NaN box, an infinite one, a NaN score
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 <= x2 <= 320 and 0 <= y1 <= y2 <= 240
        assert boxes == [[10.0, 20.0, 300.0, 200.0], [0.0, 0.0, 320.0, 240.0]]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{'boxes': torch.zeros(1, 4), 'labels': torch.ones(1)}", "has no 'scores'"),
        ("{'boxes': torch.zeros(1, 4), 'scores': torch.ones(1, 1), 'labels': torch.ones(1)}", "result shapes"),
        ("{'boxes': torch.zeros(1, 5), 'scores': torch.ones(1), 'labels': torch.ones(1)}", "boxes [1, 5]"),
        ("[1, 2, 3]", "returned list for an image"),
    ],
)
def test_malformed_model_outputs_are_one_line(body, expected, clips, tmp_path):
    model = _model(tmp_path, body)
    result = vidpipe_cli("detect", str(clips["c1"]), "--model", model)
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert model in result.stderr and "expected" in result.stderr


def test_numpy_outputs_are_accepted(clips, tmp_path):
    body = "{'boxes': __import__('numpy').array([[1., 2., 30., 40.]]), 'scores': [0.9], 'labels': [3]}"
    result = vidpipe_cli("detect", str(clips["c1"]), "--model", _model(tmp_path, body), "--max-frames", "2")
    assert result.returncode == 0 and "car 2" in result.stderr, result.stderr


SSDLITE = """
import torchvision

def build():
    return torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
"""


@pytest.mark.parametrize("precision", ["bf16", "fp32", "auto"])
def test_every_model_kind_runs_under_every_precision(precision, clips, tmp_path):
    factory = tmp_path / "ssdlite.py"
    factory.write_text(SSDLITE)
    torch.manual_seed(0)
    weights = tmp_path / "ssdlite.pth"
    torch.save(vidpipe.models.load(f"{factory}:build").model.state_dict(), weights)
    for model in (f"{factory}:build", "torchvision:ssdlite320_mobilenet_v3_large"):
        extra = ["--weights", str(weights)] if model.startswith("torchvision:") else []
        result = vidpipe_cli(
            "detect", str(clips["c1"]), "--model", model, *extra, "--precision", precision, "--max-frames", "4",
            "--threshold", "0.01",
        )  # fmt: skip
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        if precision == "bf16":
            assert "bf16 on cpu" in result.stderr


# -- 8, 9, 10: ONNX exports as Ultralytics writes them -------------------------------------------------------


class _Half(torch.nn.Module):
    """A float16-input wrapper (what ``yolo export half=True`` gives a CPU user: fp16 in, fp16 out)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.float()).half()


@pytest.fixture(scope="module")
def yolo_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("yolo")
    torch.manual_seed(8)
    net = yolo_nets.YOLOv8n(nc=80).eval()
    files = {"reference": yolo_nets.export(net, folder / "ref.onnx", size=(320, 320))}
    dummy = torch.rand(1, 3, 320, 320)
    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 2: "anchors"}}
    files["dynamic"] = folder / "dynamic.onnx"
    torch.onnx.export(net, (dummy,), str(files["dynamic"]), input_names=["images"], output_names=["output0"],
                      opset_version=17, dynamic_axes=axes, dynamo=False)  # fmt: skip
    import onnx

    proto = onnx.load(str(files["dynamic"]))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "imgsz", "[320, 320]"
    onnx.save(proto, str(files["dynamic"]))
    files["half"] = folder / "half.onnx"
    torch.onnx.export(_Half(net), (dummy.half(),), str(files["half"]), input_names=["images"],
                      output_names=["output0"], opset_version=17, dynamo=False)  # fmt: skip
    files["batch4"] = folder / "batch4.onnx"
    torch.onnx.export(net, (torch.rand(4, 3, 320, 320),), str(files["batch4"]), input_names=["images"],
                      output_names=["output0"], opset_version=17, dynamo=False)  # fmt: skip
    return files


def _outputs(detector, frames) -> list[np.ndarray]:
    batch = detector.preprocess(frames)
    return [o.numpy() for o in detector.forward(batch)]


@pytest.mark.parametrize("kind", ["dynamic", "half", "batch4"])
def test_onnx_exports_of_every_kind_run(kind, yolo_files, clips):
    with vidpipe.open(clips["c1"]) as src:
        frames = [f.tensor for f in src][:5]
    reference = models.load(str(yolo_files["reference"]), threshold=0.01)
    detector = models.load(str(yolo_files[kind]), threshold=0.01)
    assert detector.size == (320, 320)  # the metadata's imgsz for the dynamic one
    expected, got = _outputs(reference, frames), _outputs(detector, frames)
    tolerance = 2e-2 if kind == "half" else 1e-4
    for a, b in zip(expected, got, strict=True):
        assert np.allclose(a, b, atol=tolerance * max(1.0, float(np.abs(a).max())))
    if kind == "batch4":
        assert "groups of 4" in detector.note
    assert len(detector(frames)) == 5


def test_dynamic_onnx_takes_imgsz(yolo_files, clips):
    detector = models.load(str(yolo_files["dynamic"]), imgsz=256)
    assert detector.size == (256, 256)
    result = vidpipe_cli("detect", str(clips["c1"]), "--model", str(yolo_files["dynamic"]), "--imgsz", "256",
                         "--max-frames", "2")  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("layout", ["end2end", "yolov5"])
def test_a_format_that_does_not_fit_the_output_is_refused_at_load(layout, yolo_files, clips):
    path = yolo_files["reference"]
    result = vidpipe_cli("detect", str(clips["c1"]), "--model", str(path), "--format", layout)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"output shape [1, 84, 2100] does not fit --format {layout}" in result.stderr


# -- 11: an HTTP MJPEG camera is live -------------------------------------------------------------------------


def _mjpeg(*args: str) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("mjpeg_server.py")), *args], stdout=subprocess.PIPE, text=True
    )
    line = server.stdout.readline().split()
    assert line and line[0] == "READY", "MJPEG server did not start"
    return server, f"http://127.0.0.1:{line[1]}/cam"


def test_http_mjpeg_camera_is_live_and_reconnects(tmp_path):
    server, url = _mjpeg("--fps", "15", "--frames", "40")  # each connection ends after 40 frames
    jsonl = tmp_path / "o.jsonl"
    try:
        probe = json.loads(vidpipe_cli("probe", "--json", url).stdout)
        assert probe["live"] is True and probe["codec"] == "JPEG"
        proc = start_detect(url, "--json", str(jsonl), lines=10)
        deadline = time.monotonic() + 30
        while "reconnected" not in jsonl.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        server.kill()
        server.wait(10)
    assert proc.returncode == 130, stderr
    events = [r["event"] for r in _lines(jsonl) if "event" in r]
    assert "disconnected" in events and "reconnected" in events
    assert "p50/p95" in stderr  # a live stream's latency row


# -- 13, 17, 20, 21, 24: clear lines instead of tracebacks --------------------------------------------------


@pytest.mark.parametrize("content", [random.Random(7).randbytes(64) + b"\xff\xfe", "cam=a.mp4\n".encode("utf-16")])
def test_text_files_that_are_not_utf8(content, clips, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    result = vidpipe_cli("detect", "--sources", str(bad))
    assert result.returncode == 2 and "not UTF-8" in result.stderr and str(bad) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    ok = tmp_path / "ok.txt"
    ok.write_text(f"cam={clips['c1']}\n", encoding="utf-8-sig")  # a byte order mark before the first line
    assert read_sources_file(ok) == [f"cam={clips['c1']}"]
    result = vidpipe_cli("detect", str(clips["c1"]), "--model", "x.onnx", "--names", str(bad))
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_trails_out_of_range(clips, tmp_path):
    video = tmp_path / "x.mp4"
    result = vidpipe_cli("detect", str(clips["c1"]), "--video", str(video), "--trails", "99999999999999999999")
    assert result.returncode == 2 and "--trails must be 0 to 10000" in result.stderr and not video.exists()
    with pytest.raises(OutputError, match="trails must be 0 to 10000"):
        VideoSink(video, trails=10**20)


def test_output_folders_are_checked_before_any_work(clips, tmp_path):
    folder = tmp_path / "isdir.jsonl"
    folder.mkdir()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        (["--json", str(folder)], "is a folder"),
        (["--json", str(a_file / "o.jsonl")], f"({a_file} is a file)"),
        (["--video", str(a_file / "sub" / "v.mp4")], f"({a_file} is a file)"),
    ]
    for args, expected in cases:
        result = vidpipe_cli("detect", "rtsp://127.0.0.1:9/never-opened", *args)
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert "never-opened" not in result.stderr  # refused before the source was tried


def test_read_only_output_folder(clips, tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
        pytest.skip("needs mount namespaces (unshare -m) for a read-only folder")
    ro = tmp_path / "ro"
    ro.mkdir()
    exe = Path(sys.executable).with_name("vidpipe")
    script = f"mount -t tmpfs -o ro,size=1m tmpfs {ro} || exit 99; {exe} detect {clips['c1']} --json {ro}/o.jsonl"
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    if result.returncode == 99:
        pytest.skip("cannot mount a tmpfs here")
    assert result.returncode == 2 and "read-only" in result.stderr, result.stderr


def test_when_every_stream_fails_the_jsonl_still_says_so(tmp_path):
    jsonl = tmp_path / "o.jsonl"
    result = vidpipe_cli("detect", f"a={tmp_path / 'x.mp4'}", f"b={tmp_path / 'y.mp4'}", "--json", str(jsonl))
    assert result.returncode == 2
    events = _lines(jsonl)
    # (the two fail at once, each in its own thread: either may be written first)
    assert sorted((e["stream"], e["event"]) for e in events) == [("a", "failed"), ("b", "failed")]
    assert all("no such file" in e["message"] for e in events)
    result = vidpipe_cli("detect", str(tmp_path / "x.mp4"), "--json", str(jsonl))
    assert result.returncode == 2 and result.stderr.count("no such file") == 1  # said once
    assert [e["event"] for e in _lines(jsonl)] == ["failed"]


def test_self_intersecting_zone():
    result = vidpipe_cli("detect", "x.mp4", "--zone", "z=0,0,10,10,10,0,0,10")
    assert result.returncode == 2 and "the zone's edges cross" in result.stderr, result.stderr
    result = vidpipe_cli("detect", "x.mp4", "--zone", "z=0,0,5,5,10,10")
    assert result.returncode == 2 and "on one line" in result.stderr


# -- 16: open files --------------------------------------------------------------------------------------------


def _limited(soft: int, hard: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_too_many_streams_for_the_open_files_limit(clips, tmp_path):
    listing = tmp_path / "many.txt"
    listing.write_text("".join(f"s{i}={clips['c1']}\n" for i in range(64)))
    exe = Path(sys.executable).with_name("vidpipe")
    result = subprocess.run(
        [str(exe), "detect", "--sources", str(listing)], capture_output=True, text=True, timeout=120,
        preexec_fn=_limited(256, 256),
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr and "CRITICAL" not in result.stderr
    assert "64 streams need about" in result.stderr and "ulimit -n 1024" in result.stderr, result.stderr
    # with room under the hard limit, the soft one is raised and the run goes ahead
    listing.write_text("".join(f"s{i}={clips['c1']}\n" for i in range(24)))
    result = subprocess.run(
        [str(exe), "detect", "--sources", str(listing), "--max-frames", "2"], capture_output=True, text=True,
        timeout=300, preexec_fn=_limited(256, 4096),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


# -- 22: the latency bound is source → result --------------------------------------------------------------------


def test_live_frames_that_cannot_make_the_bound_are_dropped_before_inference():
    batcher = Batcher(batch=4, max_wait=0.0, abandon=threading.Event())
    stats = StreamStats("cam", live=True)
    batcher.add_stream(stats)
    batcher.configure("cam", live=True, max_latency=1.0, capacity=4)
    batcher.observe_service(0.5)  # a batch takes half a second to its results
    now = time.time()
    frame = lambda age, i: Frame(torch.zeros(2, 2, 3, dtype=torch.uint8), i, 0.0, "cam", wall=now - age)  # noqa: E731
    for i, age in enumerate((0.7, 0.6, 0.3)):
        batcher.put("cam", frame(age, i))
    items, _ = batcher.take()
    assert [f.index for f in items] == [2] and stats.dropped == 2  # 0.7 + 0.5 and 0.6 + 0.5 > 1 s
    batcher.put("cam", frame(0.7, 3))  # alone: the newest is processed however late
    items, _ = batcher.take()
    assert [f.index for f in items] == [3] and stats.dropped == 2
    batcher.put("cam", frame(1.2, 4))  # older than the bound already
    batcher.put("cam", frame(0.1, 5))
    items, _ = batcher.take()
    assert [f.index for f in items] == [5] and stats.dropped == 3


# -- 15: a damaged OpenVINO cache ---------------------------------------------------------------------------


def test_a_truncated_openvino_cache_is_converted_again(tmp_path, monkeypatch, clips):
    pytest.importorskip("openvino")
    monkeypatch.setenv("VIDPIPE_CACHE", str(tmp_path))
    first = models.load("ssd_mobilenet_v2_coco", backend="openvino", precision="fp32")
    weights = first.model.path.with_suffix(".bin")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    result = vidpipe_cli(
        "detect", str(clips["c1"]), "--backend", "openvino", "--max-frames", "2", env={"VIDPIPE_CACHE": str(tmp_path)}
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "damaged OpenVINO cache" in result.stderr
    assert weights.stat().st_size > 1_000_000  # whole again
    again = vidpipe_cli(
        "detect", str(clips["c1"]), "--backend", "openvino", "--max-frames", "2", env={"VIDPIPE_CACHE": str(tmp_path)}
    )
    assert again.returncode == 0 and "damaged" not in again.stderr


# -- 23: memory across reconnections -------------------------------------------------------------------------

STORM = """
import os, sys, threading, time
sys.path.insert(0, {tests!r})
from conftest import start_server
import vidpipe
from vidpipe import memory, models

server, url = start_server()
port = url.rsplit(":", 1)[1].split("/")[0]
pipeline = vidpipe.Pipeline(detector=models.load("ssd_mobilenet_v2_coco"), sources=[("a", url), ("b", url)],
                            options=vidpipe.StreamOptions(detect_fps=5))
runner = threading.Thread(target=pipeline.run)
runner.start()
reconnects = lambda: sum(s.reconnects for s in pipeline.stats.streams.values())
marks = []
for kill in range({kills}):
    time.sleep(2.0)
    if kill == 1:
        marks.append((threading.active_count(), len(os.listdir("/proc/self/fd"))))
    server.kill(); server.wait(); server.stdout.close()
    time.sleep(0.5)
    server, _ = start_server("--port", port)
    deadline = time.monotonic() + 20
    while reconnects() < 2 * (kill + 1) and time.monotonic() < deadline:
        time.sleep(0.1)
time.sleep(2.0)
marks.append((threading.active_count(), len(os.listdir("/proc/self/fd"))))
pipeline.stop(); runner.join(30); server.kill()
print("STORM", (reconnects(), memory.arenas(), marks))
"""


def test_reconnections_keep_heap_arenas_threads_and_fds_bounded(tmp_path):
    """Each reconnection starts new GStreamer threads; with glibc's defaults each could get a heap arena
    of its own whose freed memory is kept (+0.3 MB RSS per reconnection in benchmarks/soak.py)."""
    script = tmp_path / "storm.py"
    script.write_text(STORM.format(tests=str(Path(__file__).parent), kills=6))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("STORM"))
    reconnects, arenas, ((threads0, fds0), (threads1, fds1)) = eval(line[len("STORM ") :])
    assert reconnects >= 12
    assert arenas is not None and arenas <= 2, f"{arenas} heap arenas"  # bounded (vidpipe.memory)
    assert threads1 <= threads0 and fds1 <= fds0 + 2
