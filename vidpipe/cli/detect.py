"""``vidpipe detect``: option checks, signals, progress and the summary around :class:`vidpipe.Pipeline`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .. import models
from ..analytics import parse_line, parse_zone
from ..api import Pipeline
from ..cluster.connect import check_worker_counts
from ..errors import OutputError, VidpipeError
from ..gst import Gst
from ..gst.graph import FORMATS as GRAPH_FORMATS
from ..gst.graph import compact_dot, write_graph
from ..gst.source import Source
from ..gst.uri import source_path
from ..models.base import wants_fixed_shapes
from ..pipeline import StreamsFailedError
from ..pipeline.graph import flow_graph
from ..pipeline.specs import StreamSpec, read_sources_file, stream_specs
from ..pipeline.streams import check_open_files, open_streams
from ..redact import printable
from ..sinks import CsvSink, EventsCsvSink, JsonlSink, Sink, VideoSink, check_output_paths, expand_streams
from ..sinks.video import FORMATS as VIDEO_FORMATS
from ..sinks.video import MAX_TRAILS
from ..types import Event
from .arguments import configs, flag, pixel_free_sinks, stream_options
from .progress import FrameProgress, expected_frames
from .signals import install_stop_signals

if TYPE_CHECKING:
    from .evidence import Evidence

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
QUIET_EVENTS = ("connected", "ended")  # said on stderr for live streams only


def sources_of(args: argparse.Namespace) -> list[str]:
    sources = list(args.source)
    if args.sources_file:
        sources += read_sources_file(args.sources_file)
    if not sources:
        raise VidpipeError("no source given (a file, URL or device, or --sources FILE)")
    return sources


def check_args(args: argparse.Namespace, specs: list[StreamSpec]) -> None:
    """Refuse bad option values with one line naming the option, before any work is done; leaves the
    values parsed in ``args`` (batch by device, lines and zones, the ONNX model options)."""
    inputs, several = [s.source for s in specs], len(specs) > 1
    args.model_config, args.stream_config = configs(args)
    args.batch, args.classes = args.model_config.batch, args.model_config.classes
    if args.evidence and getattr(args, "cluster", None):
        raise VidpipeError("--evidence: not on a cluster (yet): run without --cluster")
    spread = {"workers": args.workers, "streams_per_worker": args.streams_per_worker}
    if not getattr(args, "cluster", None) and any(v is not None for v in spread.values()):
        raise VidpipeError("--workers and --streams-per-worker spread streams over a cluster: add --cluster")
    check_worker_counts(flag, **spread, cpus_per_worker=args.cpus_per_worker)
    if several and args.video and "{stream}" not in args.video:
        raise VidpipeError(f"--video {args.video}: with several streams the path needs {{stream}} (out/{{stream}}.mp4)")
    if not 0 <= args.trails <= MAX_TRAILS:
        raise VidpipeError(f"--trails must be 0 to {MAX_TRAILS} frames, got {args.trails}")
    args.line, args.zone = [parse_line(v) for v in args.line], [parse_zone(v) for v in args.zone]
    names = {spec.name for spec in specs}
    for option, items in (("--line", args.line), ("--zone", args.zone)):
        for item in items:
            if item.stream is not None and item.stream not in names:
                raise VidpipeError(
                    f"{option} {item.stream}:{item.name}: no stream named {item.stream} "
                    f"(streams: {', '.join(sorted(names))})"
                )
    named = [("--json", args.json_out), ("--csv", args.csv_out), ("--events-csv", args.events_csv),
             ("--video", args.video), ("--graph", args.graph), ("--summary", args.summary_out)]  # fmt: skip
    outputs = expand_streams([(o, p) for o, p in named if p], [spec.name for spec in specs])
    files = [args.sources_file, args.weights, args.names, models.model_file(args.model)]  # (read too)
    read = [p for p in (source_path(s) for s in inputs) if p is not None] + [Path(f) for f in files if f]
    check_output_paths(read, outputs)
    if args.json_out and Path(args.json_out).suffix.lower() not in JSONL_SUFFIXES:
        raise VidpipeError(
            f"--json {args.json_out}: writes JSON Lines; use a name ending in {', '.join(JSONL_SUFFIXES)}"
        )
    if args.summary_out and Path(args.summary_out).suffix.lower() != ".json":
        raise VidpipeError(f"--summary {args.summary_out}: writes JSON; use a name ending in .json")
    if args.events_csv and Path(args.events_csv).suffix.lower() != ".csv":
        raise VidpipeError(f"--events-csv {args.events_csv}: writes CSV; use a name ending in .csv")
    if args.csv_out and Path(args.csv_out).suffix.lower() != ".csv":
        raise VidpipeError(f"--csv {args.csv_out}: writes CSV; use a name ending in .csv")
    if args.video and Path(args.video).suffix.lower() not in VIDEO_FORMATS:
        raise VidpipeError(f"--video {args.video}: unknown video format (use {', '.join(VIDEO_FORMATS)})")
    if args.graph and Path(args.graph).suffix.lower() not in GRAPH_FORMATS:
        raise VidpipeError(f"--graph {args.graph}: unknown graph format (use {', '.join(GRAPH_FORMATS)})")


def record_failures(sinks: list[Sink], failed: dict[str, BaseException]) -> None:
    """A run where no stream opened: its event files (JSONL) get each stream's ``failed`` line."""
    for sink in sinks:
        if isinstance(sink, JsonlSink):
            sink.open_stream(None)
            for name, error in failed.items():
                sink.event(Event(name, "failed", f"{name}: {error}"))
            sink.close()


def say_event(event: Event, live: dict[str, bool], progress: FrameProgress | None = None) -> None:
    """One stderr line per event worth a look (a failure is said once, as an error, at the end)."""
    if event.kind == "failed" or (event.kind in QUIET_EVENTS and not live.get(event.stream, False)):
        return
    level = "warning" if event.kind in ("frames_missing", "disconnected") else "info"
    line = f"vidpipe: {level}: {event.message}"
    console = progress.console if progress is not None else None
    if console is not None:
        console.print(line, markup=False, highlight=False)  # above the bar
    else:
        print(line, file=sys.stderr)


def _size(path: Path) -> str:
    try:
        size = path.stat().st_size
    except OSError:
        return "not written"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def model_summary(detector) -> str:
    """The summary's line on the model: name, precision, device, backend, why, and a conversion paid."""
    runner = "" if detector.backend == "torch" else f" with {detector.backend}"
    why = [detector.precision_reason]
    if detector.backend_reason != "as asked":
        why.append(detector.backend_reason)
    if detector.converted is not None:
        kept = "cached for the next runs" if getattr(detector.model, "cached", True) else "not cached"
        why.append(f"converted for {detector.backend} in {detector.converted:.1f} s, {kept}")
    if getattr(detector, "shapes", ()) and detector.warmed is not None:
        sizes = ", ".join(map(str, detector.shapes))
        why.append(f"batches padded to {sizes}, each warmed up before the run ({detector.warmed:.1f} s)")
    return f"model       {detector.name}, {detector.precision} on {detector.device}{runner} ({'; '.join(why)})"


def decoding_summary(sources: list[Source]) -> str:
    """The summary's line on decoding: the decoders GStreamer chose, and why (NVIDIA's or software)."""
    decoders = sorted({source.decoder or "none (raw video)" for source in sources})
    return f"decoding    {', '.join(decoders)} ({sources[0].decoding.note})"


def outputs_written(sinks: list[Sink]) -> list[dict]:
    """Each output file with what it holds (lines, rows or frames)."""
    files = []
    for sink in sinks:
        if isinstance(sink, JsonlSink):
            files.append({"path": str(sink.path), "lines": sink.lines})
        elif isinstance(sink, CsvSink | EventsCsvSink):
            files.append({"path": str(sink.path), "rows": sink.rows})
        elif isinstance(sink, VideoSink):
            files += [{"path": path, "frames": frames} for path, frames in sink.files()]
    return files


def write_summary(path: str, pipeline: Pipeline, sinks: list[Sink], graph: str | None, errors: list[str]) -> None:
    """The run as one JSON object (``--summary``): the model, the totals and per-stage latency, each
    stream's figures and counts, the outputs; written whole (beside the target, then renamed)."""
    det = pipeline.detector
    record = {
        "model": {"name": det.name, "backend": det.backend, "precision": det.precision, "device": str(det.device)},
        **pipeline.stats.snapshot(),
        "outputs": outputs_written(sinks) + ([{"path": graph}] if graph else []),
        "errors": errors,
    }
    target = Path(path)
    scratch = target.with_name(f".{target.name}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch.write_text(json.dumps(record, indent=2) + "\n")
        scratch.replace(target)
    except OSError as exc:
        scratch.unlink(missing_ok=True)  # (a full disk: no partial file left behind)
        raise OutputError(f"--summary {path}: cannot write ({exc.strerror})") from None


def outputs_summary(sinks: list[Sink], graph: str | None, summary: str | None = None) -> str:
    """Where the outputs went: paths, frame or line counts, sizes."""
    lines = []
    for sink in sinks:
        if isinstance(sink, JsonlSink):
            lines.append(f"{sink.path} ({sink.lines} lines, {_size(sink.path)})")
        elif isinstance(sink, CsvSink | EventsCsvSink):
            lines.append(f"{sink.path} ({sink.rows} rows, {_size(sink.path)})")
        elif isinstance(sink, VideoSink):
            for path, frames in sink.files():
                lines.append(f"{path} ({frames} frames, {_size(Path(path))})")
    if graph:
        lines.append(f"{graph} ({_size(Path(graph))})")
    if summary:
        lines.append(f"{summary} ({_size(Path(summary))})")
    if not lines:
        return ""
    return "outputs     " + "\n            ".join(printable(line) for line in lines)


def print_summary(pipeline: Pipeline, detector, decoding: str | None, sinks: list[Sink], args, several: bool) -> None:
    """The summary on stderr: the model, the figures, counts, drops, the outputs written."""
    print(model_summary(detector), file=sys.stderr)
    if decoding:
        print(decoding, file=sys.stderr)
    print(pipeline.stats.summary(), file=sys.stderr)
    for line in pipeline.summary():
        print(line, file=sys.stderr)
    dropped = sum(s.dropped for s in pipeline.stats.streams.values())
    if dropped and not several:
        print(f"dropped     {dropped} frames (live source faster than the pipeline)", file=sys.stderr)
    written = outputs_summary(sinks, args.graph, args.summary_out)
    if written:
        print(written, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """``vidpipe detect``: see ``vidpipe detect --help``."""
    specs = stream_specs(sources_of(args))
    check_args(args, specs)
    if args.cluster:
        from .cluster import run as run_on_cluster

        return run_on_cluster(args, specs)
    sinks = pixel_free_sinks(args)
    if args.video:
        sinks.append(VideoSink(args.video, trails=args.trails, keep_graphs=bool(args.graph)))
    evidence = None
    if args.evidence:
        from .evidence import Evidence  # (the service's store: only loaded when asked for)

        evidence = Evidence(args.evidence)
        sinks.append(evidence.store)
    stopping = threading.Event()  # a signal arrived: give up openings, stop the pipeline
    running: list[Pipeline] = []

    def stop() -> None:
        stopping.set()
        for pipeline in running:
            pipeline.stop()

    restore, received = install_stop_signals(stop)  # from the start: opening a stream can take seconds
    try:
        return _run_streams(args, specs, sinks, stopping, running, received, evidence)
    finally:
        restore()


def _run_streams(
    args: argparse.Namespace,
    specs: list[StreamSpec],
    sinks: list[Sink],
    stopping: threading.Event,
    running: list[Pipeline],
    received: list[int],
    evidence: Evidence | None = None,
) -> int:
    """Open the streams, load the model, run the pipeline, print the summary; returns the exit code."""
    several = len(specs) > 1
    options = stream_options(args)
    if evidence is not None:
        options = dataclasses.replace(options, tap=evidence.tap)
    check_open_files(len(specs), len(specs) if args.video else 0)
    opened, failed = open_streams(specs, options, stopping)  # bad sources fail before the model is loaded
    if stopping.is_set():  # stopped while the streams were opening: nothing was produced yet
        for spec in opened:
            spec.source.close()
        return 128 + received[0]
    decoding = decoding_summary([spec.source for spec in opened]) if options.gpu_decode else None
    if evidence is not None:
        evidence.opened({spec.name: spec.source.live for spec in opened})
    if several:  # (one stream's error is said once, by main)
        for name, error in failed.items():
            print(printable(f"vidpipe: error: stream {name}: {error}"), file=sys.stderr)
    if not opened:  # the files still say which streams failed, and why
        record_failures(sinks, failed)
        if not several:
            raise next(iter(failed.values()))
        return 2
    totals = [expected_frames(spec.source.info.frames, args.max_frames) for spec in opened]
    progress = FrameProgress(None if None in totals else sum(totals), enabled=not args.quiet, description="detect")
    progress.status("loading model")
    try:
        detector = models.load(**args.model_config.load_args())
        live = {spec.name: spec.source.live for spec in opened}
        pipeline = Pipeline(
            detector=detector,
            sources=[spec.source for spec in opened],
            batch=args.batch,
            sinks=sinks,
            classes=args.classes,
            track=args.track,
            lines=args.line,
            zones=args.zone,
            anchor=args.anchor,
            privacy=args.stream_config.privacy,
            blur=args.stream_config.blur,
            options=options,
            on_event=[] if args.quiet else [lambda event: say_event(event, live, progress)],
            failed=failed,  # said already; the JSONL gets their "failed" lines
        )
        running.append(pipeline)
        if stopping.is_set():  # stopped while the model loaded: finish at once, outputs finalised
            pipeline.stop()
        elif wants_fixed_shapes(detector.device):
            progress.status("warming up")  # every batch size once, before the first frame is timed
            pipeline.warm_up()
    except BaseException:
        progress.close()
        for spec in opened:
            spec.source.close()
        raise
    graphs = {}  # while the pipelines run: their elements (legible at natural size), or GStreamer's full graph
    if args.graph:
        graphs = {
            spec.name: spec.source.graph_dot(Gst.DebugGraphDetails.MEDIA_TYPE)
            if args.graph_detail
            else compact_dot(spec.source.pipeline)
            for spec in opened
        }
    errors: list[str] = []
    try:
        with progress:
            progress.status("detect")
            pipeline.run(progress)
    except StreamsFailedError as exc:
        errors = [f"stream {name}: {error}" for name, error in exc.errors.items() if name not in failed]
    except VidpipeError as exc:
        errors = [str(exc)]
    if args.graph:
        encoders = {}
        for sink in sinks:
            if isinstance(sink, VideoSink):
                encoders.update(sink.graph_dots(detail=args.graph_detail))
        try:
            write_graph(flow_graph(pipeline, graphs, encoders), args.graph)
        except VidpipeError as exc:
            errors.append(str(exc))
    if args.summary_out:
        try:
            write_summary(args.summary_out, pipeline, sinks, args.graph, errors)
        except VidpipeError as exc:
            errors.append(str(exc))
    if not args.quiet:  # -q: errors only
        print_summary(pipeline, detector, decoding, sinks, args, several)
    if evidence is not None:
        errors.extend(evidence.problems())
    for line in errors:
        print(printable(f"vidpipe: error: {line}"), file=sys.stderr)
    if errors or failed:
        return 2
    if received:
        return 128 + received[0]
    return 0
