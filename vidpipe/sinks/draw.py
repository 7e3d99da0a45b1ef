"""Annotations people can read: boxes with labels in a TrueType font sized to the frame, a colour per
track (or per class), labels kept inside the frame and off each other, lines and zones with their live
counts, and optional trails. Drawn with Pillow."""

from __future__ import annotations

import colorsys
import functools
import math
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..types import Result, Shape


def _palette(n: int = 24) -> list[tuple[int, int, int]]:
    """``n`` bright colours; neighbouring ids are 105° of hue apart (and alternate in saturation), so
    tracks 3 and 4, or classes 1 and 2, never look alike."""
    colors = []
    for i in range(n):
        hue = (i * 7 % n) / n
        saturation, value = (1.0, 1.0) if i % 2 == 0 else (0.65, 0.95)
        r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return colors


PALETTE = _palette()
SHAPE_COLOR = (255, 255, 255)  # lines and zones, white on a black edge
FONT_FILES = (  # fonts-dejavu-core on Debian and Ubuntu; Pillow's own scalable font otherwise
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
)


def color_for(key: int) -> tuple[int, int, int]:
    """The RGB colour of a track id (or a class id when not tracking)."""
    return PALETTE[key % len(PALETTE)]


@functools.lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans Bold at ``size`` pixels when installed, else Pillow's built-in scalable font."""
    for path in FONT_FILES:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


def sizes(height: int) -> tuple[int, int]:
    """Text size and line width for frames ``height`` pixels high: readable from 288p to 4K."""
    return max(11, round(height / 36)), max(3, round(height / 240))


def _text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


Rect = tuple[float, float, float, float]


def _within(start: float, size: float, limit: float) -> float:
    """``start`` moved so that ``size`` from it fits in ``0 .. limit`` (at 0 when it cannot)."""
    return min(max(0.0, start), max(0.0, limit - size))


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_label(size: tuple[float, float], box: Sequence[float], frame: tuple[int, int], taken: list[Rect]) -> Rect:
    """Where a label of ``size`` (w, h) goes for ``box``: above it, else inside its top, below it, inside
    its bottom, or further down, the first place inside the frame that overlaps no label in ``taken``
    (above it when none is free). The place is added to ``taken``."""
    (tw, th), (width, height) = size, frame
    x = _within(box[0], tw, width)
    candidates = [box[1] - th, box[1], box[3], box[3] - th] + [box[1] + k * th for k in range(1, 6)]
    places = [(x, y, x + tw, y + th) for y in (_within(y, th, height) for y in candidates)]
    rect = next((r for r in places if not any(_overlaps(r, other) for other in taken)), places[0])
    taken.append(rect)
    return rect


def place_caption(
    size: tuple[float, float], anchor: tuple[float, float], frame: tuple[int, int], obstacles: Sequence[Rect]
) -> Rect:
    """Where a line's or zone's caption goes: centred on ``anchor`` if that is clear of ``obstacles``
    (boxes, other captions), else the nearest clear place around it (above, below, left, right, further
    out), inside the frame; centred on the anchor when nothing is clear."""
    (tw, th), (width, height) = size, frame
    tries = [(0.0, 0.0)]
    for step in (1, 2, 3, 4):
        tries += [(0, -step * th), (0, step * th), (-step * tw, 0), (step * tw, 0)]
    for dx, dy in tries:
        x = _within(anchor[0] - tw / 2 + dx, tw, width)
        y = _within(anchor[1] - th / 2 + dy, th, height)
        rect = (x, y, x + tw, y + th)
        if not any(_overlaps(rect, other) for other in obstacles):
            return rect
    x, y = _within(anchor[0] - tw / 2, tw, width), _within(anchor[1] - th / 2, th, height)
    return (x, y, x + tw, y + th)


class Annotator:
    """Draws results on the frames of one stream (it keeps the trails of that stream's tracks)."""

    def __init__(self, trails: int = 0) -> None:
        self.trails = trails
        self._paths: dict[int, deque] = {}
        self._last_seen: dict[int, int] = {}

    def draw(self, result: Result) -> torch.Tensor:
        """A copy of the result's frame (``uint8[H, W, 3]``) with its detections, shapes and trails."""
        frame = result.frame.tensor
        found = result.detections
        if not len(found) and not result.shapes and not self._paths:
            return frame  # (its privacy regions are filled already)
        image = Image.fromarray(frame.numpy())
        canvas = ImageDraw.Draw(image)
        width, height = image.size
        text_size, line = sizes(height)
        face = font(text_size)
        taken: list[Rect] = []
        boxes = found.boxes.tolist()
        tracks = found.track_ids.tolist() if found.track_ids is not None else [-1] * len(found)
        colors = [
            color_for(t) if t >= 0 else color_for(c) for t, c in zip(tracks, found.class_ids.tolist(), strict=True)
        ]
        if self.trails:
            self._draw_trails(canvas, boxes, tracks, result.frame.index, line)
        anchors = [self._draw_shape(canvas, shape, line, (width, height)) for shape in result.shapes]
        for box, color in zip(boxes, colors, strict=True):
            canvas.rectangle(box, outline=color, width=line)
        for shape, anchor in zip(result.shapes, anchors, strict=True):  # clear of the boxes, on top of them
            self._draw_caption(canvas, shape.caption, anchor, face, (width, height), boxes, taken)
        for box, label, score, track, color in zip(
            boxes, found.labels, found.scores.tolist(), tracks, colors, strict=True
        ):
            caption = f"{label} {track} {score:.2f}" if track >= 0 else f"{label} {score:.2f}"
            self._draw_label(canvas, caption, box, color, face, (width, height), taken)
        drawn = torch.from_numpy(np.asarray(image).copy())
        if result.privacy is not None and result.privacy.shape == drawn.shape[:2]:
            drawn.masked_fill_(result.privacy.unsqueeze(-1), 0)  # nothing drawn shows in a privacy region
        return drawn

    def _draw_label(self, canvas, text, box, color, face, frame_size, taken) -> None:
        left, top, right, bottom = canvas.textbbox((0, 0), text, font=face)
        place = place_label((right - left + 6, bottom - top + 4), box, frame_size, taken)
        canvas.rectangle(place, fill=color)
        canvas.text((place[0] + 3 - left, place[1] + 2 - top), text, fill=_text_color(color), font=face)

    def _draw_shape(self, canvas, shape: Shape, line, frame_size) -> tuple[float, float]:
        """The line or polygon (and a line's arrow); returns where its caption belongs."""
        points = [tuple(p) for p in shape.points]
        if shape.closed:
            canvas.polygon(points, outline=SHAPE_COLOR, width=line)
            anchor = points[0]
        else:
            canvas.line(points, fill=(0, 0, 0), width=line + 2)
            canvas.line(points, fill=SHAPE_COLOR, width=line)
            anchor = ((points[0][0] + points[1][0]) / 2, (points[0][1] + points[1][1]) / 2)
            if shape.arrow:
                _draw_in_arrow(canvas, points[0], points[1], font(sizes(frame_size[1])[0]), line, frame_size)
        return anchor

    def _draw_caption(self, canvas, caption: str, anchor, face, frame_size, boxes, taken) -> None:
        left, top, right, bottom = canvas.textbbox((0, 0), caption, font=face)
        rect = place_caption((right - left + 8, bottom - top + 6), anchor, frame_size, [*boxes, *taken])
        taken.append(rect)
        canvas.rectangle(rect, fill=(0, 0, 0))
        canvas.text((rect[0] + 4 - left, rect[1] + 3 - top), caption, fill=SHAPE_COLOR, font=face)

    def _draw_trails(self, canvas, boxes, tracks, index: int, line: int) -> None:
        for box, track in zip(boxes, tracks, strict=True):
            if track < 0:
                continue
            path = self._paths.setdefault(track, deque(maxlen=self.trails))
            path.append(((box[0] + box[2]) / 2, box[3]))
            self._last_seen[track] = index
        for track in [t for t, seen in self._last_seen.items() if index - seen > self.trails]:
            del self._paths[track], self._last_seen[track]
        for track, path in self._paths.items():
            if len(path) > 1:
                canvas.line(list(path), fill=color_for(track), width=line)


def in_direction(start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    """The unit vector pointing to the side of a line that counts as ``in`` (where
    :func:`vidpipe.analytics.geometry.side` is negative: supervision's convention)."""
    dx, dy = end[0] - start[0], end[1] - start[1]
    length = math.hypot(dx, dy) or 1.0
    return dy / length, -dx / length


def _draw_in_arrow(canvas, start, end, face, line: int, frame_size: tuple[int, int]) -> None:
    """An arrow three quarters along a counting line, pointing to its ``in`` side, labelled ``in``."""
    nx, ny = in_direction(start, end)
    size = max(14.0, 0.07 * min(frame_size))
    bx, by = start[0] + 0.75 * (end[0] - start[0]), start[1] + 0.75 * (end[1] - start[1])
    tip = (bx + size * nx, by + size * ny)
    head = size * 0.4
    ux, uy = -ny, nx  # along the line
    wings = [(tip[0] - head * nx + head * 0.6 * ux, tip[1] - head * ny + head * 0.6 * uy),
             (tip[0] - head * nx - head * 0.6 * ux, tip[1] - head * ny - head * 0.6 * uy)]  # fmt: skip
    for width, color in ((line + 2, (0, 0, 0)), (line, SHAPE_COLOR)):
        canvas.line([(bx, by), tip], fill=color, width=width)
        canvas.polygon([tip, *wings], fill=color)
    canvas.text((tip[0] + 3 * nx + 2, tip[1] + 3 * ny), "in", fill=SHAPE_COLOR, font=face, stroke_width=1,
                stroke_fill=(0, 0, 0))  # fmt: skip
