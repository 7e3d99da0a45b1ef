"""Stages: small steps applied to every result, in order, between the detector and the sinks.

A stage is any callable ``Result -> Result``; it sees the results of each stream in frame order (so
per-stream state, such as a tracker's, is safe). ``ClassFilter`` is the first; others plug in the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

import torch

from ..errors import VidpipeError
from ..types import Result

Stage = Callable[[Result], Result]


class ClassFilter:
    """Keeps only the detections whose label is in ``classes``."""

    def __init__(self, classes: Iterable[str], known: Sequence[str], model: str = "detector") -> None:
        if isinstance(classes, str):
            classes = classes.split(",")
        wanted = {c.strip() for c in classes if c.strip()}
        if not wanted:
            raise VidpipeError("classes: no class name given (expected names such as person,car)")
        unknown = wanted - set(known)
        if unknown:
            names = ", ".join(c for c in known if c not in ("N/A", "__background__"))
            raise VidpipeError(f"unknown class(es) {', '.join(sorted(unknown))} for {model} (known: {names})")
        self.classes = wanted

    def __call__(self, result: Result) -> Result:
        found = result.detections
        keep = torch.tensor([label in self.classes for label in found.labels], dtype=torch.bool)
        return replace(result, detections=found[keep])
