"""Every import order runs: PyTorch, OpenCV and GStreamer imported and initialised before (or after)
vidpipe, then detection with the defaults, each order in a process of its own. GStreamer's libunwind
and GCC's libgcc_s must not both unwind C++ exceptions (see vidpipe.unwinder): vidpipe arranges the
order when it is imported first, and otherwise runs without OpenVINO and says so in one line."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import pytest
from conftest import SAMPLE

pytest.importorskip("openvino")

STEPS = {
    "torch": "import torch",
    "cv2": "import cv2",
    "gst": "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst; Gst.init(None)",
    "vidpipe": "import vidpipe",
}
SCRIPT = """
import logging, sys
logging.basicConfig(format="%(message)s")
{steps}
import vidpipe
from vidpipe import models
det = models.load(backend=sys.argv[1], precision="auto")
found = list(vidpipe.detect({sample!r}, det, max_frames=4))
print("backend", det.backend, "frames", len(found))
"""


def run(order: tuple[str, ...], backend: str = "auto") -> subprocess.CompletedProcess:
    script = SCRIPT.format(steps="\n".join(STEPS[s] for s in order), sample=str(SAMPLE))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), backend], capture_output=True, text=True, timeout=180
    )


def _mixed(order: tuple[str, ...]) -> bool:
    """GStreamer initialised before vidpipe and after a C++ library: the one case vidpipe cannot arrange."""
    gst = order.index("gst")
    before_vidpipe = "vidpipe" not in order or gst < order.index("vidpipe")
    return before_vidpipe and any(order.index(lib) < gst for lib in ("torch", "cv2") if lib in order)


ORDERS = [
    *itertools.permutations(("torch", "cv2", "gst")),
    ("vidpipe", "torch", "gst"),
    ("torch", "vidpipe", "cv2", "gst"),
    ("gst", "vidpipe"),
]


@pytest.mark.slow
@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
def test_every_import_order_runs(order):
    result = run(order)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    backend = "torch" if _mixed(order) else "openvino"
    assert f"backend {backend} frames 4" in result.stdout
    said = [line for line in result.stderr.splitlines() if "OpenVINO is not used" in line]
    assert len(said) == (1 if _mixed(order) else 0), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_asking_for_openvino_where_it_cannot_run_is_one_error():
    result = run(("torch", "gst"), backend="openvino")
    assert result.returncode != 0 and "Traceback" in result.stderr  # (a script's own uncaught error)
    assert "ModelError: --backend openvino: GStreamer was loaded before vidpipe" in result.stderr
    assert result.returncode == 1  # not an abort (134) or a segfault (139)
