"""Motion gating in the element (docs/motion.md): the frames where nothing moved skip the detector, as
in vidpipe's own sources. The element has its frame in RGB already; a small grey picture is made from
every n-th pixel of every n-th row of it and fed to the same :class:`MotionGate` the sources use, so
thresholds, masks, hang-over and refresh mean the same."""

from __future__ import annotations

import numpy as np

from ..analytics.motion import MotionGate
from ..gst import Gst
from ..options import MotionOptions


def pipeline_is_live(pad: Gst.Pad) -> bool:
    """Whether the pipeline upstream of ``pad`` is live (a camera, a live test source), by a LATENCY
    query; False when nothing upstream answers."""
    query = Gst.Query.new_latency()
    return bool(pad.peer_query(query) and query.parse_latency()[0])


def small_luma(rgb: np.ndarray, step: int) -> np.ndarray:
    """BT.601 luma (``(77 R + 150 G + 29 B) >> 8``) of every ``step``-th pixel of every ``step``-th row
    of an RGB ``uint8[H, W, 3]`` frame: ``uint8[(H - 1) // step + 1, (W - 1) // step + 1]``."""
    small = rgb[::step, ::step].astype(np.uint16)
    return ((77 * small[..., 0] + 150 * small[..., 1] + 29 * small[..., 2]) >> 8).astype(np.uint8)


class ElementGate:
    """Which of the element's frames go to the detector. ``mode`` ``auto`` gates a live pipeline only
    (asked upstream once per caps), ``on`` every pipeline, ``off`` none."""

    def __init__(self, options: MotionOptions) -> None:
        self.options = options
        self._gate: MotionGate | None = None
        self._live: bool | None = None  # (auto: whether upstream is live, asked at the first frame)

    def reset(self) -> None:
        """New caps: a new picture size, a new background (the next frame is detected)."""
        self._gate = None
        self._live = None

    def active(self, pad: Gst.Pad) -> bool:
        """Whether frames arriving at the element's sink ``pad`` are gated."""
        if self.options.mode == "auto" and self._live is None:
            self._live = pipeline_is_live(pad)
        return self.options.mode == "on" or (self.options.mode == "auto" and bool(self._live))

    def __call__(self, rgb: np.ndarray, pts: float | None) -> bool:
        """Whether the RGB frame ``rgb`` (``uint8[H, W, 3]``, at ``pts`` seconds) must be detected."""
        height, width = rgb.shape[:2]
        if self._gate is None:
            self._gate = MotionGate(self.options, width, height)
        return self._gate(small_luma(rgb, self._gate.step), pts)
