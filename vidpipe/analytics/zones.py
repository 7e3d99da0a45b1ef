"""Zone counting: tracked objects that enter and leave polygons, and how many are in each per frame."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import VidpipeError
from ..types import Event, Result, Shape
from .geometry import (
    Point,
    check_anchor,
    crossing_edges,
    inside,
    parse_polygon,
    polygon_meets_rect,
    side,
    tracked_anchors,
)
from .lines import check_names, split_name


@dataclass(frozen=True)
class Zone:
    """A polygon (at least 3 points) in pixels of one stream's frames (``stream`` None: of every stream)."""

    name: str
    points: tuple[Point, ...]
    stream: str | None = None
    relative: bool = False  # the points are fractions of the frame (see resolved)
    loiter: float | None = None  # seconds inside after which a track raises one ``loitering`` event per visit

    def resolved(self, width: int, height: int) -> Zone:
        """The zone in pixels of a ``width`` × ``height`` frame (itself when it is in pixels already)."""
        if not self.relative:
            return self
        points = tuple((x * width, y * height) for x, y in self.points)
        return Zone(self.name, points, self.stream, loiter=self.loiter)

    def __post_init__(self) -> None:
        if self.loiter is not None and not self.loiter > 0:
            raise VidpipeError(f"zone {self.name}: loitering needs a time above 0 seconds, got {self.loiter}")
        if len(self.points) < 3:
            raise VidpipeError(f"zone {self.name}: a polygon needs at least 3 points, got {len(self.points)}")
        start, *rest = self.points
        far = max(rest, key=lambda p: abs(p[0] - start[0]) + abs(p[1] - start[1]))
        if all(side(start, far, p) == 0 for p in rest):
            raise VidpipeError(f"zone {self.name}: its points are on one line (the polygon has no area)")
        crossed = crossing_edges(self.points)
        if crossed is not None:
            i, j = crossed
            n = len(self.points)
            edge = [f"({x:g},{y:g})" for x, y in self.points]
            raise VidpipeError(
                f"zone {self.name}: the zone's edges cross ({edge[i]}-{edge[(i + 1) % n]} and "
                f"{edge[j]}-{edge[(j + 1) % n]}): list the corners in order around the zone"
            )


def parse_zone(text: str) -> Zone:
    """``[STREAM:]NAME=x1,y1,x2,y2,x3,y3[,...]`` (the ``--zone`` syntax) → :class:`Zone`."""
    stream, name, values = split_name(text, "zone")
    points, relative = parse_polygon(values, f"zone {name}")
    return Zone(name, points, stream, relative)


@dataclass
class _Track:
    inside: bool = False
    pending: int = 0  # frames in a row on the other side of the border
    entered: float = 0.0  # pts when it entered
    last_seen: float = 0.0
    label: str = ""
    loitered: bool = False  # this visit raised its loitering event


@dataclass
class _ZoneState:
    zone: Zone
    entered: int = 0
    left: int = 0
    peak: int = 0
    loitering: int = 0
    tracks: dict[tuple[str, int], _Track] = field(default_factory=dict)


class ZoneCounter:
    """Stage that adds ``zone_entered`` / ``zone_left`` events and sets ``result.zones`` (tracked
    objects inside each zone, in this frame).

    A track changes state once its anchor point has been on the other side of the border for
    ``min_frames`` frames in a row (so an object standing on the border does not flicker in and out).
    A track inside that is not seen for ``lost_after`` seconds leaves the zone (``"lost": true``).
    ``zone_left`` says how long the object stayed (``dwell``, seconds). A zone with ``loiter`` seconds
    raises one ``loitering`` event per track and visit once it has been inside that long. Needs track ids.
    """

    def __init__(
        self,
        zones: Iterable[Zone | str],
        *,
        anchor: str = "bottom_center",
        min_frames: int = 2,
        lost_after: float = 1.0,
    ) -> None:
        self.zones = [parse_zone(z) if isinstance(z, str) else z for z in zones]
        check_names([zone.name for zone in self.zones], "zone")
        self.anchor = check_anchor(anchor)
        self.min_frames = min_frames
        self.lost_after = lost_after
        self._states = [_ZoneState(zone) for zone in self.zones]
        self._given = list(self.zones)  # as given (fractions of the frame stay fractions)
        self._checked: dict[str, tuple[int, int]] = {}  # each stream's frame size the zones were checked against

    def totals(self) -> dict[str, dict]:
        """``{zone: {"entered": n, "left": m, "peak": most inside at once, "occupancy": inside now,
        "labels": {label: inside now}}}`` (and ``"loitering": n`` for a zone with a loitering time)."""
        totals = {}
        for s in self._states:
            labels: dict[str, int] = {}
            for track in list(s.tracks.values()):
                if track.inside:
                    labels[track.label] = labels.get(track.label, 0) + 1
            totals[s.zone.name] = {"entered": s.entered, "left": s.left, "peak": s.peak,
                                   "occupancy": sum(labels.values()), "labels": labels}  # fmt: skip
            if s.zone.loiter is not None:
                totals[s.zone.name]["loitering"] = s.loitering
        return totals

    def __call__(self, result: Result) -> Result:
        frame = result.frame
        if self._checked.get(frame.stream) != (frame.width, frame.height):
            # its first frame, or its frames changed size (a GStreamer caps change): fractions to pixels of
            # this size, and the zones must meet it (a zone left outside would count nothing, silently)
            for state, given in zip(self._states, self._given, strict=True):
                state.zone = given.resolved(frame.width, frame.height)
            self.zones = [state.zone for state in self._states]
            for zone in self.zones:
                if zone.stream in (None, frame.stream) and not polygon_meets_rect(
                    zone.points, frame.width, frame.height
                ):
                    raise VidpipeError(
                        f"zone {zone.name}: lies outside the frames of stream {frame.stream} "
                        f"({frame.width}x{frame.height} pixels)"
                    )
            self._checked[frame.stream] = (frame.width, frame.height)
        tracked = tracked_anchors(result, self.anchor, "ZoneCounter")
        occupancy = dict(result.zones or {})
        for state in self._states:
            zone = state.zone
            if zone.stream is not None and zone.stream != frame.stream:
                continue
            present = set()
            for point, track, label in tracked:
                key = (frame.stream, track)
                present.add(key)
                event = self._step(state, key, inside(zone.points, point), label, frame.pts)
                if event:
                    result.events.append(self._event(result, state, key, event))
                track_state = state.tracks[key]
                if (
                    zone.loiter is not None
                    and track_state.inside
                    and not track_state.loitered
                    and frame.pts - track_state.entered >= zone.loiter
                ):
                    track_state.loitered = True
                    state.loitering += 1
                    result.events.append(self._event(result, state, key, "loitering"))
            for key, track_state in list(state.tracks.items()):
                if key[0] != frame.stream or key in present:
                    continue
                if frame.pts - track_state.last_seen > self.lost_after or frame.pts < track_state.last_seen:
                    if track_state.inside:
                        result.events.append(self._event(result, state, key, "zone_left", lost=True))
                        state.left += 1
                    del state.tracks[key]
            count = sum(1 for key in present if state.tracks[key].inside)
            state.peak = max(state.peak, count)
            occupancy[zone.name] = count
            result.shapes.append(Shape(zone.points, f"{zone.name}  {count}", closed=True))
        result.zones = occupancy
        return result

    def _step(self, state: _ZoneState, key: tuple[str, int], now_inside: bool, label: str, pts: float) -> str | None:
        track = state.tracks.get(key)
        if track is None:  # a new track: where it is first seen counts at once
            track = state.tracks[key] = _Track(inside=now_inside, entered=pts, label=label)
            track.last_seen = pts
            if now_inside:
                state.entered += 1
                return "zone_entered"
            return None
        track.last_seen = pts
        if now_inside == track.inside:
            track.pending = 0
            return None
        track.pending += 1
        if track.pending < self.min_frames:
            return None
        track.inside, track.pending = now_inside, 0
        if now_inside:
            track.entered, track.loitered = pts, False
            state.entered += 1
            return "zone_entered"
        state.left += 1
        return "zone_left"

    def _event(self, result: Result, state: _ZoneState, key: tuple[str, int], kind: str, lost: bool = False) -> Event:
        frame = result.frame
        track = state.tracks[key]
        fields = {
            "frame": frame.index,
            "pts": round(frame.pts, 6),
            "zone": state.zone.name,
            "track_id": key[1],
            "label": track.label,
        }
        verb = "entered"
        if kind == "loitering":
            fields["dwell"] = round(max(0.0, frame.pts - track.entered), 3)
            fields["loiter"] = state.zone.loiter
            verb = "is loitering in"
        elif kind == "zone_left":
            fields["dwell"] = round(max(0.0, (track.last_seen if lost else frame.pts) - track.entered), 3)
            verb = "left"
            if lost:
                fields["lost"] = True
        return Event(frame.stream, kind, f"{track.label} {key[1]} {verb} {state.zone.name}", frame.wall, fields)
