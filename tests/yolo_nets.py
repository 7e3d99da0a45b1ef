"""YOLOv8n and YOLOv5n networks built from their published architecture definitions (the ``n`` scale of
``yolov8.yaml`` and ``yolov5n.yaml``: depth 0.33, width 0.25), with the detection heads' inference-time
decoding, for exporting to ONNX in tests. Random weights with a fixed seed: the tests plant
high-scoring boxes in the raw outputs, so that the comparison of post-processing means something."""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn


class Conv(nn.Module):
    """Convolution, batch norm, SiLU; 'same' padding."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool = True, k: tuple[int, int] = (3, 3), e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1, self.cv2 = Conv(c1, c_, k[0]), Conv(c_, c2, k[1])
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """YOLOv8's CSP block with two convolutions and n bottlenecks whose outputs are all concatenated."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, e: float = 0.5) -> None:
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut, (3, 3), 1.0) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class C3(nn.Module):
    """YOLOv5's CSP block with three convolutions."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1, self.cv2, self.cv3 = Conv(c1, c_, 1), Conv(c1, c_, 1), Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, (1, 3), 1.0) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1, self.cv2 = Conv(c1, c_, 1), Conv(c_ * 4, c2, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


class DetectV8(nn.Module):
    """Anchor-free decoupled head: DFL box distances (16 bins) and sigmoid class scores; output
    ``[B, 4 + nc, N]``: cx, cy, w, h in input pixels, then the class scores."""

    def __init__(self, nc: int, ch: tuple[int, ...], strides=(8, 16, 32), reg_max: int = 16) -> None:
        super().__init__()
        self.nc, self.reg_max, self.strides = nc, reg_max, strides
        c2, c3 = max(16, ch[0] // 4, reg_max * 4), max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for x in ch
        )
        self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)
        self.register_buffer("bins", torch.arange(reg_max, dtype=torch.float32), persistent=False)

    def forward(self, feats):
        boxes, scores, anchors, strides = [], [], [], []
        for i, x in enumerate(feats):
            b, _, h, w = x.shape
            boxes.append(self.cv2[i](x).view(b, 4 * self.reg_max, -1))
            scores.append(self.cv3[i](x).view(b, self.nc, -1))
            sy, sx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
            anchors.append(torch.stack((sx, sy), 0).view(2, -1))
            strides.append(torch.full((1, h * w), float(self.strides[i])))
        box, score = torch.cat(boxes, 2), torch.cat(scores, 2)
        anchor, stride = torch.cat(anchors, 1)[None], torch.cat(strides, 1)[None]
        b, _, n = box.shape
        dist = (box.view(b, 4, self.reg_max, n).softmax(2) * self.bins.view(1, 1, -1, 1)).sum(2)
        lt, rb = dist[:, :2], dist[:, 2:]
        xy = (anchor + (rb - lt) / 2) * stride
        wh = (lt + rb) * stride
        return torch.cat((xy, wh, score.sigmoid()), 1)


class DetectV5(nn.Module):
    """Anchor-based head: ``[B, N, 5 + nc]``: cx, cy, w, h in input pixels, objectness, class scores."""

    ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))

    def __init__(self, nc: int, ch: tuple[int, ...], strides=(8, 16, 32)) -> None:
        super().__init__()
        self.nc, self.no, self.na, self.strides = nc, nc + 5, 3, strides
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        for conv, s in zip(self.m, strides, strict=True):  # YOLOv5's bias initialisation
            bias = conv.bias.view(self.na, -1).detach().clone()
            bias[:, 4] += math.log(8 / (640 / s) ** 2)
            bias[:, 5:] += math.log(0.6 / (nc - 0.99))
            conv.bias = nn.Parameter(bias.view(-1))

    def forward(self, feats):
        out = []
        for i, x in enumerate(feats):
            b, _, h, w = x.shape
            y = self.m[i](x).view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).sigmoid()
            gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            grid = torch.stack((gx, gy), 2).view(1, 1, h, w, 2).float() - 0.5
            anchor = torch.tensor(self.ANCHORS[i], dtype=torch.float32).view(1, self.na, 1, 1, 2)
            xy = (y[..., :2] * 2 + grid) * self.strides[i]
            wh = (y[..., 2:4] * 2) ** 2 * anchor
            out.append(torch.cat((xy, wh, y[..., 4:]), -1).view(b, -1, self.no))
        return torch.cat(out, 1)


def backbone_outputs(layers: nn.ModuleList, x: torch.Tensor) -> list[torch.Tensor]:
    """Each backbone layer's output (the head reads several of them), layer by layer."""
    saved = []
    for layer in layers:
        x = layer(x)
        saved.append(x)
    return saved


class YOLOv8n(nn.Module):
    def __init__(self, nc: int = 80) -> None:
        super().__init__()
        self.backbone = nn.ModuleList([
            Conv(3, 16, 3, 2), Conv(16, 32, 3, 2), C2f(32, 32, 1, True), Conv(32, 64, 3, 2), C2f(64, 64, 2, True),
            Conv(64, 128, 3, 2), C2f(128, 128, 2, True), Conv(128, 256, 3, 2), C2f(256, 256, 1, True), SPPF(256, 256),
        ])  # fmt: skip
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.h12, self.h15 = C2f(384, 128, 1), C2f(192, 64, 1)
        self.h16, self.h18 = Conv(64, 64, 3, 2), C2f(192, 128, 1)
        self.h19, self.h21 = Conv(128, 128, 3, 2), C2f(384, 256, 1)
        self.detect = DetectV8(nc, (64, 128, 256))

    def forward(self, x):
        saved = backbone_outputs(self.backbone, x)
        p4 = self.h12(torch.cat((self.up(saved[9]), saved[6]), 1))
        p3 = self.h15(torch.cat((self.up(p4), saved[4]), 1))
        n4 = self.h18(torch.cat((self.h16(p3), p4), 1))
        n5 = self.h21(torch.cat((self.h19(n4), saved[9]), 1))
        return self.detect([p3, n4, n5])


class YOLOv5n(nn.Module):
    def __init__(self, nc: int = 80) -> None:
        super().__init__()
        self.backbone = nn.ModuleList([
            Conv(3, 16, 6, 2, 2), Conv(16, 32, 3, 2), C3(32, 32, 1), Conv(32, 64, 3, 2), C3(64, 64, 2),
            Conv(64, 128, 3, 2), C3(128, 128, 3), Conv(128, 256, 3, 2), C3(256, 256, 1), SPPF(256, 256),
        ])  # fmt: skip
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.h10, self.h13 = Conv(256, 128, 1), C3(256, 128, 1, False)
        self.h14, self.h17 = Conv(128, 64, 1), C3(128, 64, 1, False)
        self.h18, self.h20 = Conv(64, 64, 3, 2), C3(128, 128, 1, False)
        self.h21, self.h23 = Conv(128, 128, 3, 2), C3(256, 256, 1, False)
        self.detect = DetectV5(nc, (64, 128, 256))

    def forward(self, x):
        saved = backbone_outputs(self.backbone, x)
        t10 = self.h10(saved[9])
        t14 = self.h14(self.h13(torch.cat((self.up(t10), saved[6]), 1)))
        p3 = self.h17(torch.cat((self.up(t14), saved[4]), 1))
        p4 = self.h20(torch.cat((self.h18(p3), t14), 1))
        p5 = self.h23(torch.cat((self.h21(p4), t10), 1))
        return self.detect([p3, p4, p5])


class Planted(nn.Module):
    """Wraps a network and plants known boxes in its raw output (and damps its random scores), so that a
    test knows what a correct post-processing must find. ``rows``: per planted box, a full output row
    (``[4 + C]`` or ``[5 + C]``) and its index among the N candidates."""

    def __init__(self, net: nn.Module, rows: list[tuple[int, list[float]]], layout: str, damp: float) -> None:
        super().__init__()
        self.net, self.layout, self.damp = net, layout, damp
        self.register_buffer("index", torch.tensor([i for i, _ in rows]), persistent=False)
        self.register_buffer("values", torch.tensor([r for _, r in rows], dtype=torch.float32), persistent=False)

    def forward(self, x):
        out = self.net(x)
        if self.layout == "yolo":  # [B, 4 + C, N]
            out = torch.cat((out[:, :4], out[:, 4:] * self.damp), 1)
            planted = self.values.T[None].expand(out.shape[0], -1, -1)
            return out.index_copy(2, self.index, planted)
        out = torch.cat((out[..., :4], out[..., 4:5] * self.damp, out[..., 5:]), 2)  # [B, N, 5 + C]
        planted = self.values[None].expand(out.shape[0], -1, -1)
        return out.index_copy(1, self.index, planted)


def calibrate(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Set the batch norms' statistics from real images (letterboxed, 0..1), as training would: random
    weights with default statistics make most outputs equal, and ties make any comparison arbitrary."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # a plain average over what it sees
    model.train()
    with torch.no_grad():
        model(images)
    return model.eval()


def export(model: nn.Module, path, size: tuple[int, int] = (640, 640), names: dict | None = None, dynamic=True):
    """Export to ONNX with a dynamic batch axis (and Ultralytics-style ``names`` metadata if given)."""
    import onnx

    torch.manual_seed(0)
    model.eval()
    dummy = torch.rand(1, 3, *size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notices
        _export(model, dummy, path, dynamic)
    if names is not None:
        proto = onnx.load(str(path))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "names", repr(names)
        onnx.save(proto, str(path))
    return path


def _export(model, dummy, path, dynamic: bool) -> None:
    torch.onnx.export(
        model, (dummy,), str(path), input_names=["images"], output_names=["output0"], opset_version=17,
        dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}} if dynamic else None, dynamo=False,
    )  # fmt: skip
