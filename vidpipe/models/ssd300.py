"""NVIDIA's SSD300 (ResNet-50 backbone), the model of the original post, with real pre/post-processing.

Architecture as in NVIDIA DeepLearningExamples (PyTorch/Detection/SSD): torchvision ResNet-50 up to
``layer3`` with ``layer3``'s first block at stride 1 (38×38 features), five extra blocks, 8732 default
boxes, 81 classes (background + the 80 COCO classes), softmax scores, box scales 0.1/0.2.

Weights: NVIDIA's published checkpoint (``nvidia_ssdpyt_*.pt``), passed with ``weights=FILE``. Its
``"model"`` entry (or a bare state dict; a ``module.`` prefix is stripped) must have the keys
``feature_extractor.feature_extractor.{0,1,4,5,6}.*`` (ResNet-50 conv1, bn1, layer1–3),
``additional_blocks.{0..4}.{0,1,3,4}.*`` (1×1 conv, BN, 3×3 conv, BN), ``loc.{0..5}.{weight,bias}`` and
``conf.{0..5}.{weight,bias}``. ``random_weights=True`` builds it untrained, for benchmarks only.
"""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path

import torch
import torchvision
from torch import nn

from ..errors import WeightsError
from .base import FixedInputDetector
from .boxes import decode_center_size, prediction_heads
from .labels import COCO_80
from .weights import check_file, load_matching, load_torch_state

log = logging.getLogger(__name__)

INPUT_SIZE = (300, 300)
NUM_CLASSES = 81
FEATURE_SIZES = (38, 19, 10, 5, 3, 1)
STEPS = (8, 16, 32, 64, 100, 300)
SCALES = (21, 45, 99, 153, 207, 261, 315)
ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
OUT_CHANNELS = (1024, 512, 512, 256, 256, 256)
DEFAULTS_PER_CELL = (4, 6, 6, 6, 4, 4)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNetFeatures(nn.Module):
    """ResNet-50 conv1 … layer3, with layer3's first block at stride 1."""

    def __init__(self) -> None:
        super().__init__()
        backbone = torchvision.models.resnet50(weights=None)
        self.feature_extractor = nn.Sequential(*list(backbone.children())[:7])
        block = self.feature_extractor[-1][0]
        block.conv1.stride = (1, 1)
        block.conv2.stride = (1, 1)
        block.downsample[0].stride = (1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_extractor(x)


class SSD300(nn.Module):
    """Input ``float[N, 3, 300, 300]`` (ImageNet-normalised); output ``(locs [N, 4, 8732], confs [N, 81, 8732])``."""

    def __init__(self) -> None:
        super().__init__()
        self.feature_extractor = ResNetFeatures()
        blocks = []
        for i, (cin, cout, mid) in enumerate(
            zip(OUT_CHANNELS[:-1], OUT_CHANNELS[1:], (256, 256, 128, 128, 128), strict=True)
        ):
            stride, padding = (2, 1) if i < 3 else (1, 0)
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(cin, mid, 1, bias=False),
                    nn.BatchNorm2d(mid),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(mid, cout, 3, padding=padding, stride=stride, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                )
            )
        self.additional_blocks = nn.ModuleList(blocks)
        self.loc = prediction_heads(OUT_CHANNELS, DEFAULTS_PER_CELL, 4)
        self.conf = prediction_heads(OUT_CHANNELS, DEFAULTS_PER_CELL, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.feature_extractor(x)
        features = [x]
        for block in self.additional_blocks:
            x = block(x)
            features.append(x)
        n = x.shape[0]
        # NVIDIA's layout: view(N, 4, -1), i.e. default-box index runs over (anchor, y, x) per map.
        locs = torch.cat([head(f).reshape(n, 4, -1) for head, f in zip(self.loc, features, strict=True)], 2)
        confs = torch.cat([head(f).reshape(n, NUM_CLASSES, -1) for head, f in zip(self.conf, features, strict=True)], 2)
        return locs, confs


def default_boxes() -> torch.Tensor:
    """The 8732 default boxes ``(cx, cy, w, h)`` in NVIDIA's order (y, x, box), clamped to [0, 1]."""
    boxes = []
    for idx, size in enumerate(FEATURE_SIZES):
        fk = 300 / STEPS[idx]
        sk1, sk2 = SCALES[idx] / 300, SCALES[idx + 1] / 300
        sizes = [(sk1, sk1), (math.sqrt(sk1 * sk2),) * 2]
        for alpha in ASPECT_RATIOS[idx]:
            w, h = sk1 * math.sqrt(alpha), sk1 / math.sqrt(alpha)
            sizes += [(w, h), (h, w)]
        for i, j in itertools.product(range(size), repeat=2):
            for w, h in sizes:
                boxes.append(((j + 0.5) / fk, (i + 0.5) / fk, w, h))
    return torch.tensor(boxes).clamp_(0, 1)


class SSD300Detector(FixedInputDetector):
    """NVIDIA SSD300: 300×300, ImageNet normalisation, softmax over 81 classes, NMS IoU 0.45."""

    name = "ssd300"
    input_size = INPUT_SIZE

    def __init__(
        self,
        *,
        weights: str | Path | None = None,
        random_weights: bool = False,
        threshold: float | None = None,
        **kwargs,
    ) -> None:
        model = SSD300()
        if weights is not None:
            path = check_file(weights, "weights file")
            load_matching(model, load_torch_state(path), str(path))
        elif random_weights:
            log.warning("SSD300 with RANDOM weights: its detections are meaningless (benchmarks only)")
        else:
            raise WeightsError(
                "ssd300 needs NVIDIA's SSD300 checkpoint: pass --weights nvidia_ssdpyt_amp_200703.pt "
                "(see the README for the expected keys); vidpipe downloads nothing at run time"
            )
        super().__init__(model, classes=COCO_80, threshold=0.4 if threshold is None else threshold, **kwargs)
        dboxes = default_boxes()
        # Reorder default boxes from NVIDIA's (y, x, box) to the heads' (box, y, x) per feature map.
        order, start = [], 0
        for size, per_cell in zip(FEATURE_SIZES, DEFAULTS_PER_CELL, strict=True):
            idx = torch.arange(start, start + size * size * per_cell).reshape(size * size, per_cell)
            order.append(idx.t().reshape(-1))
            start += size * size * per_cell
        self.anchors = dboxes[torch.cat(order)].to(self.device)
        self.iou = 0.45
        self.max_detections = 200
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float ``[N, 3, 300, 300]`` in 0..255 → ImageNet-normalised input."""
        return (images - self.mean) / self.std

    def decode(self, outputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw outputs → (boxes ``[N, A, 4]`` normalised x1y1x2y2, scores ``[N, A, 80]``)."""
        locs, confs = (t.float() for t in outputs)
        boxes = decode_center_size(locs.permute(0, 2, 1), self.anchors, (10.0, 10.0, 5.0, 5.0))
        return boxes, torch.softmax(confs.permute(0, 2, 1), dim=-1)[..., 1:]
