"""torchvision's detection models as vidpipe detectors (``torchvision:<builder>``).

Weights come through torchvision's own weights API and cache (``$TORCH_HOME/hub/checkpoints``) or from
``weights=FILE``. Offline with nothing cached, the error names the file expected and where to put it.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from ..errors import ModelError, UnknownModelError, WeightsError
from .base import Batch, Detector
from .detections import Detections
from .labels import COCO_CATEGORIES
from .weights import load_matching, load_torch_state

PREFIX = "torchvision:"


def builders() -> list[str]:
    """Names of torchvision's detection builders."""
    return sorted(torchvision.models.list_models(module=torchvision.models.detection))


def _pretrained(builder: str) -> nn.Module:
    weights = torchvision.models.get_model_weights(builder).DEFAULT
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(weights.url, str(target), progress=False)
        return torchvision.models.get_model(builder, weights=weights)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        if target.is_file():
            raise WeightsError(f"{target}: cannot load the cached {builder} weights ({type(exc).__name__})") from None
        raise WeightsError(
            f"{PREFIX}{builder}: weights not cached and cannot be downloaded ({exc.__class__.__name__}); "
            f"put {weights.url.rsplit('/', 1)[-1]} at {target} (from {weights.url}) or pass --weights FILE"
        ) from None


class TorchvisionStyleDetector(Detector):
    """A model following torchvision's detection convention: it takes a list of ``float[3, H, W]`` RGB
    images in [0, 1] and returns one ``{"boxes", "scores", "labels"}`` dict per image (a scripted
    torchvision model's ``(losses, detections)`` tuple works too). It resizes, normalises and suppresses
    by itself; labels come from the model's ``classes`` attribute when it has one, else COCO's ids."""

    def __init__(self, model: nn.Module, *, name: str, threshold: float | None = None, **kwargs: Any) -> None:
        self.name = name
        classes = getattr(model, "classes", None) or COCO_CATEGORIES
        kwargs.setdefault("channels_last", False)
        super().__init__(model, classes=classes, threshold=0.5 if threshold is None else threshold, **kwargs)

    def preprocess(self, frames: Sequence[torch.Tensor]) -> Batch:
        images = [f.to(self.device).permute(2, 0, 1).to(self.dtype) / 255.0 for f in frames]
        return Batch(images, [(int(f.shape[0]), int(f.shape[1])) for f in frames])

    def postprocess(self, outputs: Any, batch: Batch) -> list[Detections]:
        if isinstance(outputs, tuple) and len(outputs) == 2:  # scripted torchvision: (losses, detections)
            outputs = outputs[1]
        if not isinstance(outputs, list | tuple) or len(outputs) != len(batch.sizes):
            raise ModelError(f"{self.name}: expected one result dict per image, got {type(outputs).__name__}")
        return [to_detections(out, self.threshold, self.label) for out in outputs]


def load_torchvision(builder: str, *, weights: str | Path | None = None, **kwargs: Any) -> TorchvisionStyleDetector:
    """A torchvision detector by builder name, with torchvision's pretrained weights or ``weights``."""
    if builder not in builders():
        raise UnknownModelError(
            f"{PREFIX}{builder}: not a torchvision detection builder (known: {', '.join(builders())})"
        )
    if weights is None:
        model = _pretrained(builder)
    else:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"{path}: no such weights file")
        model = torchvision.models.get_model(builder, weights=None, weights_backbone=None, num_classes=91)
        load_matching(model, load_torch_state(path), str(path))
    return TorchvisionStyleDetector(model, name=PREFIX + builder, **kwargs)


def to_detections(out: dict[str, torch.Tensor], threshold: float, label) -> Detections:
    """Convert a torchvision-style ``{"boxes", "scores", "labels"}`` dict to :class:`Detections`."""
    keep = out["scores"] >= threshold
    ids = out["labels"][keep].long().cpu()
    return Detections(
        out["boxes"][keep].float().cpu(), out["scores"][keep].float().cpu(), ids, [label(i) for i in ids.tolist()]
    )
