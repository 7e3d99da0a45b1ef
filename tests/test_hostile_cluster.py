"""A hostile round on the Ray cluster front door (``vidpipe detect --cluster``, ``vidpipe.detect(cluster=...)``):
sources that fail on a worker (a missing file, a file that is no video, an RTSP URL with a password whose
port is closed) fail only their stream, with one clear line and the password masked everywhere the run
writes (Ray's own session logs too); Ctrl-C keeps what was written; no Ray process is left. A real local
Ray, 160×120 clips."""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import vidpipe_cli
from test_cluster import ray_left

import vidpipe
from media import encode
from vidpipe.errors import StreamsFailedError, VidpipeError

pytestmark = [pytest.mark.slow, pytest.mark.ray]

pytest.importorskip("ray")

VIDPIPE = str(Path(sys.executable).with_name("vidpipe"))
SECRET = "Zz9-secret"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("hostile-cluster")
    good = encode(folder / "good.mp4", "x264enc ! mp4mux", 160, 120, frames=30)
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(bytes(range(256)) * 12)
    return {
        "good": str(good),
        "missing": str(folder / "gone.mp4"),
        "corrupt": str(corrupt),
        "cam": f"rtsp://admin:{SECRET}@127.0.0.1:{closed_port()}/live",
        "odd": str(folder / "x\x1b]0;owned\x07.mp4"),  # (missing: its name in the error line)
    }


def sessions() -> set[str]:
    return set(glob.glob("/tmp/ray/session_2*"))


def logged_secret(before: set[str]) -> list[str]:
    """The files of the Ray sessions started since ``before`` that hold the password."""
    found = []
    for session in sessions() - before:
        found += subprocess.run(["grep", "-rl", SECRET, session], capture_output=True, text=True).stdout.split()
    return found


def test_failing_sources_fail_only_their_stream_with_the_password_masked(inputs, tmp_path):
    """The CLI: one line per failed stream, exit 2, the good stream's frames whole on disk, the password masked
    (held up); a file name's ESC and BEL in its line escaped (printed raw before)."""
    out = tmp_path / "out.jsonl"
    before = sessions()
    result = vidpipe_cli(
        "detect", *(f"{name}={uri}" for name, uri in inputs.items()), "--json", str(out), "--cluster", "ray",
        "--workers", "2", timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert f"vidpipe: missing: {inputs['missing']}: no such file" in lines
    assert f"vidpipe: corrupt: {inputs['corrupt']}: not a video file (GStreamer cannot recognise its format)" in lines
    cam = [line for line in lines if line.startswith("vidpipe: cam: ")]
    assert len(cam) == 1 and "rtsp://admin:***@127.0.0.1:" in cam[0] and "cannot connect" in cam[0], lines
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in records if r.get("stream") == "good" and "detections" in r] == list(range(30))
    assert sorted(r["stream"] for r in records if r.get("event") == "failed") == ["cam", "corrupt", "missing", "odd"]
    odd = inputs["odd"].replace("\x1b", "\\x1b").replace("\x07", "\\x07")
    assert f"vidpipe: odd: {odd}: no such file" in lines  # (its ESC and BEL were printed raw to the terminal)
    assert "Traceback" not in result.stderr and "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert SECRET not in result.stdout + result.stderr + out.read_text()
    assert not logged_secret(before)  # (Ray's worker logs: what the workers printed)
    assert not ray_left()


def test_python_on_a_cluster_raises_for_failed_streams_after_the_others(inputs):
    """``vidpipe.detect(..., cluster="ray")`` returned silently (no results, or some) where one process
    raises the stream's error (one stream) or StreamsFailedError (several) after the others finished."""
    streams = [f"good={inputs['good']}", f"missing={inputs['missing']}", f"cam={inputs['cam']}"]
    got = []
    with pytest.raises(StreamsFailedError) as raised:
        for result in vidpipe.detect(streams, cluster="ray", workers=2):
            got.append((result.frame.stream, result.frame.index))
    assert got == [("good", i) for i in range(30)]
    errors = raised.value.errors
    assert sorted(errors) == ["cam", "missing"] and str(errors["missing"]) == f"{inputs['missing']}: no such file"
    assert "rtsp://admin:***@127.0.0.1:" in str(raised.value) and SECRET not in str(raised.value)
    with pytest.raises(VidpipeError, match=r"gone\.mp4: no such file"):
        list(vidpipe.detect(inputs["missing"], cluster="ray", workers=1))
    assert not ray_left()


def test_ctrl_c_keeps_what_was_written_and_leaves_no_ray(tmp_path):
    """(held up) SIGINT to the driver mid-run: exit 130 at once, whole JSON lines, Ray gone."""
    clip = encode(tmp_path / "long.mp4", "x264enc ! mp4mux", 160, 120, frames=900)
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [VIDPIPE, "detect", f"a={clip}", "--json", str(out), "--cluster", "ray", "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while (not out.exists() or out.read_text().count('"detections"') < 30) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "on 1 worker\n" in stderr  # (was '1 workers')
    records = [json.loads(line) for line in out.read_text().splitlines()]  # whole lines only
    frames = [r["frame"] for r in records if "detections" in r]
    assert 30 <= len(frames) < 900 and frames == list(range(len(frames)))
    assert not ray_left()


def test_one_process_says_a_failed_stream_s_control_characters_escaped(inputs):
    """The same lines without a cluster (no Ray): 'vidpipe: error: stream odd: ...' printed ESC raw."""
    result = vidpipe_cli("detect", f"good={inputs['good']}", f"odd={inputs['odd']}", "-q")
    odd = inputs["odd"].replace("\x1b", "\\x1b").replace("\x07", "\\x07")
    assert result.returncode == 2 and f"vidpipe: error: stream odd: {odd}: no such file" in result.stderr, result.stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr


def test_a_stream_that_fails_before_its_add_returns_still_raises():
    """A failed stream added again: its new failure may come back (the events' thread) before the add
    returns; the add drops only the earlier failure (it dropped the new one, and the run ended silently)."""
    from vidpipe.cluster.pipeline import ClusterPipeline
    from vidpipe.types import Event

    pipeline = ClusterPipeline(detector="ssd_mobilenet_v2_coco", keep_alive=True)

    class Run:  # (no Ray: the worker's answer comes back at once)
        def add(self, name, uri, options):
            pipeline._event(Event(name, "failed", f"{name}: {uri}: no such file"))

    pipeline._run = Run()
    pipeline._errors["a"] = VidpipeError("the earlier failure")
    pipeline.add_stream("/gone.mp4", name="a")
    with pytest.raises(VidpipeError, match="no such file"):
        pipeline._raise_failures()
