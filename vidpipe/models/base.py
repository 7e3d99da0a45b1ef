"""The detector interface: preprocess → forward → postprocess, each separately callable."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import rules
from ..errors import FrameInputError, ModelError
from .detections import Detections, all_safe, sanitize
from .resize import stack_resized

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def batch_shapes(batch: int) -> tuple[int, ...]:
    """The batch sizes a network runs at when its shapes are fixed: the powers of two below ``batch``,
    and ``batch`` itself (batch 32: 1, 2, 4, 8, 16, 32; batch 12: 1, 2, 4, 8, 12)."""
    if batch < 1:
        raise ModelError(f"batch must be at least 1, got {batch}")
    shapes = [1 << k for k in range(batch.bit_length()) if 1 << k < batch]
    return (*shapes, batch)


def padded_size(frames: int, shapes: Sequence[int]) -> int:
    """The batch size ``frames`` frames run at: the smallest of ``shapes`` that holds them (``frames``
    itself when there are no shapes or none is large enough)."""
    return min((s for s in shapes if s >= frames), default=frames)


def wants_fixed_shapes(device: torch.device) -> bool:
    """Whether batches are padded to fixed sizes (:func:`batch_shapes`), each warmed up at load: on
    CUDA, where every new input shape costs kernel loading and cuDNN's plan building inside the timed
    run (measured on an H200: inference p95 219 ms with varying batches, 0.32 ms with full ones). Not
    on the CPU, where padding would only add work (oneDNN has no per-shape set-up worth avoiding)."""
    return device.type == "cuda"


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse ``cpu`` / ``cuda`` / ``cuda:N``; fail clearly when CUDA is not there."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ModelError(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"device {device!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ModelError(f"unsupported device {device!r} (use cpu, cuda or cuda:N)")
    return dev


CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # CPU flags of native bf16 arithmetic (oneDNN uses them)


def cpu_flags() -> set[str]:
    """The CPU's feature flags, as Linux reports them (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# Model-only speed on CUDA, the table ``--precision auto`` chooses from (and docs/performance.md shows):
# frames per second of ssd_mobilenet_v2_coco called on uint8 frames in host memory (pre- and
# post-processing included), by (precision, layout) and batch size; layout "nchw" or "nhwc"
# (channels-last). Measured on one NVIDIA H200, PyTorch 2.11+cu130, main f251290, benchmarks/gpu.py
# (CUDA_PRECISION_SOURCE). An empty row is still to be measured: benchmarks/gpu_on_device.sh prints every
# row; copy its figures here and into docs/performance.md. Until then half precision is compared by
# its NCHW figures and runs channels-last (what tensor cores want), fp32 runs NCHW (TF32, measured).
CUDA_PRECISION_SOURCE = "one H200, torch 2.11, main f251290"
CUDA_PRECISION_TABLE: dict[tuple[str, str], dict[int, float]] = {
    ("fp32", "nchw"): {1: 152, 8: 1033, 32: 3114, 128: 3202},
    ("fp16", "nchw"): {1: 88, 8: 606, 32: 1125, 128: 1886},
    ("bf16", "nchw"): {1: 61, 8: 470, 32: 1178, 128: 2874},
    ("fp32", "nhwc"): {},  # to be measured
    ("fp16", "nhwc"): {},  # to be measured
    ("bf16", "nhwc"): {},  # to be measured
}
CUDA_AUTO_BATCH = 32  # the batch the table is read at for --precision auto (the default batch on CUDA)


def _measured(precision: str, batch: int) -> tuple[float, str] | None:
    """The table's best figure for ``precision`` at the measured batch nearest ``batch`` (by ratio), and
    the layout it was measured with; None when the precision has no measured row."""
    best: tuple[float, str] | None = None
    for (name, layout), row in CUDA_PRECISION_TABLE.items():
        if name != precision or not row:
            continue
        nearest = min(row, key=lambda b: (abs(math.log(b / batch)), -b))
        if best is None or row[nearest] > best[0]:
            best = (row[nearest], layout)
    return best


def cuda_precision(batch: int = CUDA_AUTO_BATCH, bf16: bool = True) -> tuple[str, str]:
    """``--precision auto`` on CUDA: the fastest measured precision at ``batch`` in
    :data:`CUDA_PRECISION_TABLE` (``bf16``: whether the device computes bf16), and why."""
    figures = {p: m for p in PRECISIONS if (p != "bf16" or bf16) and (m := _measured(p, batch)) is not None}
    if not figures:
        return ("bf16" if bf16 else "fp16"), "auto: no measured figure for CUDA (half precision by default)"
    ranked = sorted(figures, key=lambda p: -figures[p][0])
    listed = ", ".join(f"{p} {figures[p][0]:,.0f}" for p in ranked)
    return ranked[0], f"auto: fastest measured on CUDA at batch {batch} (FPS {listed}; {CUDA_PRECISION_SOURCE})"


def default_channels_last(precision: str, device: torch.device) -> bool:
    """The memory layout a precision runs in: channels-last on the CPU (faster MobileNet/ResNet
    convolutions, see benchmarks/models.py); on CUDA, channels-last for half precision (the layout
    tensor-core convolutions take without a transpose) and NCHW for fp32, unless
    :data:`CUDA_PRECISION_TABLE` has both layouts measured for the precision and the other one wins."""
    if device.type != "cuda":
        return True
    rows = {layout: CUDA_PRECISION_TABLE.get((precision, layout)) for layout in ("nchw", "nhwc")}
    if all(rows.values()):
        nchw, nhwc = rows["nchw"], rows["nhwc"]
        common = set(nchw) & set(nhwc)
        at = CUDA_AUTO_BATCH if CUDA_AUTO_BATCH in common else max(common, default=0)
        if at:
            return nhwc[at] > nchw[at]
    return precision in ("fp16", "bf16")


def choose_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """The precision to run and why. ``auto``: on the CPU bf16 where it computes bf16 natively
    (AVX512-BF16 or AMX: measured 1.9x faster than fp32 there) and fp32 elsewhere (bf16 is emulated
    there, measured 2.5x slower); on CUDA the fastest in the measurement table (:func:`cuda_precision`;
    fp32 on an H200 today, at every batch size)."""
    if precision != "auto":
        return precision, "as asked"
    if device.type == "cuda":
        return cuda_precision(CUDA_AUTO_BATCH, bf16=torch.cuda.is_bf16_supported())
    native = [flag for flag in CPU_BF16_FLAGS if flag in cpu_flags()]
    if native:
        return "bf16", f"auto: the CPU computes bf16 natively ({', '.join(native)})"
    return "fp32", "auto: the CPU has no native bf16 (no avx512_bf16 or amx_bf16)"


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """fp32/bf16 on CPU, fp32/fp16/bf16 on CUDA."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r} (use {', '.join(PRECISIONS)})")
    if precision == "fp16" and device.type == "cpu":
        raise ModelError("precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    return PRECISIONS[precision]


def check_threshold(threshold: float) -> float:
    """A score threshold is a finite number in [0, 1]."""
    try:
        return rules.fraction(threshold)
    except rules.RuleError as exc:
        raise ModelError(f"threshold {exc}") from None


def as_frames(frames: Any) -> list[torch.Tensor]:
    """Check and normalise a detector's input: a list of ``uint8[H, W, 3]`` RGB frames (tensors or numpy
    arrays), or one ``uint8[N, H, W, 3]`` batch. Anything else raises :class:`FrameInputError` that says
    what was expected and what was given."""
    if isinstance(frames, (torch.Tensor, np.ndarray)):
        if frames.ndim == 3:
            raise FrameInputError(
                f"expected a list of frames, got a single array of shape {list(frames.shape)}: pass [frame]"
            )
        if frames.ndim != 4:
            shape = list(frames.shape)
            raise FrameInputError(f"expected a list of uint8[H, W, 3] frames, got an array of shape {shape}")
        frames = list(frames)
    elif not isinstance(frames, Sequence) or isinstance(frames, (str, bytes)):
        raise FrameInputError(f"expected a list of uint8[H, W, 3] frames, got {type(frames).__name__}")
    checked = []
    for i, frame in enumerate(frames):
        if isinstance(frame, np.ndarray):
            if frame.dtype != np.uint8:
                raise FrameInputError(f"frame {i}: expected dtype uint8 (0-255 RGB), got numpy {frame.dtype}")
            frame = torch.from_numpy(np.ascontiguousarray(frame))
        if not isinstance(frame, torch.Tensor):
            kind = type(frame).__name__
            raise FrameInputError(f"frame {i}: expected a uint8[H, W, 3] tensor or numpy array, got {kind}")
        if frame.dtype != torch.uint8:
            hint = ""
            if frame.is_floating_point() and frame.numel() and float(frame.max()) <= 1.0:
                hint = " (values in [0, 1]: multiply by 255 and convert to uint8)"
            raise FrameInputError(f"frame {i}: expected dtype uint8 (0-255 RGB), got {frame.dtype}{hint}")
        if frame.dim() != 3 or frame.shape[2] != 3:
            channels_first = frame.dim() == 3 and frame.shape[0] == 3
            hint = " (channels first? use frame.permute(1, 2, 0))" if channels_first else ""
            shape = list(frame.shape)
            raise FrameInputError(f"frame {i}: expected shape [H, W, 3] (RGB, channels last), got {shape}{hint}")
        if frame.shape[0] < 1 or frame.shape[1] < 1:
            raise FrameInputError(f"frame {i}: empty frame of shape {list(frame.shape)}")
        checked.append(frame)
    return checked


@dataclass(slots=True)
class Batch:
    """Model input for a list of frames: ``images`` on the model's device, and each frame's (h, w)."""

    images: Any
    sizes: list[tuple[int, int]]


class Detector:
    """A detector: call it on a list of ``uint8[H, W, 3]`` RGB frames, get one :class:`Detections` each.

    ``preprocess``, ``forward`` and ``postprocess`` can be called one by one (the pipeline does, to batch
    and time them). ``classes[class_id]`` is the label of a class id.
    """

    name: str = "detector"
    backend: str = "torch"  # what runs the network: torch, openvino (onnxruntime for ONNX files)
    # PyTorch's threads for the work around the network while the detector runs (None: as they are).
    # A runtime with its own threads (OpenVINO) wants 1: two threads of PyTorch's OpenMP pool keep
    # spinning for a while after each parallel step and take the cores from the runtime's threads.
    torch_threads: int | None = None
    dropped_detections: int = 0  # detections with a NaN or infinite box or score (see results)
    backend_reason: str = "as asked"  # why this backend runs the network (see models.choose_backend)
    converted: float | None = None  # seconds this run spent converting the model (None: none, or cached)
    load_args: dict | None = None  # the arguments of models.load that made it (None: made by hand)
    can_pad: bool = False  # its postprocess drops the results of padding frames (see pad)
    shapes: tuple[int, ...] = ()  # the batch sizes its network runs at (empty: as many as frames given)
    warmed: float | None = None  # seconds the last warm-up took (None: not warmed up)

    def __init__(
        self,
        model: nn.Module,
        *,
        classes: Sequence[str],
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        threshold: float = 0.5,
        channels_last: bool | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.precision, self.precision_reason = choose_precision(precision, self.device)
        self.dtype = resolve_dtype(self.precision, self.device)
        self.threshold = check_threshold(threshold)
        self.classes = list(classes)
        # Channels-last on the CPU, and for half precision on CUDA (see default_channels_last).
        if channels_last is None:
            channels_last = default_channels_last(self.precision, self.device)
        self.channels_last = channels_last
        model = model.eval().to(self.device, self.dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    def label(self, class_id: int) -> str:
        return self.classes[class_id] if 0 <= class_id < len(self.classes) else str(class_id)

    def set_iou(self, iou: float) -> None:
        """Set the IoU above which boxes of one class suppress each other (NMS)."""
        raise ModelError(f"{self.name}: does its own box selection; its NMS IoU cannot be set")

    def preprocess(self, frames: Sequence[torch.Tensor]) -> Batch:
        raise NotImplementedError

    @torch.inference_mode()
    def forward(self, batch: Batch) -> Any:
        return self.model(batch.images)

    def postprocess(self, outputs: Any, batch: Batch) -> list[Detections]:
        raise NotImplementedError

    @torch.inference_mode()
    def __call__(self, frames: Sequence[torch.Tensor]) -> list[Detections]:
        """Detect in a list of ``uint8[H, W, 3]`` RGB frames (tensors or numpy arrays, any sizes)."""
        frames = as_frames(frames)
        if len(frames) == 0:
            return []
        with self.threads():
            batch = self.pad(self.preprocess(frames))
            return self.results(self.forward(batch), batch)

    def pad(self, batch: Batch) -> Batch:
        """``batch`` with its images padded with blank ones up to the next of :attr:`shapes` (their
        results are dropped by :meth:`postprocess`); unchanged without fixed shapes."""
        images = batch.images
        if not self.shapes or not isinstance(images, torch.Tensor):
            return batch
        count = images.shape[0]
        size = padded_size(count, self.shapes)
        if size == count:
            return batch
        fmt = torch.channels_last if self.channels_last and images.dim() == 4 else torch.contiguous_format
        padded = torch.empty((size, *images.shape[1:]), dtype=images.dtype, device=images.device, memory_format=fmt)
        padded[:count] = images
        padded[count:] = 0
        return Batch(padded, batch.sizes)

    def prepare(self, batch: int, *, fixed: bool | None = None, frame: tuple[int, int] | None = None) -> float:
        """Fix the network's batch sizes for runs of up to ``batch`` frames (:func:`batch_shapes`) and
        warm each one up (kernels loaded, cuDNN plans built) before any frame is timed; returns the
        seconds it took. ``fixed``: whether to (default: :func:`wants_fixed_shapes`, on CUDA; True runs
        the same path on the CPU). ``frame``: the (h, w) of the warm-up frames (default: the network's
        input size). Detectors that cannot drop padding results (``can_pad`` False) are left as they
        are. Calling it again for the same batch does nothing."""
        fixed = wants_fixed_shapes(self.device) if fixed is None else fixed
        if not fixed or not self.can_pad:
            self.shapes = ()
            return 0.0
        shapes = batch_shapes(batch)
        if shapes == self.shapes and self.warmed is not None:
            return 0.0
        self.shapes = shapes
        height, width = frame or getattr(self, "input_size", (300, 300))
        blank = torch.zeros((height, width, 3), dtype=torch.uint8)
        start = time.perf_counter()
        for size in shapes:
            self([blank] * size)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.warmed = time.perf_counter() - start
        log.debug("%s: warmed up batch sizes %s in %.2f s", self.name, shapes, self.warmed)
        return self.warmed

    def results(self, outputs: Any, batch: Batch) -> list[Detections]:
        """:meth:`postprocess`, then every box made safe, whatever the model returned: detections with a
        NaN or infinite box or score are dropped (counted in ``dropped_detections``, one warning), boxes
        are clipped to their frame and their corners ordered (x1 <= x2, y1 <= y2)."""
        found = self.postprocess(outputs, batch)
        if len(found) != len(batch.sizes):
            raise ModelError(f"{self.name}: returned {len(found)} results for {len(batch.sizes)} frames")
        if all_safe(found, batch.sizes):  # one check for the batch: nothing to change (the usual case)
            return list(found)
        safe = []
        for detections, size in zip(found, batch.sizes, strict=True):
            detections, dropped = sanitize(detections, size)
            if dropped:
                if not self.dropped_detections:
                    log.warning(
                        "%s: dropped %d detection(s) with a NaN or infinite box or score (further ones are counted)",
                        self.name, dropped,
                    )  # fmt: skip
                self.dropped_detections += dropped
            safe.append(detections)
        return safe

    @contextmanager
    def threads(self) -> Iterator[None]:
        """Run the block with ``torch_threads`` PyTorch threads in this thread, then restore them."""
        previous = torch.get_num_threads()
        if self.torch_threads is None or self.torch_threads == previous:
            yield
            return
        torch.set_num_threads(self.torch_threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """Cast a float ``[N, 3, H, W]`` batch to the model's device, dtype and memory format."""
        images = images.to(self.device, self.dtype, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} on {self.device} {self.precision}>"


class FixedInputDetector(Detector):
    """A detector whose network takes ``input_size`` (h, w) images (the built-in SSD models): frames are
    resized and ``normalize``d; the outputs are ``decode``d to normalised boxes and class scores, and the
    boxes are selected per frame (``threshold``, per-class NMS at ``iou``, ``max_detections``)."""

    input_size: tuple[int, int]
    iou: float
    max_detections: int
    can_pad = True

    def set_iou(self, iou: float) -> None:
        self.iou = check_threshold(iou)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float ``[N, 3, h, w]`` in 0..255 → the network's input."""
        raise NotImplementedError

    def decode(self, outputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw outputs → (boxes ``[N, A, 4]`` normalised x1y1x2y2, class scores ``[N, A, C]``)."""
        raise NotImplementedError

    def preprocess(self, frames: Sequence[torch.Tensor]) -> Batch:
        images = self.normalize(stack_resized(frames, self.input_size, self.device))
        return Batch(self.to_input(images), [(int(f.shape[0]), int(f.shape[1])) for f in frames])

    def postprocess(self, outputs: Any, batch: Batch) -> list[Detections]:
        from .boxes import select_per_frame  # (torchvision loads with the first model, not with vidpipe)

        boxes, scores = self.decode(outputs)
        count = len(batch.sizes)
        if boxes.shape[0] > count:  # padding frames (see pad): their results go
            boxes, scores = boxes[:count], scores[:count]
        return select_per_frame(
            boxes, scores, batch.sizes, threshold=self.threshold, iou=self.iou,
            max_detections=self.max_detections, label=self.label,
        )  # fmt: skip
