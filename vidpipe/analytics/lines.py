"""Line counting: tracked objects that cross a line segment, with their direction."""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import VidpipeError
from ..types import Event, Result, Shape
from .geometry import Point, along, check_anchor, parse_coordinates, segment_meets_rect, side, tracked_anchors


@dataclass(frozen=True)
class Line:
    """A counting line from ``start`` to ``end`` in pixels of one stream's frames (``stream`` None: of
    every stream). Crossing from the positive side of :func:`~vidpipe.analytics.geometry.side` to the
    negative one is ``in``, the reverse ``out``: supervision's ``LineZone`` convention (the anchor
    moving to the right of the direction start → end, in image coordinates, is ``in``)."""

    name: str
    start: Point
    end: Point
    stream: str | None = None
    relative: bool = False  # start and end are fractions of the frame (see resolved)

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise VidpipeError(f"line {self.name}: its two ends are the same point")

    @property
    def length(self) -> float:
        return math.dist(self.start, self.end)

    def resolved(self, width: int, height: int) -> Line:
        """The line in pixels of a ``width`` × ``height`` frame (itself when it is in pixels already)."""
        if not self.relative:
            return self
        scale = lambda p: (p[0] * width, p[1] * height)  # noqa: E731
        return Line(self.name, scale(self.start), scale(self.end), self.stream)


def split_name(text: str, what: str) -> tuple[str | None, str, str]:
    """``[STREAM:]NAME=VALUES`` → (stream or None, name, values)."""
    head, sep, values = text.partition("=")
    if not sep or not head.strip() or not values.strip():
        raise VidpipeError(f"{what} {text!r}: expected [STREAM:]NAME=NUMBERS")
    stream, colon, name = head.partition(":")
    if not colon:
        stream, name = None, head
    if not name.strip() or (stream is not None and not stream.strip()):
        raise VidpipeError(f"{what} {text!r}: empty stream or name before '='")
    if any(unicodedata.category(c) == "Cc" for c in head):  # (a line break, a terminal's escape: forged logs)
        raise VidpipeError(f"{what} {text!r}: its name holds a control character")
    return (stream.strip() if stream is not None else None), name.strip(), values


def check_names(names: list[str], kind: str) -> None:
    """Each line (or zone) names its own counts: refuse two with one name (``kind``: line or zone)."""
    if len(set(names)) != len(names):
        raise VidpipeError(f"each {kind} needs its own name, got {', '.join(names)}")


def parse_line(text: str) -> Line:
    """``[STREAM:]NAME=x1,y1,x2,y2`` (the ``--line`` syntax) → :class:`Line`."""
    stream, name, values = split_name(text, "line")
    numbers, relative = parse_coordinates(values, f"line {name}")
    if len(numbers) != 4:
        raise VidpipeError(f"line {name}: expected 4 numbers x1,y1,x2,y2, got {len(numbers)}")
    return Line(name, (numbers[0], numbers[1]), (numbers[2], numbers[3]), stream, relative)


@dataclass
class _Track:
    side: int = 0  # the confirmed side: -1, +1, 0 while unknown
    pending: int = 0  # frames in a row on the other side
    within: bool = False  # the anchor passed the line within the segment's extent
    last_seen: float = 0.0


@dataclass
class _LineState:
    line: Line
    counts: Counter[str] = field(default_factory=Counter)
    tracks: dict[tuple[str, int], _Track] = field(default_factory=dict)


class LineCounter:
    """Stage that counts tracked objects crossing lines and adds a ``line_crossed`` event to the result
    of the frame where each crossing is confirmed.

    A crossing is confirmed once the anchor point (``bottom_center`` or ``center`` of the box) has moved
    to the other side, within the segment's extent, and then either stayed there ``min_frames`` frames
    in a row or gone ``min_distance`` pixels past the line. An object that stops on the line and
    jitters across it therefore counts once, in the direction it finally goes. Needs track ids (run a
    :class:`~vidpipe.analytics.Tracker` first).
    """

    def __init__(
        self,
        lines: Iterable[Line | str],
        *,
        anchor: str = "bottom_center",
        min_frames: int = 3,
        min_distance: float = 10.0,
        forget_after: float = 5.0,
    ) -> None:
        self.lines = [parse_line(x) if isinstance(x, str) else x for x in lines]
        check_names([line.name for line in self.lines], "line")
        self.anchor = check_anchor(anchor)
        self.min_frames = min_frames
        self.min_distance = min_distance
        self.forget_after = forget_after
        self._states = [_LineState(line) for line in self.lines]
        self._given = list(self.lines)  # as given (fractions of the frame stay fractions)
        self._checked: dict[str, tuple[int, int]] = {}  # each stream's frame size the lines were checked against

    def totals(self) -> dict[str, dict[str, int]]:
        """Crossings so far: ``{line: {"in": n, "out": m}}``."""
        return {s.line.name: {"in": s.counts["in"], "out": s.counts["out"]} for s in self._states}

    def __call__(self, result: Result) -> Result:
        frame = result.frame
        if self._checked.get(frame.stream) != (frame.width, frame.height):
            # its first frame, or its frames changed size (a GStreamer caps change): fractions to pixels of
            # this size, and the lines must meet it (a line left outside would count nothing, silently)
            for state, given in zip(self._states, self._given, strict=True):
                state.line = given.resolved(frame.width, frame.height)
            self.lines = [state.line for state in self._states]
            for line in self.lines:
                if line.stream in (None, frame.stream) and not segment_meets_rect(
                    line.start, line.end, frame.width, frame.height
                ):
                    raise VidpipeError(
                        f"line {line.name}: {_point(line.start)}-{_point(line.end)} lies outside the frames "
                        f"of stream {frame.stream} ({frame.width}x{frame.height} pixels)"
                    )
            self._checked[frame.stream] = (frame.width, frame.height)
        tracked = tracked_anchors(result, self.anchor, "LineCounter")
        for state in self._states:
            line = state.line
            if line.stream is not None and line.stream != frame.stream:
                continue
            for point, track, label in tracked:
                direction = self._step(state, (frame.stream, track), point, frame.pts)
                if direction:
                    state.counts[direction] += 1
                    result.events.append(_event(result, line.name, direction, track, label))
            self._forget(state, frame.pts)
            counts = f"{line.name}  in {state.counts['in']}  out {state.counts['out']}"
            result.shapes.append(Shape((line.start, line.end), counts, arrow=True))
        return result

    def _step(self, state: _LineState, key: tuple[str, int], point: Point, now: float) -> str | None:
        line = state.line
        track = state.tracks.get(key)
        if track is None:
            track = state.tracks[key] = _Track()
        track.last_seen = now
        distance = side(line.start, line.end, point) / line.length
        current = 1 if distance > 0 else -1 if distance < 0 else 0
        if current == 0:
            return None  # on the line: no side yet
        if track.side == 0:
            track.side = current
            return None
        if current == track.side:
            track.pending, track.within = 0, False
            return None
        if track.pending == 0:  # it just passed the line: through the segment, or around its end?
            track.within = 0.0 <= along(line.start, line.end, point) <= 1.0
        track.pending += 1
        if track.pending < self.min_frames and abs(distance) < self.min_distance:
            return None
        previous, track.side, track.pending = track.side, current, 0
        if not track.within:
            return None  # went round the end of the segment
        return "in" if previous > 0 else "out"  # supervision's LineZone: in is onto the negative side

    def _forget(self, state: _LineState, now: float) -> None:
        if len(state.tracks) > 256:  # tracks long gone: keep memory bounded on endless streams
            old = [k for k, t in state.tracks.items() if now - t.last_seen > self.forget_after or now < t.last_seen]
            for key in old:
                del state.tracks[key]


def _point(point: Point) -> str:
    return f"({point[0]:g},{point[1]:g})"


def _event(result: Result, line: str, direction: str, track: int, label: str) -> Event:
    frame = result.frame
    return Event(
        frame.stream,
        "line_crossed",
        f"{label} {track} crossed {line} ({direction})",
        wall=frame.wall,
        fields={
            "frame": frame.index,
            "pts": round(frame.pts, 6),
            "line": line,
            "direction": direction,
            "track_id": track,
            "label": label,
        },
    )
