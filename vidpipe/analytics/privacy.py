"""Privacy: regions of a camera's picture (a neighbour's window, a street) filled in every picture vidpipe
produces or serves, and the objects of some labels blurred. A stage on each stream's results: it fills
the frame's pixels before any output sees them (videos, the live view, snapshots, the element's
buffers) and leaves the mask on the result, so drawings made afterwards are covered again
(:meth:`vidpipe.sinks.draw.Annotator.draw`). Detection and counting are not changed by it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..errors import VidpipeError
from ..types import Result
from .geometry import parse_polygon

PIXELATE = 12  # pixels per block of a blurred object (at least 4 blocks across its box)


@dataclass(frozen=True)
class Region:
    """A polygon of at least 3 points, in pixels or (``relative``) fractions of the frame."""

    points: tuple[tuple[float, float], ...]
    relative: bool = False

    def resolved(self, width: int, height: int) -> list[tuple[float, float]]:
        if not self.relative:
            return list(self.points)
        return [(x * width, y * height) for x, y in self.points]


def parse_region(text: str) -> Region:
    """``x1,y1,x2,y2,x3,y3[,...]`` (pixels) or ``rel:...`` (fractions of the frame) → :class:`Region`."""
    return Region(*parse_polygon(text, "privacy region", f"privacy region {text!r}"))


class Privacy:
    """Stage that fills ``regions`` (black) and pixelates the boxes of ``blur`` labels in each frame; the
    fill mask (``bool[H, W]``) is left on ``result.privacy`` for whatever draws on the frame later."""

    def __init__(self, regions: Iterable[Region | str] = (), blur: Sequence[str] = ()) -> None:
        self.regions = [parse_region(r) if isinstance(r, str) else r for r in regions]
        self.blur = set(blur)
        self._masks: dict[tuple[int, int], torch.Tensor] = {}

    def mask(self, width: int, height: int) -> torch.Tensor | None:
        """The regions as ``bool[height, width]`` (made once per frame size); None without regions.
        :class:`VidpipeError` when a region lies outside frames of that size (it would hide nothing)."""
        if not self.regions:
            return None
        mask = self._masks.get((width, height))
        if mask is None:
            mask = torch.zeros((height, width), dtype=torch.bool)
            for region in self.regions:
                image = Image.new("L", (width, height), 0)
                ImageDraw.Draw(image).polygon(region.resolved(width, height), fill=255, outline=255)
                covered = torch.from_numpy(np.asarray(image) > 0)
                if not covered.any():
                    shown = ",".join(f"{v:g}" for point in region.points for v in point)
                    raise VidpipeError(
                        f"privacy region {'rel:' if region.relative else ''}{shown}: lies outside the frames "
                        f"({width}x{height} pixels): it would hide nothing"
                    )
                mask |= covered
            self._masks[(width, height)] = mask
        return mask

    def __call__(self, result: Result) -> Result:
        frame = result.frame
        pixels = frame.tensor
        if pixels is None or pixels.dim() != 3 or pixels.numel() == 0:  # (a result without pixels: nothing to hide)
            return result
        if self.blur:
            for box, label in zip(result.detections.boxes.tolist(), result.detections.labels, strict=True):
                if label in self.blur:
                    pixelate(pixels, box)
        mask = self.mask(pixels.shape[1], pixels.shape[0])
        if mask is not None:
            pixels.masked_fill_(mask.unsqueeze(-1), 0)
            result.privacy = mask
        return result


def pixelate(pixels: torch.Tensor, box: Sequence[float]) -> None:
    """Blur a box of ``pixels`` (``uint8[H, W, 3]``, in place) into blocks nothing can be read from."""
    height, width = pixels.shape[:2]
    x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
    x2, y2 = min(int(box[2] + 0.5), width), min(int(box[3] + 0.5), height)
    if x2 <= x1 or y2 <= y1:
        return
    region = Image.fromarray(pixels[y1:y2, x1:x2].numpy())
    w, h = x2 - x1, y2 - y1
    step = max(1, min(PIXELATE, w // 4, h // 4))
    small = region.resize((max(1, w // step), max(1, h // step)), Image.Resampling.BOX)
    pixels[y1:y2, x1:x2] = torch.from_numpy(np.asarray(small.resize((w, h), Image.Resampling.NEAREST)))
