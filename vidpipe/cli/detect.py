"""``vidpipe detect``: option checks, signals, progress and the summary around :class:`vidpipe.Pipeline`."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Callable

from .. import models
from ..errors import VidpipeError
from ..gst.graph import combine, write_graph
from ..gst.uri import source_path
from ..models.base import check_threshold
from ..options import StreamOptions
from ..pipeline import Pipeline, StreamsFailedError
from ..pipeline.streams import open_streams, read_sources_file, stream_specs
from ..sinks import JsonlSink, Sink, VideoSink, check_output_paths
from ..types import Event
from .progress import FrameProgress, expected_frames

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
QUIET_EVENTS = ("connected", "ended")  # said on stderr for live streams only


def install_stop_signals(stop: Callable[[], None]) -> tuple[Callable[[], None], list[int]]:
    """First SIGINT (Ctrl-C), SIGTERM (docker, systemd, Kubernetes, ``timeout``) or SIGHUP: ``stop()``
    (stop reading, finish the frames in flight, finalise every output). A second one: exit at once.
    Returns a function that restores the previous handlers, and the list the signal numbers go to."""
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) > 1:
            os._exit(128 + received[0])
        name = signal.Signals(signum).name
        print(f"\nvidpipe: {name}: stopping, finishing the outputs (again to quit at once)", file=sys.stderr)
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    return lambda: [signal.signal(sig, old) for sig, old in previous.items()], received


def sources_of(args: argparse.Namespace) -> list[str]:
    sources = list(args.source)
    if args.sources_file:
        sources += read_sources_file(args.sources_file)
    if not sources:
        raise VidpipeError("no source given (a file, URL or device, or --sources FILE)")
    return sources


def check_args(args: argparse.Namespace, inputs: list[str], several: bool) -> None:
    """Refuse bad option values with one line naming the option, before any work is done."""
    if args.batch < 1:
        raise VidpipeError(f"--batch must be at least 1, got {args.batch}")
    if args.max_frames is not None and args.max_frames < 1:
        raise VidpipeError(f"--max-frames must be at least 1, got {args.max_frames}")
    if args.threshold is not None:
        try:
            check_threshold(args.threshold)
        except VidpipeError:
            raise VidpipeError(f"--threshold must be a number between 0 and 1, got {args.threshold}") from None
    if args.classes is not None and not [c for c in args.classes.split(",") if c.strip()]:
        raise VidpipeError(f"--classes {args.classes!r}: no class name given (expected e.g. person,car)")
    if args.detect_fps is not None and not (math.isfinite(args.detect_fps) and args.detect_fps > 0):
        raise VidpipeError(f"--detect-fps must be a number above 0, got {args.detect_fps}")
    if args.max_latency is not None and not (math.isfinite(args.max_latency) and args.max_latency > 0):
        raise VidpipeError(f"--max-latency must be a number of seconds above 0, got {args.max_latency}")
    if several and args.video and "{stream}" not in args.video:
        raise VidpipeError(f"--video {args.video}: with several streams the path needs {{stream}} (out/{{stream}}.mp4)")
    named = [("--json", args.json_out), ("--video", args.video), ("--graph", args.graph)]
    check_output_paths([p for p in (source_path(s) for s in inputs) if p is not None], [(o, p) for o, p in named if p])


def say_event(event: Event, live: dict[str, bool]) -> None:
    """One stderr line per event worth a look (a failure is said once, as an error, at the end)."""
    if event.kind == "failed" or (event.kind in QUIET_EVENTS and not live.get(event.stream, False)):
        return
    level = "warning" if event.kind in ("frames_missing", "disconnected") else "info"
    print(f"vidpipe: {level}: {event.message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """``vidpipe detect``: see ``vidpipe detect --help``."""
    specs = stream_specs(sources_of(args))
    several = len(specs) > 1
    check_args(args, [s.source for s in specs], several)
    sinks: list[Sink] = []
    if args.json_out:
        sinks.append(JsonlSink(args.json_out))
    if args.video:
        sinks.append(VideoSink(args.video))  # checks the format before any work is done
    options = StreamOptions(detect_fps=args.detect_fps, max_latency=args.max_latency, max_frames=args.max_frames)
    opened, failed = open_streams(specs, options)  # bad sources fail before the model is loaded
    for name, error in failed.items():
        print(f"vidpipe: error: {'stream ' + name + ': ' if several else ''}{error}", file=sys.stderr)
    if not opened:
        if not several:
            raise next(iter(failed.values()))
        return 2
    try:
        detector = models.load(
            args.model, weights=args.weights, device=args.device, precision=args.precision, threshold=args.threshold
        )
    except BaseException:
        for spec in opened:
            spec.source.close()
        raise
    live = {spec.name: spec.source.live for spec in opened}
    pipeline = Pipeline(
        detector=detector,
        sources=[spec.source for spec in opened],
        batch=args.batch,
        sinks=sinks,
        classes=args.classes.split(",") if args.classes else None,
        options=options,
        on_event=[lambda event: say_event(event, live)],
    )
    if args.graph:
        graphs = {spec.name: spec.source.graph_dot() for spec in opened}
        write_graph(combine(graphs) if several else graphs[opened[0].name], args.graph)
    totals = [expected_frames(spec.source.info.frames, args.max_frames) for spec in opened]
    total = None if None in totals else sum(totals)
    restore, received = install_stop_signals(pipeline.stop)
    errors: list[str] = []
    try:
        with FrameProgress(total, enabled=not args.quiet, description="detect") as progress:
            pipeline.run(progress)
    except StreamsFailedError as exc:
        errors = [f"stream {name}: {error}" for name, error in exc.errors.items()]
    except VidpipeError as exc:
        errors = [str(exc)]
    finally:
        restore()
    print(pipeline.stats.summary(), file=sys.stderr)
    dropped = sum(s.dropped for s in pipeline.stats.streams.values())
    if dropped and not several:
        print(f"dropped     {dropped} frames (live source faster than the pipeline)", file=sys.stderr)
    for line in errors:
        print(f"vidpipe: error: {line}", file=sys.stderr)
    if errors or failed:
        return 2
    if received:
        return 128 + received[0]
    return 0
