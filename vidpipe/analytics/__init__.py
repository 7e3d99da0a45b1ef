"""Analytics stages on detections: tracking (ids across frames), line crossings, zone occupancy.

Each is a stage (``Result -> Result``) for :class:`vidpipe.Pipeline`, usable on any model's output::

    tracker = Tracker()
    lines = LineCounter(["door=100,0,100,480"])
    result = lines(tracker(Result(frame, detections)))
"""

from .geometry import ANCHORS, anchor_points, inside, side
from .lines import Line, LineCounter, parse_line
from .tracking import Tracker
from .zones import Zone, ZoneCounter, parse_zone

__all__ = [
    "ANCHORS",
    "Line",
    "LineCounter",
    "Tracker",
    "Zone",
    "ZoneCounter",
    "anchor_points",
    "inside",
    "parse_line",
    "parse_zone",
    "side",
]
