"""What ``vidpipe detect``'s flags mean for the layers below, shared by one process and a cluster run:
how the streams are read, and the outputs that need no pixels."""

from __future__ import annotations

import argparse

from ..options import MotionOptions, StreamOptions
from ..sinks import CsvSink, EventsCsvSink, JsonlSink, Sink


def stream_options(args: argparse.Namespace) -> StreamOptions:
    """How the streams are read: rate, latency bound, frame limit, GPU decoding."""
    return StreamOptions(
        detect_fps=args.detect_fps,
        max_latency=args.max_latency,
        max_frames=args.max_frames,
        gpu_decode=args.device.startswith("cuda"),  # decode where the model runs, when GStreamer can
        motion=MotionOptions(
            mode=args.motion, threshold=args.motion_threshold, min_area=args.motion_min_area,
            masks=tuple(args.motion_mask),
        ),
    )  # fmt: skip


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
