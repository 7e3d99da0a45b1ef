"""What each stream's results go through after the detector: the analysis settings of a run, and the
chain of stages built from them for one stream (class filter, tracker, line and zone counters, stages of
the user's). Each stream has its own chain, built when the stream is added and dropped when it is
removed, so counts, track ids and captions never mix streams."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import torch

from .. import rules
from ..errors import VidpipeError
from ..types import Result
from .geometry import check_anchor
from .lines import Line, LineCounter, check_names, parse_line
from .privacy import Privacy, Region, parse_region
from .tracking import Tracker
from .zones import Zone, ZoneCounter, parse_zone

Stage = Callable[[Result], Result]


def check_labels(wanted: set[str], known: Sequence[str], model: str, what: str = "") -> set[str]:
    """``wanted`` when the model knows each label; else one line naming the unknown ones and the known."""
    unknown = wanted - set(known)
    if unknown:
        names = ", ".join(c for c in known if c not in ("N/A", "__background__"))
        raise VidpipeError(f"unknown class(es) {what}{', '.join(sorted(unknown))} for {model} (known: {names})")
    return wanted


class ClassFilter:
    """Keeps only the detections whose label is in ``classes``."""

    def __init__(self, classes: Iterable[str], known: Sequence[str], model: str = "detector") -> None:
        self.classes = check_labels(set(rules.checked("classes", rules.class_names, classes)), known, model)

    def __call__(self, result: Result) -> Result:
        found = result.detections
        keep = torch.tensor([label in self.classes for label in found.labels], dtype=torch.bool)
        return replace(result, detections=found[keep])


@dataclass
class Chain:
    """One stream's stages, applied in order; ``tracker``, ``lines`` and ``zones`` are its own."""

    stream: str
    stages: list[Stage] = field(default_factory=list)
    tracker: Tracker | None = None
    lines: LineCounter | None = None
    zones: ZoneCounter | None = None

    def __call__(self, result: Result) -> Result:
        for stage in self.stages:
            result = stage(result)
        return result

    def totals(self) -> dict:
        """This stream's counts: ``{"lines": {line: {"in", "out"}}, "zones": {zone: {"entered", "left",
        "peak"}}, "tracks": {label: n}}`` (the parts that run)."""
        totals: dict = {}
        if self.lines is not None:
            totals["lines"] = self.lines.totals()
        if self.zones is not None:
            totals["zones"] = self.zones.totals()
        if self.tracker is not None:
            totals["tracks"] = dict(self.tracker.tracks)
        return totals


class Analysis:
    """The analysis settings of a run: ``classes`` to keep (checked against the model's ``known``
    labels), ``track``, ``lines`` and ``zones`` (a ``STREAM:`` prefix limits one to a stream; without,
    it applies to every stream, counted separately per stream), the ``anchor`` point of boxes, and
    ``stages`` of the user's (shared by every stream). :meth:`chain` builds one stream's stages."""

    def __init__(
        self,
        *,
        classes: Iterable[str] | None = None,
        known: Sequence[str] = (),
        model: str = "detector",
        track: bool = False,
        lines: Sequence[Line | str] = (),
        zones: Sequence[Zone | str] = (),
        anchor: str = "bottom_center",
        stages: Sequence[Stage] = (),
        privacy: Sequence[Region | str] = (),
        blur: Sequence[str] = (),
    ) -> None:
        self.privacy = [parse_region(r) if isinstance(r, str) else r for r in privacy]
        self.known, self.model = list(known), model
        self.blur = self._blurred(blur)
        self.class_filter = ClassFilter(classes, known, model) if classes is not None else None
        self.lines = [parse_line(x) if isinstance(x, str) else x for x in lines]
        self.zones = [parse_zone(z) if isinstance(z, str) else z for z in zones]
        self.anchor = check_anchor(anchor)
        self.track = bool(track)
        self.stages = list(stages)
        if self.track or self.lines or self.zones:
            Tracker()  # fail now, not at the first stream, when the tracker package is missing

    def chain(
        self, stream: str, *, lines: Sequence[Line | str] = (), zones: Sequence[Zone | str] = (), track: bool = False,
        privacy: Sequence[Region | str] = (), blur: Sequence[str] = (),
    ) -> Chain:  # fmt: skip
        """The stages of ``stream``: the run's (those for every stream or for this one) and its own
        ``lines`` and ``zones``; ``track`` tracks this stream even when the run does not; ``privacy``
        regions and ``blur`` labels (beside the run's) are hidden in every picture, last."""
        mine_lines = [x for x in self.lines if x.stream in (None, stream)]
        mine_lines += [parse_line(x) if isinstance(x, str) else x for x in lines]
        mine_zones = [z for z in self.zones if z.stream in (None, stream)]
        mine_zones += [parse_zone(z) if isinstance(z, str) else z for z in zones]
        check_names([x.name for x in mine_lines], "line")
        check_names([z.name for z in mine_zones], "zone")
        chain = Chain(stream)
        if self.class_filter is not None:
            chain.stages.append(self.class_filter)
        if self.track or track or mine_lines or mine_zones:
            chain.tracker = Tracker()
            chain.stages.append(chain.tracker)
        if mine_lines:
            chain.lines = LineCounter(mine_lines, anchor=self.anchor)
            chain.stages.append(chain.lines)
        if mine_zones:
            chain.zones = ZoneCounter(mine_zones, anchor=self.anchor)
            chain.stages.append(chain.zones)
        chain.stages.extend(self.stages)
        regions = self.privacy + [parse_region(r) if isinstance(r, str) else r for r in privacy]
        blur = self._blurred(blur)
        if regions or self.blur or blur:
            chain.stages.append(Privacy(regions, [*self.blur, *blur]))
        return chain

    def _blurred(self, labels: Sequence[str]) -> list[str]:
        """Labels to blur, each one the model knows: a misspelt one would leave faces in the clear."""
        if labels and self.known:
            check_labels(set(labels), self.known, self.model, "to blur: ")
        return list(labels)

    def describe(self) -> list[str]:
        """A line per kind of stage, for the graph of a run."""
        parts = []
        if self.class_filter is not None:
            parts.append("class filter\n" + ", ".join(sorted(self.class_filter.classes)))
        if self.track or self.lines or self.zones:
            parts.append("Tracker (per stream)")
        if self.lines:
            parts.append("LineCounter (per stream)\n" + ", ".join(x.name for x in self.lines))
        if self.zones:
            parts.append("ZoneCounter (per stream)\n" + ", ".join(z.name for z in self.zones))
        parts.extend(type(stage).__name__ for stage in self.stages)
        return parts


def summary(chains: dict[str, Chain]) -> list[str]:
    """The summary's lines on tracks, lines and zones: per stream (named when there are several), and a
    total over the streams for a line or zone that several streams count."""
    several = len(chains) > 1
    tracks: Counter = Counter()
    lines: list[str] = []
    line_totals: dict[str, Counter] = {}
    zone_totals: dict[str, Counter] = {}
    for name, chain in chains.items():
        where = f" ({name})" if several else ""
        if chain.tracker is not None:
            tracks.update(chain.tracker.tracks)
        for line, c in (chain.lines.totals() if chain.lines else {}).items():
            lines.append(f"line        {line}{where}: in {c['in']}, out {c['out']}")
            line_totals.setdefault(line, Counter()).update(c | {"streams": 1})
        for zone, c in (chain.zones.totals() if chain.zones else {}).items():
            counts = f"entered {c['entered']}, left {c['left']}, peak {c['peak']} at once"
            lines.append(f"zone        {zone}{where}: {counts}")
            zone_totals.setdefault(zone, Counter()).update({"entered": c["entered"], "left": c["left"], "streams": 1})
    for line, c in line_totals.items():
        if c["streams"] > 1:
            lines.append(f"line        {line} (all {c['streams']} streams): in {c['in']}, out {c['out']}")
    for zone, c in zone_totals.items():
        if c["streams"] > 1:
            lines.append(f"zone        {zone} (all {c['streams']} streams): entered {c['entered']}, left {c['left']}")
    if any(chain.tracker is not None for chain in chains.values()):
        counts = ", ".join(f"{label} {n}" for label, n in tracks.most_common())
        lines.insert(0, f"tracks      {sum(tracks.values())} ({counts})" if tracks else "tracks      none")
    return lines
