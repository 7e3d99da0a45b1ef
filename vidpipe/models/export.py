"""``vidpipe export``: a detector as one ONNX graph that other ONNX tools can run: one RGB image of any
size in (``float[3, H, W]`` in 0..1), ``boxes`` (``float[K, 4]``, x1 y1 x2 y2 in its pixels), ``scores``
and ``labels`` (class ids) out, with resizing, normalisation, box decoding and NMS inside. The class
names and the default score threshold go into the file's metadata. ``--model OUT.onnx`` runs it again."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError, OutputError
from .base import Detector
from .boxes import multiclass_nms
from .resize import _resize
from .torchvision_models import TorchvisionStyleDetector

EXPORT_THRESHOLD = 0.01  # candidates kept in the graph; the runner applies the user's threshold on top
OPSET = 17


class _SSDGraph(nn.Module):
    """An SSD detector (``normalize`` / ``decode`` / ``model``) with its pre- and post-processing."""

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = detector
        self.model = detector.model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        det = self.detector
        height, width = image.shape[1], image.shape[2]
        x = det.normalize(_resize(image[None] * 255.0, det.input_size))
        boxes, scores = det.decode(self.model(x))
        boxes, scores, classes = multiclass_nms(
            boxes[0].clamp(0.0, 1.0), scores[0], threshold=EXPORT_THRESHOLD, iou=det.iou,
            max_detections=det.max_detections,
        )  # fmt: skip
        scale = (
            torch.stack((width, height, width, height)).to(boxes.dtype)
            if torch.jit.is_tracing()
            else (boxes.new_tensor([width, height, width, height]))
        )
        return boxes * scale, scores, classes + 1


class _TorchvisionGraph(nn.Module):
    """A torchvision-style model (list of images in, list of dicts out) for one image."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model([image])
        if isinstance(out, tuple):
            out = out[1]
        return out[0]["boxes"], out[0]["scores"], out[0]["labels"]


def export_onnx(detector: Detector, path: str | Path, sample_size: tuple[int, int] = (288, 384)) -> Path:
    """Write ``detector`` (fp32, CPU) to ``path`` as an ONNX graph (see the module's docstring)."""
    path = Path(path)
    try:
        import onnx
    except ImportError:
        raise ModelError("export needs the onnx package: pip install 'vidpipe[onnx]'") from None
    if detector.device.type != "cpu" or detector.dtype != torch.float32:
        raise ModelError("export needs the model in fp32 on the CPU (--precision fp32 --device cpu)")
    if isinstance(detector, TorchvisionStyleDetector):
        graph = _TorchvisionGraph(detector.model)
    elif all(hasattr(detector, a) for a in ("normalize", "decode", "input_size")):
        graph = _SSDGraph(detector)
    else:
        raise ModelError(f"{detector.name}: cannot be exported (built-in SSD models and torchvision detectors can)")
    graph = graph.eval().to(memory_format=torch.contiguous_format)
    detector.model.to(memory_format=torch.contiguous_format)
    sample = torch.rand(3, *sample_size)
    graph_bytes = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph, (sample,), graph_bytes, input_names=["image"], output_names=["boxes", "scores", "labels"],
                dynamic_axes={"image": {1: "height", 2: "width"}, "boxes": {0: "k"}, "scores": {0: "k"},
                              "labels": {0: "k"}},
                opset_version=OPSET, dynamo=False,
            )  # fmt: skip
    finally:
        if detector.channels_last:
            detector.model.to(memory_format=torch.channels_last)
    proto = onnx.load_from_string(graph_bytes.getvalue())
    names = {i: name for i, name in enumerate(detector.classes)}
    for key, value in (("names", repr(names)), ("threshold", str(detector.threshold)), ("source", detector.name)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:  # the whole file or none: written beside it, then renamed
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(proto.SerializeToString())
        tmp.replace(path)
    except BaseException as exc:  # (a Ctrl-C while writing too: no half file left beside it)
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
        raise
    return path
