"""The public facade: :class:`Pipeline` and :func:`detect` choose the runner, one process
(:class:`vidpipe.pipeline.runner.Pipeline`) or Ray workers (:class:`vidpipe.cluster.ClusterPipeline`),
so that neither runner knows of the other."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Iterator, Sequence

from . import models
from .analytics import Line, Zone
from .errors import VidpipeError
from .gst.source import Source
from .models.base import Detector
from .options import DEFAULT_BATCH, StreamOptions
from .pipeline import runner
from .pipeline.config import model_config
from .types import Result

__all__ = ["Pipeline", "detect"]


class Pipeline(runner.Pipeline):
    __doc__ = (
        (runner.Pipeline.__doc__ or "")
        + """
    ``cluster="ray"`` (a local Ray started and stopped with the run), ``"auto"`` or ``"ray://HOST:PORT"``
    (a running cluster) spreads the streams over Ray workers: the same methods, results without pixels
    (see :class:`vidpipe.cluster.ClusterPipeline` for its own keywords: ``workers``, ``cpus_per_worker``).
    """
    )

    def __new__(cls, *args: object, cluster: str | None = None, **kwargs: object) -> Pipeline:
        if cluster is not None and cls is Pipeline:
            from .cluster.pipeline import ClusterPipeline

            return ClusterPipeline(*args, cluster=cluster, **kwargs)  # type: ignore[return-value]
        return super().__new__(cls)

    def __init__(self, *args: object, cluster: None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def detect(
    source: str | os.PathLike | Source | Sequence[str | os.PathLike | Source],
    model: str | Detector = models.DEFAULT_MODEL,
    *,
    weights: str | None = None,
    device: str = "cpu",
    precision: str = "auto",
    backend: str = "auto",
    batch: int = DEFAULT_BATCH,
    threshold: float | None = None,
    classes: Iterable[str] | None = None,
    track: bool = False,
    lines: Sequence[Line | str] = (),
    zones: Sequence[Zone | str] = (),
    max_frames: int | None = None,
    options: StreamOptions | None = None,
    cluster: str | None = None,
    workers: int | None = None,
) -> Iterator[Result]:
    """Detect objects in every frame: ``for result in vidpipe.detect("clip.mp4"): ...``; several
    sources: ``vidpipe.detect(["a.mp4", "cam=rtsp://..."])`` (``result.frame.stream`` says which).
    ``cluster="ray"`` (a local Ray), ``"auto"`` or ``"ray://HOST:PORT"`` spreads the streams over
    ``workers`` Ray actors (default: as ``vidpipe detect --cluster``, one per CPU of the cluster, or per
    GPU on CUDA); the results then carry no pixels (``frame.tensor`` is empty).

    Yields one :class:`Result` per frame, in order per stream, while decoding, inference and your loop
    overlap. ``track=True`` adds track ids; ``lines`` / ``zones`` add crossing and zone events to
    ``result.events`` (see :class:`Pipeline`). ``model`` is a name (see ``vidpipe models``) or a
    :class:`~vidpipe.models.Detector`. ``precision`` and ``backend`` default to ``auto`` as in ``vidpipe
    detect``: bf16 where the CPU computes it natively, else fp32; OpenVINO for a built-in model on the
    CPU where it is installed, else PyTorch.
    """
    if isinstance(source, list | tuple) and not source:
        raise VidpipeError("vidpipe.detect: no sources given (a file, a URL, or a list of them)")
    detector: Detector | dict = (
        model
        if isinstance(model, Detector)
        else model_config(
            name=model, weights=weights, device=device, precision=precision, threshold=threshold, backend=backend
        ).load_args()
    )  # (checked as every front door checks it)
    if cluster is None and not isinstance(detector, Detector):  # (on a cluster, each worker loads it)
        detector = models.load(**detector)
    many = isinstance(source, (list, tuple))
    pipeline = Pipeline(
        None if many else source,
        detector,
        sources=list(source) if many else None,
        batch=batch,
        classes=classes,
        track=track,
        lines=lines,
        zones=zones,
        max_frames=max_frames,
        options=options,
        **({"cluster": cluster, "workers": workers} if cluster is not None else {}),
    )
    yield from pipeline


def _signature() -> inspect.Signature:
    """The local pipeline's keywords and ``cluster`` (help() and IDEs show them, not ``*args``)."""
    params = list(inspect.signature(runner.Pipeline.__init__).parameters.values())[1:]  # (not self)
    cluster = inspect.Parameter("cluster", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="str | None")
    return inspect.Signature([*params, cluster])


Pipeline.__signature__ = _signature()  # type: ignore[attr-defined]
