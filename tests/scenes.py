"""Test footage whose truth is known: a person cut out of the bundled clip, moved over an empty frame of
the same clip along given paths (positions of the sprite's bottom centre, the default anchor)."""

from __future__ import annotations

from pathlib import Path

import torch

import vidpipe
from media import write_video

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "media" / "sample.mp4"
PERSON_FRAME, PERSON_BOX = 250, (136, 88, 218, 280)  # a person standing upright, detected at 0.999
SCALE = 0.6

Path_ = list[tuple[float, float] | None]  # per frame: where the sprite's bottom centre is (None: absent)


def _frames(indices: set[int]) -> dict[int, torch.Tensor]:
    found = {}
    with vidpipe.open(SAMPLE) as src:
        for frame in src:
            if frame.index in indices:
                found[frame.index] = frame.tensor.clone()
            if len(found) == len(indices):
                break
    return found


def parts() -> tuple[torch.Tensor, torch.Tensor]:
    """(background: frame 0 of the clip, empty of people; sprite: the person, scaled by ``SCALE``)."""
    frames = _frames({0, PERSON_FRAME})
    x1, y1, x2, y2 = PERSON_BOX
    crop = frames[PERSON_FRAME][y1:y2, x1:x2].permute(2, 0, 1)[None].float()
    size = (round((y2 - y1) * SCALE), round((x2 - x1) * SCALE))
    sprite = torch.nn.functional.interpolate(crop, size=size, mode="bilinear", antialias=True, align_corners=False)
    return frames[0], sprite[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()


def render(background: torch.Tensor, sprite: torch.Tensor, paths: list[Path_]) -> list[torch.Tensor]:
    """One frame per step: the sprite pasted with its bottom centre at each path's point."""
    height, width = background.shape[:2]
    sh, sw = sprite.shape[:2]
    frames = []
    for step in range(len(paths[0])):
        frame = background.clone()
        for path in paths:
            point = path[step]
            if point is None:
                continue
            x0, y0 = round(point[0] - sw / 2), round(point[1] - sh)
            fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + sw, width), min(y0 + sh, height)
            frame[fy0:fy1, fx0:fx1] = sprite[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
        frames.append(frame)
    return frames


def walk(start: tuple[float, float], end: tuple[float, float], steps: int) -> Path_:
    """``steps`` points from ``start`` to ``end`` at constant speed."""
    return [
        (start[0] + (end[0] - start[0]) * i / (steps - 1), start[1] + (end[1] - start[1]) * i / (steps - 1))
        for i in range(steps)
    ]


def scene(path: Path, paths: list[Path_], fps: int = 30) -> Path:
    """Encode the scene to ``path`` (H.264 MP4)."""
    background, sprite = parts()
    return write_video(path, render(background, sprite, paths), fps)


def match(records: list[dict], paths: list[Path_], tolerance: float = 12.0) -> list[list[int | None]]:
    """For each path, per frame, the track id of the detection whose anchor is within ``tolerance``
    pixels of the path's point (None where the object was not detected)."""
    ids: list[list[int | None]] = [[] for _ in paths]
    for record in records:
        for k, path in enumerate(paths):
            point = path[record["frame"]]
            best = None
            if point is not None:
                for det in record["detections"]:
                    x1, _, x2, y2 = det["box"]
                    d = ((x1 + x2) / 2 - point[0]) ** 2 + (y2 - point[1]) ** 2
                    if d <= tolerance**2 and (best is None or d < best[0]):
                        best = (d, det["track_id"])
            ids[k].append(None if best is None else best[1])
    return ids
