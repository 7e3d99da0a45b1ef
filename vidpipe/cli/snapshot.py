"""``vidpipe snapshot``: one frame of a source with a labelled pixel grid and the given lines (with the
direction that counts as ``in``) and zones drawn, to place them before a run."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..analytics import Line, Zone, parse_line, parse_zone
from ..analytics.geometry import segment_meets_rect
from ..errors import OutputError, VidpipeError
from ..gst import opening as _source
from ..gst.uri import source_path
from ..rules import checked, time_point
from ..sinks import check_output_paths
from ..sinks.draw import Annotator, font, in_direction
from ..types import Detections, Result, Shape

GRID_COLOR = (255, 255, 255)


def grab(source: str, frame: int | None, at: float | None):
    """The frame numbered ``frame``, or the first at or after ``at`` seconds, or the first."""
    with _source.open(source) as src:
        last = None
        for last in src:
            if (frame is None or last.index >= frame) and (at is None or last.pts >= at):
                return last
    where = f"frame {frame}" if frame is not None else f"{at:g} s"
    raise VidpipeError(f"{source}: ended before {where} (its last frame is {last.index if last else 'none'})")


def grid(image: Image.Image) -> None:
    """Lines every 50 or 100 pixels, each labelled with its coordinate."""
    draw = ImageDraw.Draw(image)
    width, height = image.size
    step = 50 if max(width, height) <= 800 else 100
    face = font(max(10, min(width, height) // 40))
    for x in range(step, width, step):
        draw.line([(x, 0), (x, height)], fill=GRID_COLOR, width=1)
        draw.text((x + 2, 2), str(x), fill=GRID_COLOR, font=face, stroke_width=1, stroke_fill=(0, 0, 0))
    for y in range(step, height, step):
        draw.line([(0, y), (width, y)], fill=GRID_COLOR, width=1)
        draw.text((2, y + 2), str(y), fill=GRID_COLOR, font=face, stroke_width=1, stroke_fill=(0, 0, 0))


def describe(lines: list[Line], zones: list[Zone], width: int, height: int) -> list[str]:
    """Each line and zone with its coordinates, the ``in`` direction, and whether it meets the frame."""
    said = [f"frame       {width}x{height} pixels"]
    for line in lines:
        nx, ny = in_direction(line.start, line.end)
        toward = " and ".join(
            word for word, on in (("+x (right)", nx > 0.3), ("-x (left)", nx < -0.3), ("+y (down)", ny > 0.3),
                                  ("-y (up)", ny < -0.3)) if on
        )  # fmt: skip
        outside = "" if segment_meets_rect(line.start, line.end, width, height) else "  OUTSIDE THE FRAME"
        said.append(
            f"line        {line.name}: ({line.start[0]:g},{line.start[1]:g})-({line.end[0]:g},{line.end[1]:g}), "
            f"in = moving {toward}{outside}"
        )
    for zone in zones:
        corners = ",".join(f"{x:g},{y:g}" for x, y in zone.points)
        said.append(f"zone        {zone.name}: {corners}")
    return said


def run(args: argparse.Namespace) -> int:
    """``vidpipe snapshot``: see ``vidpipe snapshot --help``."""
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise VidpipeError(f"{args.out}: a snapshot is a PNG; use a name ending in .png")
    if args.frame is not None and args.frame < 0:
        raise VidpipeError(f"--frame must be 0 or more, got {args.frame}")
    at = checked("--at", time_point, args.at) if args.at is not None else None
    lines, zones = [parse_line(v) for v in args.line], [parse_zone(v) for v in args.zone]
    inputs = [p for p in (source_path(args.source),) if p is not None]
    check_output_paths(inputs, [("snapshot", args.out)])
    frame = grab(args.source, args.frame, at)
    lines = [x.resolved(frame.width, frame.height) for x in lines]
    zones = [z.resolved(frame.width, frame.height) for z in zones]
    shapes = [Shape((x.start, x.end), x.name, arrow=True) for x in lines]
    shapes += [Shape(z.points, z.name, closed=True) for z in zones]
    pixels = Annotator().draw(Result(frame, Detections.empty(), shapes=shapes))
    image = Image.fromarray(np.ascontiguousarray(pixels.numpy()))
    if args.grid:
        grid(image)
    scratch = out.with_name(f".{out.name}.partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        image.save(scratch, format="PNG")
        os.replace(scratch, out)
    except OSError as exc:
        scratch.unlink(missing_ok=True)
        raise OutputError(f"{args.out}: cannot write ({exc.strerror})") from None
    for line in describe(lines, zones, frame.width, frame.height):
        print(line)
    print(f"wrote {out} (frame {frame.index}, {frame.pts:.3f} s)", file=sys.stderr)
    return 0
