"""``vidpipe detect --cluster``: the streams spread over Ray workers, the records gathered here."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import threading

from ..errors import VidpipeError
from ..pipeline.specs import StreamSpec
from ..redact import printable
from ..sinks import JsonlSink
from ..types import Event
from .arguments import pixel_free_sinks, stream_options
from .signals import install_stop_signals


def settings_of(args: argparse.Namespace) -> dict:
    """What every worker needs to build the same pipeline as ``vidpipe detect`` would."""
    options = dataclasses.asdict(stream_options(args))
    return {
        "model": args.model_config.load_args(),
        "analysis": {
            "classes": args.classes, "track": args.track, "lines": args.line,
            "zones": args.zone, "anchor": args.anchor,
            "privacy": args.stream_config.privacy, "blur": args.stream_config.blur,
        },
        "options": options,
        "batch": args.batch,
        "video": args.video,
    }  # fmt: skip


def run(args: argparse.Namespace, specs: list[StreamSpec]) -> int:
    from ..cluster import ClusterRun, connect, worker_plan

    if args.graph or args.summary_out:
        raise VidpipeError("--graph and --summary are not available with --cluster (each worker runs its own pipeline)")
    if args.video and len(specs) > 1 and "{stream}" not in args.video:
        raise VidpipeError("--video with --cluster needs {stream} in its path (each worker writes its streams)")
    sinks = pixel_free_sinks(args)
    stop = threading.Event()
    restore, received = install_stop_signals(stop.set)
    started = False
    try:
        started = connect(args.cluster)
        restore()  # Ray installs its own handlers as it starts: ours again, on top (a signal said so far kept)
        restore, received = install_stop_signals(stop.set, received)
        workers, resources = worker_plan(args.device, args.workers, args.cpus_per_worker)

        def say(event: Event) -> None:
            if not args.quiet and event.kind in ("moved", "failed", "disconnected", "reconnected"):
                print(printable(f"vidpipe: {event.message}"), file=sys.stderr)

        run = ClusterRun(
            [(spec.name, str(spec.source)) for spec in specs], settings_of(args), workers=workers,
            streams_per_worker=args.streams_per_worker, resources=resources, sinks=sinks, on_event=say,
        )  # fmt: skip
        figures = run.run(stop)
    finally:
        restore()
        if started:
            import ray

            ray.shutdown()
    if not args.quiet:
        print(figures.summary(), file=sys.stderr)
    if received:  # stopped before the first record: the files are there all the same (empty)
        for sink in sinks:
            if isinstance(sink, JsonlSink) and not sink.path.exists():
                sink.open_stream(None)
                sink.close()
    if figures.failed:  # as one process: a stream that failed fails the run
        return 2
    if received:
        return 128 + received[0]
    return 0
