from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from media import CLIPS, encode, gst_launch

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "media" / "sample.mp4"


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the mark into the test's group
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``-n N --dist loadgroup`` (``make test``), the tests marked ``ray`` (each starts a local Ray
    and looks for its processes) run one after another in one worker; the others go to whichever is free."""
    for item in items:
        if item.get_closest_marker("ray"):
            item.add_marker(pytest.mark.xdist_group("ray"))


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def clips(media_dir: Path) -> dict[str, tuple[Path, int, int]]:
    made = {}
    for name, (chain, width, height, ext) in CLIPS.items():
        made[name] = (encode(media_dir / f"{name}.{ext}", chain, width, height), width, height)
    return made


@pytest.fixture(scope="session")
def bad_files(media_dir: Path) -> dict[str, Path]:
    """Broken inputs: each should give a specific, clear error."""
    files = {}
    files["empty"] = media_dir / "empty.mp4"
    files["empty"].write_bytes(b"")
    files["text"] = media_dir / "notes.mp4"
    files["text"].write_text("these are not the frames you are looking for\n" * 50)
    files["audio"] = media_dir / "audio.ogg"
    gst_launch(f"audiotestsrc num-buffers=40 ! audioconvert ! vorbisenc ! oggmux ! filesink location={files['audio']}")
    # moov at the end (mp4mux's default), then cut: the index is gone.
    whole = encode(media_dir / "whole.mp4", "x264enc ! mp4mux", 320, 240, frames=60)
    files["no_moov"] = media_dir / "no_moov.mp4"
    files["no_moov"].write_bytes(whole.read_bytes()[:-4000])
    # moov first (faststart), then cut in the media data: frames before the cut decode.
    faststart = encode(media_dir / "faststart.mp4", "x264enc ! mp4mux faststart=true", 320, 240, frames=90)
    files["truncated"] = media_dir / "truncated.mp4"
    data = faststart.read_bytes()
    files["truncated"].write_bytes(data[: len(data) * 6 // 10])
    return files


@pytest.fixture(scope="session")
def sample() -> Path:
    return SAMPLE


def vidpipe_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess."""
    full_env = dict(os.environ, **(env or {}))
    exe = shutil.which("vidpipe", path=str(Path(sys.executable).parent)) or "vidpipe"
    return subprocess.run([exe, *args], capture_output=True, text=True, env=full_env, timeout=timeout)


def start_server(*args: str) -> tuple[subprocess.Popen, str]:
    """Start the project's RTSP test server (a real GstRtspServer on 127.0.0.1); return it and its URL."""
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("rtsp_server.py")), *args], stdout=subprocess.PIPE, text=True
    )
    line = server.stdout.readline().split()
    if not line or line[0] != "READY":
        server.kill()
        raise RuntimeError("RTSP server did not start")
    return server, f"rtsp://127.0.0.1:{line[1]}/test"


@pytest.fixture
def rtsp_server():
    server, url = start_server()
    try:
        yield url
    finally:
        server.kill()
        server.wait(10)


def start_detect(*args: str, lines: int = 15, timeout: float = 120) -> subprocess.Popen:
    """Start ``vidpipe detect ARGS`` and return once the JSONL given with ``--json`` holds ``lines`` lines."""
    jsonl = Path(args[list(args).index("--json") + 1])
    exe = Path(sys.executable).with_name("vidpipe")
    proc = subprocess.Popen([str(exe), "detect", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if jsonl.exists() and len(jsonl.read_text().splitlines()) >= lines:
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"detect ended early: {proc.communicate()}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("detect produced no output in time")


def run_on_small_disk(folder: Path, size: str, command: str) -> subprocess.CompletedProcess:
    """Run ``command`` (sh) with a ``size`` tmpfs mounted on ``folder`` in a private mount namespace: a
    full disk without touching the machine's. Skips where mount namespaces or tmpfs are not allowed."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
        pytest.skip("needs mount namespaces (unshare -m) to make a small full disk")
    folder.mkdir()
    script = f"mount -t tmpfs -o size={size} tmpfs {folder} || exit 99; {command}"
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    if result.returncode == 99:
        pytest.skip("cannot mount a tmpfs here")
    return result


def stop_time(proc: subprocess.Popen) -> tuple[float, str]:
    """Seconds from Ctrl-C until vidpipe has finished its outputs and printed its last line; the process
    must have exited within 4 s more (the Python interpreter's own teardown with PyTorch loaded takes
    0.4 to 0.9 s on the project's machines, measured with ``import torch, torchvision`` alone, and up to
    3 s with the 2 cores shared by the suite's two workers and more: 2.4 s in one CI run, 2.8-3.1 s beside
    three busy loops, before and after this round's changes alike)."""
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), line) for line in proc.stderr))
    reader.start()
    proc.wait(timeout=30)
    exited = time.monotonic() - start
    reader.join(10)
    stopped = (lines[-1][0] if lines else time.monotonic()) - start
    assert exited < stopped + 4.0, f"stopped after {stopped:.2f} s, but exited only after {exited:.2f} s"
    return stopped, "".join(line for _, line in lines)
