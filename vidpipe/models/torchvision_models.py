"""torchvision's detection models as vidpipe detectors (``torchvision:<builder>``).

Weights come through torchvision's own weights API and cache (``$TORCH_HOME/hub/checkpoints``) or from
``weights=FILE``. Offline with nothing cached, the error names the file expected and where to put it.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from ..errors import ModelError, UnknownModelError, WeightsError
from .base import Batch, Detector, check_threshold
from .detections import Detections
from .labels import COCO_CATEGORIES
from .weights import check_file, load_matching, load_torch_state

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
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise WeightsError(
            f"{PREFIX}{builder}: weights not cached and cannot be downloaded ({exc.__class__.__name__}); "
            f"put {weights.url.rsplit('/', 1)[-1]} at {target} (from {weights.url}) or pass --weights FILE"
        ) from None
    try:
        return torchvision.models.get_model(builder, weights=weights)
    except Exception as exc:  # a cut-off or damaged download: pickle, EOF, zip or shape errors alike
        raise WeightsError(
            f"{target}: cannot load the cached {builder} weights ({type(exc).__name__}); delete it to download "
            "it again, or pass --weights FILE"
        ) from None


class TorchvisionStyleDetector(Detector):
    """A model following torchvision's detection convention: it takes a list of ``float[3, H, W]`` RGB
    images in [0, 1] and returns one ``{"boxes", "scores", "labels"}`` dict per image (a scripted
    torchvision model's ``(losses, detections)`` tuple works too). It resizes, normalises and suppresses
    by itself; labels come from the model's ``classes`` attribute when it has one, else COCO's ids.

    Under bf16 or fp16 the weights stay fp32 and the network runs under ``torch.autocast``: its
    convolutions compute in the reduced precision while box selection (NMS, which has no bf16 kernel)
    runs in fp32, as autocast casts it."""

    def __init__(self, model: nn.Module, *, name: str, threshold: float | None = None, **kwargs: Any) -> None:
        self.name = name
        classes = getattr(model, "classes", None) or COCO_CATEGORIES
        kwargs.setdefault("channels_last", False)
        super().__init__(model, classes=classes, threshold=0.5 if threshold is None else threshold, **kwargs)
        self.autocast = self.dtype != torch.float32
        if self.autocast:
            self.model = self.model.float()

    def set_iou(self, iou: float) -> None:
        """torchvision's detectors keep their NMS IoU in ``nms_thresh`` (SSD, RetinaNet, FCOS) or
        ``roi_heads.nms_thresh`` (Faster/Mask R-CNN)."""
        holder = getattr(self.model, "roi_heads", self.model)
        if not hasattr(holder, "nms_thresh"):
            super().set_iou(iou)
        holder.nms_thresh = check_threshold(iou)

    def preprocess(self, frames: Sequence[torch.Tensor]) -> Batch:
        images = [f.to(self.device).permute(2, 0, 1).float() / 255.0 for f in frames]
        return Batch(images, [(int(f.shape[0]), int(f.shape[1])) for f in frames])

    @torch.inference_mode()
    def forward(self, batch: Batch) -> Any:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast):
            return self.model(batch.images)

    def postprocess(self, outputs: Any, batch: Batch) -> list[Detections]:
        if isinstance(outputs, tuple) and len(outputs) == 2:  # scripted torchvision: (losses, detections)
            outputs = outputs[1]
        if isinstance(outputs, dict) and len(batch.sizes) == 1:
            outputs = [outputs]
        if not isinstance(outputs, list | tuple) or len(outputs) != len(batch.sizes):
            what = f"{len(outputs)} results" if isinstance(outputs, list | tuple) else type(outputs).__name__
            raise ModelError(f"{self.name}: expected a list of one dict per image ({len(batch.sizes)}), got {what}")
        return [to_detections(checked_output(out, self.name), self.threshold, self.label) for out in outputs]


def load_torchvision(builder: str, *, weights: str | Path | None = None, **kwargs: Any) -> TorchvisionStyleDetector:
    """A torchvision detector by builder name, with torchvision's pretrained weights or ``weights``."""
    if builder not in builders():
        raise UnknownModelError(
            f"{PREFIX}{builder}: not a torchvision detection builder (known: {', '.join(builders())})"
        )
    if weights is None:
        model = _pretrained(builder)
    else:
        path = check_file(weights, "weights file")
        model = torchvision.models.get_model(builder, weights=None, weights_backbone=None, num_classes=91)
        load_matching(model, load_torch_state(path), str(path))
    return TorchvisionStyleDetector(model, name=PREFIX + builder, **kwargs)


EXPECTED = "{'boxes': [N, 4] x1,y1,x2,y2 pixels, 'scores': [N], 'labels': [N] class ids}"


def checked_output(out: Any, model: str) -> dict[str, torch.Tensor]:
    """One image's result of a torchvision-style model as tensors of the right shapes (numpy arrays and
    lists accepted), or a :class:`ModelError` naming the model, the key and the shape expected."""
    if not isinstance(out, Mapping):
        raise ModelError(f"{model}: returned {type(out).__name__} for an image; expected a dict {EXPECTED}")
    checked = {}
    for key in ("boxes", "scores", "labels"):
        if key not in out:
            keys = ", ".join(map(str, out)) or "none"
            raise ModelError(f"{model}: its result has no {key!r} (keys: {keys}); expected {EXPECTED}")
        try:
            checked[key] = torch.as_tensor(out[key]).detach()
        except (TypeError, ValueError, RuntimeError):
            kind = type(out[key]).__name__
            raise ModelError(f"{model}: {key!r} is {kind}, not an array; expected {EXPECTED}") from None
    n = checked["scores"].shape[0] if checked["scores"].dim() == 1 else None
    if checked["boxes"].numel() == 0 and n == 0:
        checked["boxes"] = checked["boxes"].reshape(0, 4)
    shapes = {key: list(value.shape) for key, value in checked.items()}
    if n is None or shapes["boxes"] != [n, 4] or shapes["labels"] != [n]:
        found = ", ".join(f"{key} {shape}" for key, shape in shapes.items())
        raise ModelError(f"{model}: result shapes {found}; expected {EXPECTED}")
    return checked


def to_detections(out: dict[str, torch.Tensor], threshold: float, label) -> Detections:
    """Convert a torchvision-style ``{"boxes", "scores", "labels"}`` dict to :class:`Detections`."""
    keep = out["scores"] >= threshold
    ids = out["labels"][keep].long().cpu()
    return Detections(
        out["boxes"][keep].float().cpu(), out["scores"][keep].float().cpu(), ids, [label(i) for i in ids.tolist()]
    )
