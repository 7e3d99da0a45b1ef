"""Plane geometry of the counters: anchor points of boxes, sides of a line, points in polygons."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import VidpipeError
from ..types import Result

Point = tuple[float, float]
ANCHORS = ("bottom_center", "center")


def check_anchor(anchor: str) -> str:
    """``anchor`` if it names an anchor point, else a clear error."""
    if anchor not in ANCHORS:
        raise VidpipeError(f"unknown anchor {anchor!r} (use {' or '.join(ANCHORS)})")
    return anchor


def anchor_points(boxes: torch.Tensor, anchor: str = "bottom_center") -> torch.Tensor:
    """``float[N, 2]`` points of ``x1, y1, x2, y2`` boxes: the bottom centre (where an object stands on
    the ground) or the centre."""
    x = (boxes[:, 0] + boxes[:, 2]) / 2
    y = boxes[:, 3] if check_anchor(anchor) == "bottom_center" else (boxes[:, 1] + boxes[:, 3]) / 2
    return torch.stack((x, y), dim=1).float()


def tracked_anchors(result: Result, anchor: str, counter: str) -> list[tuple[Point, int, str]]:
    """(anchor point, track id, label) of each tracked detection of ``result`` (track id ≥ 0), for the
    ``counter`` stage; a clear error when no tracker ran before it."""
    found = result.detections
    if found.track_ids is None:
        what = counter.removesuffix("Counter").lower()
        raise VidpipeError(f"{what} counting needs track ids: put a Tracker stage before the {counter}")
    points = anchor_points(found.boxes, anchor).tolist()
    tracked = zip(points, found.track_ids.tolist(), found.labels, strict=True)
    return [(point, track, label) for point, track, label in tracked if track >= 0]


def side(start: Point, end: Point, point: Point) -> float:
    """Signed area (x2−x1)(py−y1) − (y2−y1)(px−x1): > 0 on one side of the line through ``start`` and
    ``end``, < 0 on the other, 0 on it. Divided by the segment's length it is the distance to the line."""
    (x1, y1), (x2, y2), (px, py) = start, end, point
    return (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)


def along(start: Point, end: Point, point: Point) -> float:
    """Where ``point`` projects on the segment: 0 at ``start``, 1 at ``end`` (outside 0..1: beyond it)."""
    (x1, y1), (x2, y2), (px, py) = start, end, point
    dx, dy = x2 - x1, y2 - y1
    return ((px - x1) * dx + (py - y1) * dy) / (dx * dx + dy * dy)


def inside(polygon: Sequence[Point], point: Point) -> bool:
    """Whether ``point`` lies inside ``polygon`` (even-odd rule; any simple polygon, convex or not)."""
    return bool(even_odd(polygon, *point))


def even_odd(polygon: Sequence[Point], x: Any, y: Any) -> Any:
    """The even-odd rule for the point (``x``, ``y``), or for a whole grid of points at once when ``x``
    and ``y`` are numpy arrays (an array of answers): inside when a ray to its right crosses the
    polygon's edges an odd number of times."""
    result: Any = False
    for (xa, ya), (xb, yb) in zip(polygon, [*polygon[1:], polygon[0]], strict=True):
        if ya != yb:  # (a horizontal edge is never crossed by the horizontal ray)
            result = result ^ (((ya > y) != (yb > y)) & (x < xa + (y - ya) * (xb - xa) / (yb - ya)))
    return result


RELATIVE = "rel:"  # coordinates as fractions of the frame: rel:0.5,0,0.5,1
MAX_PIXEL = 100_000  # a pixel coordinate of a line, zone or region (a frame holds at most 8192x8192 pixels)


def parse_coordinates(text: str, what: str) -> tuple[list[float], bool]:
    """Pixels (``100,0,100,480``) or fractions of the frame (``rel:0.5,0,0.5,1``, each 0 to 1); returns
    the numbers and whether they are fractions."""
    relative = text.strip().startswith(RELATIVE)
    numbers = parse_numbers(text.strip().removeprefix(RELATIVE), what)
    if relative and not all(0.0 <= v <= 1.0 for v in numbers):
        raise VidpipeError(f"{what}: {RELATIVE} coordinates are fractions of the frame, 0 to 1, got {text!r}")
    if not relative and not all(abs(v) <= MAX_PIXEL for v in numbers):  # (drawn: beyond, no picture is made)
        raise VidpipeError(f"{what}: pixel coordinates are within ±{MAX_PIXEL:,} (no frame is larger), got {text!r}")
    return numbers, relative


def parse_polygon(text: str, what: str, counted: str | None = None) -> tuple[tuple[Point, ...], bool]:
    """``x1,y1,x2,y2,x3,y3[,...]`` in pixels or ``rel:`` fractions (a zone, a privacy region, a motion
    mask): its points and whether they are fractions. ``what`` names it in errors (``counted``, when
    given, in the error about the number of points)."""
    numbers, relative = parse_coordinates(text, what)
    if len(numbers) % 2 or len(numbers) < 6:
        raise VidpipeError(f"{counted or what}: expected x,y pairs of at least 3 points, got {len(numbers)} numbers")
    return tuple((numbers[i], numbers[i + 1]) for i in range(0, len(numbers), 2)), relative


def parse_numbers(text: str, what: str) -> list[float]:
    try:
        numbers = [float(v) for v in text.split(",")]
    except ValueError:
        numbers = []
    if not numbers or not all(math.isfinite(v) for v in numbers):
        raise VidpipeError(f"{what}: expected numbers separated by commas, got {text!r}")
    return numbers


def _segments_cross(a: Point, b: Point, c: Point, d: Point) -> bool:
    """Whether segments ab and cd share a point (touching or crossing)."""

    def on(p: Point, q: Point, r: Point) -> bool:  # r on segment pq, given the three are collinear
        return min(p[0], q[0]) <= r[0] <= max(p[0], q[0]) and min(p[1], q[1]) <= r[1] <= max(p[1], q[1])

    d1, d2, d3, d4 = side(c, d, a), side(c, d, b), side(a, b, c), side(a, b, d)
    if ((d1 > 0) != (d2 > 0)) and d1 != 0 and d2 != 0 and ((d3 > 0) != (d4 > 0)) and d3 != 0 and d4 != 0:
        return True
    return (
        (d1 == 0 and on(c, d, a)) or (d2 == 0 and on(c, d, b)) or (d3 == 0 and on(a, b, c)) or (d4 == 0 and on(a, b, d))
    )


def crossing_edges(polygon: Sequence[Point]) -> tuple[int, int] | None:
    """The first two edges of ``polygon`` that are not neighbours and meet (a self-intersecting polygon),
    as indices of their first points; None for a simple polygon."""
    n = len(polygon)
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # the last edge and the first share a corner
            if _segments_cross(polygon[i], polygon[(i + 1) % n], polygon[j], polygon[(j + 1) % n]):
                return i, j
    return None


def segment_meets_rect(start: Point, end: Point, width: float, height: float) -> bool:
    """Whether the segment has a point inside the rectangle [0, width] × [0, height] (Liang–Barsky)."""
    (x1, y1), (x2, y2) = start, end
    dx, dy = x2 - x1, y2 - y1
    low, high = 0.0, 1.0
    for p, q in ((-dx, x1), (dx, width - x1), (-dy, y1), (dy, height - y1)):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            low = max(low, t)
        else:
            high = min(high, t)
        if low > high:
            return False
    return True


def polygon_meets_rect(points: Sequence[Point], width: float, height: float) -> bool:
    """Whether the polygon's extent reaches into the rectangle [0, width] × [0, height] (the rule a zone
    or a motion mask left wholly outside the frame breaks: it would count or hide nothing)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return max(xs) > 0 and max(ys) > 0 and min(xs) < width and min(ys) < height
