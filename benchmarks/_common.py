"""Helpers shared by the benchmarks: clip preparation, repeated timing, table printing."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "media" / "sample.mp4"


def gst_launch(description: str) -> str:
    result = subprocess.run(["gst-launch-1.0", *description.split()], capture_output=True, text=True, check=True)
    return result.stdout


def make_1080p(path: Path, frames: int = 300) -> Path:
    """A 1920×1080 H.264/MP4 clip (moving test pattern), made once."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        gst_launch(
            f"videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,width=1920,height=1080,framerate=30/1 "
            f"! x264enc speed-preset=ultrafast ! mp4mux ! filesink location={path}"
        )
    return path


def repeat(run: Callable[[], float], rounds: int) -> list[float]:
    """Call ``run`` (which returns a rate) ``rounds`` times."""
    return [run() for _ in range(rounds)]


def best(values: list[float]) -> float:
    return max(values)


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], int]) -> float:
    """Frames per second of ``fn``, which returns the number of frames it handled."""
    start = time.perf_counter()
    frames = fn()
    return frames / (time.perf_counter() - start)


def rss_mb() -> float:
    """This process's resident memory in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def opencv_net():
    """OpenCV DNN's network read from the bundled TensorFlow graph: the reference. OpenCV 5 removed the
    TensorFlow importer: the test extra asks for ``opencv-python<5`` (``make test`` installs the locked 4.x)."""
    import cv2

    from vidpipe.models.ssd_mobilenet_v2 import bundled_graph

    if not hasattr(cv2.dnn, "readNetFromTensorflow"):
        raise SystemExit(f"opencv-python {cv2.__version__} has no TensorFlow importer: pip install 'opencv-python<5'")
    graph = bundled_graph()
    return cv2.dnn.readNetFromTensorflow(str(graph), str(graph.with_name("ssd_mobilenet_v2_coco_2018_03_29.pbtxt")))
