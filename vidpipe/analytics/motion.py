"""Motion: a cheap frame-difference detector on a small grey frame, and the gate that decides which
frames the object detector sees (see docs/motion.md).

The small frame is blurred (3×3) and compared with a running-average background; a pixel has changed
when it differs by more than ``threshold`` grey levels, and the frame moves when the changed pixels
outside the masks make at least ``min_area`` of the unmasked frame. The background follows every frame
(slow light changes and objects that stop are absorbed), much faster after a change of most of the
frame (lights switched on). Pure numpy: about 30 µs a frame at 160×90 (see benchmarks/motion.py).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import VidpipeError
from ..options import MOTION_MODES, MotionOptions
from .geometry import Point, even_odd, parse_polygon, polygon_meets_rect

SMALL_WIDTH = 160  # the small frame is about this wide (every n-th pixel of every n-th row)
ALPHA = 0.1  # the background's share of each new frame
FAST_ALPHA = 0.5  # ... after most of the frame changed at once
GLOBAL_CHANGE = 0.5  # the changed fraction that counts as a change of the whole scene


def check_motion(options: MotionOptions) -> MotionOptions:
    """``options`` when every field makes sense, else one clear error naming the field."""
    for name in ("mode", "threshold", "min_area", "hangover", "refresh"):
        problem = motion_problem(name, getattr(options, name))
        if problem is not None:
            raise VidpipeError(f"motion {name} {problem}")
    for mask in options.masks:
        parse_mask(mask)
    return options


def motion_problem(name: str, value: object) -> str | None:
    """What is wrong with the value of the motion option ``name`` (the rule's words, without the option's
    name, which each front door spells its own way), or None."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if name == "mode" and value not in MOTION_MODES:
        return f"must be one of {', '.join(MOTION_MODES)}, got {value!r}"
    if name == "threshold" and not (number and 1 <= value <= 255):
        return f"must be grey levels from 1 to 255, got {value!r}"
    if name == "min_area" and not (number and 0 < value <= 1):
        return f"must be a fraction of the frame above 0 and at most 1, got {value!r}"
    if name == "hangover" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return f"must be a whole number of frames, 0 or more, got {value!r}"
    if name == "refresh" and not (number and math.isfinite(value) and value >= 0):
        return f"must be seconds, 0 (never) or more, got {value!r}"
    return None


def parse_mask(text: str, what: str = "motion mask") -> tuple[tuple[Point, ...], bool]:
    """A mask polygon, ``x1,y1,x2,y2,x3,y3[,...]`` in pixels or ``rel:`` fractions: its points and
    whether they are fractions (``what`` names it in errors)."""
    if not isinstance(text, str):
        raise VidpipeError(f"{what}: expected a polygon such as 0,0,200,0,200,40,0,40, got {text!r}")
    return parse_polygon(text, what)


def step_for(width: int) -> int:
    """Every how many pixels (and rows) the small frame samples a frame ``width`` pixels wide."""
    return max(1, round(width / SMALL_WIDTH))


def mask_grid(masks: tuple[str, ...], width: int, height: int, step: int) -> np.ndarray | None:
    """``bool[h, w]``: which pixels of the small frame (every ``step``-th of a ``width`` × ``height``
    frame) count, False inside a mask; None without masks. :class:`VidpipeError` when a mask lies wholly
    outside frames of that size, or the masks leave no pixel to watch."""
    if not masks:
        return None
    ys, xs = np.mgrid[0 : (height - 1) // step + 1, 0 : (width - 1) // step + 1].astype(np.float64) * step
    masked = np.zeros(xs.shape, dtype=bool)
    for text in masks:
        points, relative = parse_mask(text)
        if relative:
            points = tuple((x * width, y * height) for x, y in points)
        if not polygon_meets_rect(points, width, height):
            raise VidpipeError(
                f"motion mask {text}: lies outside the frames ({width}x{height} pixels): it would hide nothing"
            )
        masked |= even_odd(points, xs, ys)
    if masked.all():
        raise VidpipeError(
            f"motion masks {'; '.join(masks)}: cover the whole frame ({width}x{height} pixels): no motion could be seen"
        )
    return ~masked


def _blur(image: np.ndarray) -> np.ndarray:
    """3×3 box blur (edges repeated): sensor noise and compression artefacts shrink threefold."""
    padded = np.pad(image, 1, mode="edge")
    h, w = image.shape
    total = np.zeros((h, w), dtype=np.float32)
    for dy in range(3):
        for dx in range(3):
            total += padded[dy : dy + h, dx : dx + w]
    return total / 9.0


class MotionDetector:
    """Says whether a small grey frame (``uint8[h, w]``) moved against the background of the ones
    before it; ``keep`` (from :func:`mask_grid`) leaves out the masked pixels. The first frame moves."""

    def __init__(self, threshold: float, min_area: float, keep: np.ndarray | None = None) -> None:
        self.threshold = threshold
        self.min_area = min_area
        self.keep = keep
        self.changed = 0.0  # the changed fraction of the last frame
        self._background: np.ndarray | None = None

    def __call__(self, small: np.ndarray) -> bool:
        image = _blur(small.astype(np.float32))
        background = self._background
        if background is None or background.shape != image.shape:
            self._background = image
            self.changed = 1.0
            return True
        changed = np.abs(image - background) > self.threshold
        keep = self.keep if self.keep is not None and self.keep.shape == changed.shape else None
        if keep is not None:
            changed &= keep
            area = max(1, int(keep.sum()))
        else:
            area = changed.size
        self.changed = float(changed.sum()) / area
        alpha = FAST_ALPHA if self.changed > GLOBAL_CHANGE else ALPHA
        background += alpha * (image - background)
        return self.changed >= self.min_area


class MotionGate:
    """Which frames of one stream go to the object detector: those that move, ``hangover`` frames after
    motion ends, and one every ``refresh`` seconds of stream time in a still scene (0: none)."""

    def __init__(self, options: MotionOptions, width: int, height: int) -> None:
        self.step = step_for(width)
        keep = mask_grid(options.masks, width, height, self.step)
        self.detector = MotionDetector(options.threshold, options.min_area, keep)
        self.hangover = options.hangover
        self.refresh = options.refresh
        self._left = 0  # frames of hang-over left
        self._last: float | None = None  # pts of the last frame let through

    def __call__(self, small: np.ndarray, pts: float | None) -> bool:
        """Whether the frame whose small grey picture is ``small`` (at ``pts`` seconds) is detected."""
        moving = self.detector(small)
        if moving:
            self._left = self.hangover
        elif self._left > 0:
            self._left -= 1
            moving = True
        elif self.refresh and pts is not None and self._last is not None and pts - self._last >= self.refresh:
            moving = True
        if moving and pts is not None:
            self._last = pts
        return moving
