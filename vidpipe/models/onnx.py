"""ONNX detectors run with ONNX Runtime: YOLO exports (Ultralytics v8/v9/v11 heads, YOLOv5/v7 heads with
objectness, end-to-end exports with NMS inside), pre- and post-processed as their exporter expects, and
torchvision-style graphs (one image of any size in, ``boxes``/``scores``/``labels`` out), which is what
``vidpipe export`` writes.

Pre-processing: letterbox to the model's input size keeping the aspect ratio (grey 114 padding,
centred), RGB, /255, NCHW. Post-processing: score threshold, class-aware NMS (torchvision's
``batched_nms``), at most ``max_det`` boxes, boxes mapped back through the letterbox to the frame's pixels.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import batched_nms, box_convert

from ..errors import ModelError, WeightsError
from .base import Batch, Detector, check_threshold, resolve_device
from .detections import Detections
from .labels import COCO_80, COCO_CATEGORIES
from .torchvision_models import to_detections
from .weights import check_file

LAYOUTS = {
    "yolo": "[B, 4 + C, N]: cx, cy, w, h in input pixels, then C class scores (Ultralytics v8/v9/v11)",
    "yolov5": "[B, N, 5 + C]: cx, cy, w, h, objectness, C class scores (YOLOv5/v7)",
    "end2end": "[B, K, 6]: x1, y1, x2, y2, score, class (NMS inside: YOLOv10, nms=True exports)",
    "torchvision": "input [3, H, W] in 0..1 of any size; outputs boxes [K, 4] in its pixels, scores, labels "
    "(torchvision detectors, vidpipe export)",
}
PAD = 114
TORCHVISION_OUTPUTS = ("boxes", "scores", "labels")


def letterbox_geometry(height: int, width: int, size: tuple[int, int]) -> tuple[float, int, int, int, int]:
    """Scale and placement of a ``height`` x ``width`` frame letterboxed into ``size`` = (h, w):
    (gain, new_h, new_w, top, left), rounded as Ultralytics' ``LetterBox`` and ``scale_boxes`` do."""
    gain = min(size[0] / height, size[1] / width)
    new_h, new_w = round(height * gain), round(width * gain)
    top = round((size[0] - new_h) / 2 - 0.1)
    left = round((size[1] - new_w) / 2 - 0.1)
    return gain, new_h, new_w, top, left


def letterbox(frame: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``uint8[H, W, 3]`` → float ``[3, h, w]`` in 0..1: resized keeping aspect, padded with 114 grey."""
    height, width = frame.shape[:2]
    _, new_h, new_w, top, left = letterbox_geometry(height, width, size)
    image = frame.permute(2, 0, 1)[None].float()
    if (new_h, new_w) != (height, width):
        image = torch.nn.functional.interpolate(image, size=(new_h, new_w), mode="bilinear", align_corners=False)
    out = torch.full((3, size[0], size[1]), float(PAD))
    out[:, top : top + new_h, left : left + new_w] = image[0].round().clamp(0, 255)
    return out / 255.0


def read_names(path: str | Path) -> list[str]:
    """Class names from a file: one per line, or a JSON/YAML list, or a dict of id → name."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ModelError(f"--names {path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ModelError(f"--names {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    data: Any = None
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as exc:  # (YAML's own text spans lines, with a drawing of where: its line and problem)
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ModelError(f"--names {path}: not valid {path.suffix[1:].upper()}{where} ({problem})") from None
        if isinstance(data, dict) and "names" in data:
            data = data["names"]
    else:
        data = [line.strip() for line in text.splitlines() if line.strip()]
    if isinstance(data, dict):
        try:
            return [str(data[k]) for k in sorted(data, key=int)]
        except (TypeError, ValueError):
            raise ModelError(f"--names {path}: a dict needs class ids as keys") from None
    if not isinstance(data, list) or not data:
        raise ModelError(f"--names {path}: expected a list of class names")
    return [str(v) for v in data]


def metadata_names(meta: dict[str, str]) -> list[str] | None:
    """The ``names`` entry Ultralytics writes into an ONNX file's metadata (a Python dict literal)."""
    raw = meta.get("names")
    if not raw:
        return None
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, dict) and value and all(isinstance(k, int) and k >= 0 for k in value):
        return [str(value.get(i, f"class_{i}")) for i in range(max(value) + 1)]
    if isinstance(value, list):
        return [str(v) for v in value]
    return None


def fits_layout(layout: str, shape: Sequence[int]) -> bool:
    """Whether an output of this (real, probed) shape can have ``layout``."""
    if len(shape) != 3:
        return False
    _, a, b = shape
    return {"end2end": b == 6, "yolov5": a > b > 5, "yolo": b > a > 4}.get(layout, False)


def metadata_imgsz(meta: dict[str, str]) -> tuple[int, int] | None:
    """The input size Ultralytics writes into an ONNX file's metadata (``imgsz``: ``[640, 640]``)."""
    try:
        value = ast.literal_eval(meta.get("imgsz", ""))
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, int):
        value = [value, value]
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return int(value[0]), int(value[1])
    return None


ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
DEFAULT_IMGSZ = 640


def detect_layout(shape: Sequence[int]) -> str | None:
    """Which layout a single output of this (real, batch-1) shape has, or None."""
    if len(shape) != 3:
        return None
    _, a, b = shape
    if b == 6 and a <= 1000:
        return "end2end"
    if a > b and b > 5:
        return "yolov5"
    if b > a and a > 4:
        return "yolo"
    return None


class OnnxDetector(Detector):
    """A detector in an ONNX file, run by ONNX Runtime (``CUDAExecutionProvider`` with ``device="cuda"``
    where available). ``layout`` names the output layout (see ``LAYOUTS``; recognised from the output's
    shape when None); ``names`` a class-names file; ``iou`` the NMS IoU; ``max_det`` boxes per frame."""

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        threshold: float | None = None,
        layout: str | None = None,
        names: str | Path | None = None,
        iou: float = 0.45,
        max_det: int = 300,
        imgsz: int | None = None,
        channels_last: bool | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("ONNX models need onnxruntime: pip install 'vidpipe[onnx]'") from None
        self.path = Path(path)
        self.name = str(path)
        self.backend = "onnxruntime"
        check_file(self.path, "ONNX file", ModelError)
        self.device = resolve_device(device)
        self.precision, self.precision_reason = "fp32", "the ONNX file's own precision"
        self.dtype = torch.float32
        self.channels_last = False
        # on the CPU, the cores go to ONNX Runtime's threads (see Detector.torch_threads; measured 5 % faster)
        self.torch_threads = 1 if self.device.type == "cpu" else None
        self.iou, self.max_det = check_threshold(iou), max_det
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise WeightsError(f"{path}: not a loadable ONNX model ({first})") from None
        inputs = self.session.get_inputs()
        shape = inputs[0].shape if inputs else []
        meta = self.session.get_modelmeta().custom_metadata_map
        self.input_name = inputs[0].name if inputs else ""
        if len(inputs) == 1 and len(shape) == 3 and shape[0] == 3:  # one image of any size
            self.layout, self.size, self.dynamic_batch, self.file_batch = "torchvision", (0, 0), False, 1
            self.class_count = 0
            if layout not in (None, "torchvision"):
                raise ModelError(f"{path}: takes one [3, H, W] image, which --format {layout} does not")
            outputs = self.session.get_outputs()
            if len(outputs) != 3:
                found = ", ".join(f"{o.name} {o.shape}" for o in outputs)
                raise ModelError(f"{path}: expected outputs boxes, scores, labels (found {found})")
            by_name = {o.name: i for i, o in enumerate(outputs)}
            self.order = [by_name.get(n, i) for i, n in enumerate(TORCHVISION_OUTPUTS)]
            self.classes = metadata_names(meta) or list(COCO_CATEGORIES)
            default = float(meta.get("threshold", 0.5))
        else:
            default = self._setup_yolo(inputs, meta, layout, imgsz)
        if names is not None:
            self.classes = read_names(names)
            if self.layout in ("yolo", "yolov5") and len(self.classes) != self.class_count:
                raise ModelError(
                    f"--names {names}: has {len(self.classes)} names, {path} has {self.class_count} classes"
                )
        self.threshold = check_threshold(default if threshold is None else threshold)
        fixed = not self.dynamic_batch and self.layout != "torchvision"
        self.note = ""
        if fixed:
            each = "one by one" if self.file_batch == 1 else f"in groups of {self.file_batch}, the last one padded"
            self.note = f"fixed batch size {self.file_batch} in the file: frames run {each}"

    def _setup_yolo(self, inputs: list, meta: dict[str, str], layout: str | None, imgsz: int | None) -> float:
        """An image-tensor model (YOLO exports): its input size (fixed, or ``imgsz`` / the metadata's /
        640 for dynamic ones), input type (fp32 or fp16), batch, output layout (checked against a probe
        run) and classes. Returns the default threshold."""
        path = self.path
        shape = inputs[0].shape if inputs else []
        self.input_type = ONNX_DTYPES.get(inputs[0].type) if inputs else None
        if len(inputs) != 1 or len(shape) != 4 or shape[1] != 3 or self.input_type is None:
            found = ", ".join(f"{i.name} {i.shape} {i.type}" for i in inputs)
            raise ModelError(
                f"{path}: input is not an image tensor [B, 3, H, W] (float or float16) or [3, H, W] (found {found})"
            )
        if all(isinstance(v, int) for v in shape[2:]):
            self.size = (int(shape[2]), int(shape[3]))
            if imgsz is not None and (imgsz, imgsz) != self.size:
                raise ModelError(f"--imgsz {imgsz}: {path} takes {self.size[1]}x{self.size[0]} images only")
        else:  # dynamic height and width (yolo export dynamic=True): letterboxed to imgsz
            self.size = (imgsz, imgsz) if imgsz is not None else metadata_imgsz(meta) or (DEFAULT_IMGSZ,) * 2
        self.dynamic_batch = not isinstance(shape[0], int)
        self.file_batch = 1 if self.dynamic_batch else int(shape[0])
        probe = self.session.run(None, {self.input_name: np.zeros((self.file_batch, 3, *self.size), self.input_type)})
        shapes = [[1, *p.shape[1:]] for p in probe]
        if layout is not None and layout != "torchvision" and not (len(shapes) == 1 and fits_layout(layout, shapes[0])):
            raise ModelError(
                f"{path}: output shape {shapes[0] if len(shapes) == 1 else shapes} does not fit --format {layout} "
                f"({LAYOUTS[layout]}); leave --format out to recognise the layout from the shape"
            )
        self.layout = layout or (detect_layout(shapes[0]) if len(shapes) == 1 else None)
        if self.layout not in LAYOUTS or self.layout == "torchvision":
            known = "; ".join(f"{k}: {v}" for k, v in LAYOUTS.items())
            what = f"--format {layout}" if layout else f"output shapes {shapes}"
            raise ModelError(f"{path}: unknown output layout ({what}); known layouts: {known}")
        self.class_count = {"yolo": shapes[0][1] - 4, "yolov5": shapes[0][2] - 5}.get(self.layout, 80)
        classes = self.class_count
        self.classes = metadata_names(meta) or (
            COCO_80[1:] if classes == 80 else [f"class_{i}" for i in range(max(classes, 0))]
        )
        if self.layout != "end2end" and len(self.classes) != classes:
            self.classes = [f"class_{i}" for i in range(classes)]
        return 0.25  # Ultralytics' default confidence

    def label(self, class_id: int) -> str:
        return self.classes[class_id] if 0 <= class_id < len(self.classes) else f"class_{class_id}"

    def set_iou(self, iou: float) -> None:
        if self.layout in ("end2end", "torchvision"):
            super().set_iou(iou)  # NMS inside the graph
        self.iou = check_threshold(iou)

    def __repr__(self) -> str:
        return f"<OnnxDetector {self.path} {self.layout} on {self.device}>"

    def preprocess(self, frames: Sequence[torch.Tensor]) -> Batch:
        sizes = [(int(f.shape[0]), int(f.shape[1])) for f in frames]
        if self.layout == "torchvision":
            return Batch([f.permute(2, 0, 1).float().div(255.0).contiguous() for f in frames], sizes)
        return Batch(torch.stack([letterbox(f, self.size) for f in frames]), sizes)

    def forward(self, batch: Batch) -> Any:
        if self.layout == "torchvision":
            return [self.session.run(None, {self.input_name: image.numpy()}) for image in batch.images]
        images = batch.images.numpy().astype(self.input_type, copy=False)
        if self.dynamic_batch:
            return torch.from_numpy(self.session.run(None, {self.input_name: images})[0]).float()
        outs, n, step = [], len(images), self.file_batch
        for i in range(0, n, step):  # the file's fixed batch: the last group padded with blank images
            group = images[i : i + step]
            if len(group) < step:
                group = np.concatenate([group, np.zeros((step - len(group), *group.shape[1:]), group.dtype)])
            outs.append(self.session.run(None, {self.input_name: group})[0][: min(step, n - i)])
        return torch.from_numpy(np.concatenate(outs)).float()

    def postprocess(self, outputs: Any, batch: Batch) -> list[Detections]:
        if self.layout == "torchvision":
            return [
                to_detections(
                    {
                        key: torch.from_numpy(np.asarray(out[i]))
                        for key, i in zip(TORCHVISION_OUTPUTS, self.order, strict=True)
                    },
                    self.threshold,
                    self.label,
                )
                for out in outputs
            ]
        return [
            self._select(out.float(), height, width) for out, (height, width) in zip(outputs, batch.sizes, strict=True)
        ]

    def _select(self, out: torch.Tensor, height: int, width: int) -> Detections:
        if self.layout == "end2end":
            boxes, scores, class_ids = out[:, :4], out[:, 4], out[:, 5].round().long()
            keep = scores > self.threshold
            boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
        else:
            if self.layout == "yolo":
                rows = out.T  # [N, 4 + C]
                class_scores = rows[:, 4:]
            else:
                rows = out[out[:, 4] > self.threshold]  # [N, 5 + C], objectness above the threshold
                class_scores = rows[:, 5:] * rows[:, 4:5]
            scores, class_ids = class_scores.max(dim=1)
            keep = scores > self.threshold
            boxes = box_convert(rows[keep, :4], "cxcywh", "xyxy")
            scores, class_ids = scores[keep], class_ids[keep]
            order = batched_nms(boxes, scores, class_ids, self.iou)[: self.max_det]
            boxes, scores, class_ids = boxes[order], scores[order], class_ids[order]
        gain, _, _, top, left = letterbox_geometry(height, width, self.size)
        boxes = boxes.clone()
        boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - left) / gain).clamp(0, width)
        boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - top) / gain).clamp(0, height)
        return Detections(boxes, scores, class_ids.long(), [self.label(c) for c in class_ids.tolist()])
