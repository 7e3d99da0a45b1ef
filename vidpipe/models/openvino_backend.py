"""The OpenVINO backend (``--backend openvino``): a built-in model's network converted once from its
PyTorch module with ``openvino.convert_model`` (dynamic batch), cached on disk as OpenVINO IR next to the
weights cache, and compiled for the CPU in fp32 or bf16 (``INFERENCE_PRECISION_HINT``), chosen by the
same rule as the PyTorch backend. Pre- and post-processing stay vidpipe's own.

``int8`` (asked for, never chosen by ``auto``): the converted network quantised once with NNCF's
post-training quantisation, calibrated on the frames vidpipe ships (``models/calibration``), cached
beside the others; the layers left in floating point run in bf16 where the CPU computes it natively.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError
from ..unwinder import MIXED_MESSAGE, mixed_unwinders
from .base import Detector, choose_precision
from .ssd_mobilenet_v2 import cache_dir, warn_uncached

log = logging.getLogger(__name__)
HINTS = {"fp32": "f32", "bf16": "bf16"}
CALIBRATION = Path(__file__).with_name("calibration")  # frames of the bundled clip (see its LICENSE.txt)


def _openvino():
    if mixed_unwinders():
        raise ModelError(f"--backend openvino: {MIXED_MESSAGE}")
    logging.getLogger().addFilter(_not_telemetry)  # (before the import, which speaks already; added once)
    try:
        import openvino
    except ImportError:
        raise ModelError("--backend openvino needs OpenVINO: pip install 'vidpipe[openvino]'") from None
    return openvino


def _not_telemetry(record: logging.LogRecord) -> bool:
    """False for OpenVINO's telemetry messages: it logs on the root logger, several times a conversion,
    whenever it cannot write its files in HOME; nothing the user asked for."""
    return "openvino_telemetry" not in record.pathname


def _fingerprint(module: torch.nn.Module, size: tuple[int, int], version: str) -> str:
    digest = hashlib.sha256(f"{size}{version}".encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class OpenVinoNetwork:
    """A compiled OpenVINO model called like the PyTorch module it replaces: a float32 NCHW batch in,
    the network's raw outputs out (as tensors)."""

    def __init__(
        self,
        module: torch.nn.Module,
        name: str,
        size: tuple[int, int],
        precision: str,
        calibration: Callable[[], list[np.ndarray]] | None = None,
    ) -> None:
        ov = _openvino()
        module = module.float().to(memory_format=torch.contiguous_format).eval()
        folder = cache_dir() / "openvino"
        int8 = precision == "int8"
        xml = folder / f"{name}-{_fingerprint(module, size, ov.__version__)}{'-int8' if int8 else ''}.xml"
        core = ov.Core()
        hint = HINTS[choose_precision("auto", torch.device("cpu"))[0] if int8 else precision]
        config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": torch.get_num_threads()}
        self.compiled = _compile_cached(core, xml, config)
        self.converted: float | None = None  # seconds spent converting (None: read from the cache)
        self.cached = True  # False: converted here, and the cache could not keep it
        if self.compiled is None:
            nncf = _nncf() if int8 else None
            started = time.perf_counter()
            log.info("converting %s to OpenVINO IR (once): %s", name, xml)
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                model = ov.convert_model(module, example_input=torch.rand(1, 3, *size), input=[(-1, 3, *size)])
            if nncf is not None and calibration is not None:
                log.info("quantising %s to int8 (once), calibrated on %s", name, CALIBRATION)
                inputs = calibration()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    model = nncf.quantize(  # (its progress bars are not the user's business)
                        model, nncf.Dataset(inputs), preset=nncf.QuantizationPreset.MIXED, subset_size=len(inputs)
                    )
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=folder) as scratch:  # whole files only, even if interrupted
                    tmp = Path(scratch) / xml.name
                    ov.save_model(model, str(tmp), compress_to_fp16=False)
                    tmp.with_suffix(".bin").replace(xml.with_suffix(".bin"))
                    tmp.replace(xml)
            except (OSError, RuntimeError) as exc:  # a full or read-only disk: run it uncached
                warn_uncached(exc)
                self.cached = False
            self.compiled = core.compile_model(model, "CPU", config)
            self.converted = time.perf_counter() - started
        self.request = self.compiled.create_infer_request()
        self.path = xml

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.request.infer({0: images.float().contiguous().numpy()}, share_inputs=True)
        return tuple(torch.from_numpy(t.data.copy()) for t in self.request.output_tensors)


def _nncf():
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # (NNCF imports it: "no CUDA")
    try:
        import nncf
    except ImportError:
        raise ModelError("--precision int8 needs NNCF: pip install 'vidpipe[int8]'") from None
    logging.getLogger("nncf").setLevel(logging.ERROR)  # (it logs every layer it leaves alone)
    return nncf


def calibration_frames() -> list[torch.Tensor]:
    """The frames int8 is calibrated on: ``uint8[H, W, 3]`` frames of the bundled clip, shipped with vidpipe."""
    from PIL import Image

    frames = []
    for path in sorted(CALIBRATION.glob("*.jpg")):
        with Image.open(path) as image:
            frames.append(torch.from_numpy(np.array(image.convert("RGB"))))
    if not frames:
        raise ModelError(f"{CALIBRATION}: no calibration frames (a damaged installation?)")
    return frames


def _compile_cached(core, xml: Path, config: dict):
    """The cached IR compiled, or None when there is none or it is damaged (cut short, edited by hand):
    a damaged cache is removed, with a warning, so that it is converted again."""
    if not xml.is_file():
        return None
    try:
        return core.compile_model(core.read_model(str(xml)), "CPU", config)
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line messages
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        log.warning("%s: damaged OpenVINO cache (%s); converting the model again", xml, first)
        for stale in (xml, xml.with_suffix(".bin")):
            stale.unlink(missing_ok=True)
        return None


def use_openvino(detector: Detector, precision: str) -> Detector:
    """Run ``detector``'s network with OpenVINO at ``precision`` (fp32, bf16, auto, or int8: quantised
    once, see the module); its pre- and post-processing are unchanged. Built-in SSD models only (fixed
    input size)."""
    if detector.device.type != "cpu":
        raise ModelError("--backend openvino runs on the CPU (use --device cpu)")
    size = getattr(detector, "input_size", None)
    if size is None or not isinstance(detector.model, torch.nn.Module):
        raise ModelError(
            f"{detector.name}: --backend openvino supports the built-in models (ssd_mobilenet_v2_coco, ssd300)"
        )
    chosen, why = choose_precision(precision, detector.device)
    if chosen not in (*HINTS, "int8"):
        raise ModelError(f"--backend openvino runs fp32, bf16 or int8, not {chosen}")

    def calibration() -> list[np.ndarray]:
        return [detector.preprocess([frame]).images.float().numpy() for frame in calibration_frames()]

    detector.model = OpenVinoNetwork(detector.model, detector.name, size, chosen, calibration)
    detector.converted = detector.model.converted
    detector.dtype, detector.channels_last = torch.float32, False
    detector.precision, detector.precision_reason = chosen, why
    detector.backend = "openvino"
    detector.torch_threads = 1  # the cores go to OpenVINO's threads (measured: 14 % faster per batch)
    return detector
