"""What ``vidpipe detect``'s flags mean for the layers below, shared by one process and a cluster run:
the flags mapped into the one configuration model (checked there, named here as flags), how the streams
are read, and the outputs that need no pixels."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from ..options import StreamOptions, default_batch
from ..pipeline.config import ModelConfig, StreamConfig, config_error
from ..sinks import CsvSink, EventsCsvSink, JsonlSink, Sink

# the fields whose flag is not --FIELD-NAME (a nested one's: --PARENT-FIELD)
FLAGS = {"name": "--model", "layout": "--format", "motion.mode": "--motion", "motion.masks": "--motion-mask"}


def flag(field: str) -> str:
    """A configuration field as ``vidpipe detect`` spells it: ``detect_fps`` → ``--detect-fps``."""
    return FLAGS.get(field, "--" + field.replace("_", "-").replace(".", "-"))


def configs(args: argparse.Namespace) -> tuple[ModelConfig, StreamConfig]:
    """The model's and the streams' configuration from the flags; :class:`VidpipeError` naming the flag
    whose value breaks its rule (the same words as every other front door)."""
    model = {
        "name": args.model, "weights": args.weights, "backend": args.backend, "precision": args.precision,
        "device": args.device, "threshold": args.threshold, "classes": args.classes,
        "batch": default_batch(args.device) if args.batch is None else args.batch, "iou": args.iou,
        "max_det": args.max_det, "imgsz": args.imgsz, "layout": args.layout, "names": args.names,
    }  # fmt: skip
    stream = {"detect_fps": args.detect_fps, "max_latency": args.max_latency, "max_frames": args.max_frames,
              "privacy": args.privacy or None, "blur": args.blur,
              "motion": {"mode": args.motion, "threshold": args.motion_threshold, "min_area": args.motion_min_area,
                         "masks": list(args.motion_mask)}}  # fmt: skip
    try:
        return (
            ModelConfig.model_validate({k: v for k, v in model.items() if v is not None}),
            StreamConfig.model_validate({k: v for k, v in stream.items() if v is not None}),
        )
    except ValidationError as exc:
        raise config_error(exc, flag) from None


def stream_options(args: argparse.Namespace) -> StreamOptions:
    """How the streams are read: rate, latency bound, frame limit, GPU decoding."""
    base = StreamOptions(gpu_decode=args.device.startswith("cuda"))  # decode where the model runs, when it can
    return args.stream_config.options(base)


def pixel_free_sinks(args: argparse.Namespace) -> list[Sink]:
    """The outputs that need no pixels (``--json``, ``--csv``, ``--events-csv``): those a driver can write
    from records as well as a pipeline from results."""
    sinks: list[Sink] = []
    if args.json_out:
        sinks.append(JsonlSink(args.json_out))
    if args.csv_out:
        sinks.append(CsvSink(args.csv_out))
    if args.events_csv:
        sinks.append(EventsCsvSink(args.events_csv))
    return sinks
