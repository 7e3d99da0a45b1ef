"""The small commands: probe, decode, models, export, snapshot, gst-env (each one function taking the
parsed arguments and returning the exit code)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import textwrap
from pathlib import Path

from ..errors import VidpipeError
from ..gst import Gst
from ..gst import opening as _source
from ..gst.graph import write_graph
from ..gst.uri import source_path
from ..models import DEFAULT_MODEL
from ..rules import RuleError, frame_size
from ..sinks import check_output_paths
from .progress import FrameProgress, expected_frames

TABLE_WIDTH, NAME_COLUMN = 100, 28  # `vidpipe models`


def size(text: str) -> tuple[int, int]:
    try:
        return frame_size(text)
    except RuleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def probe(args: argparse.Namespace) -> int:
    with _source.open(args.source) as src:
        info = src.info
    if args.json:
        print(json.dumps(info.to_dict()))
        return 0
    duration = f"{info.duration:.3f} s" if info.duration is not None else "unknown"
    fps = f"{info.fps:.3f}" if info.fps is not None else "variable"
    rows = [
        ("source", info.source),
        ("container", info.container or "none"),
        ("codec", info.codec or "unknown"),
        ("resolution", f"{info.width}x{info.height}"),
        ("fps", fps),
        ("duration", duration),
        ("frames", str(info.frames) if info.frames is not None else "unknown"),
        ("live", "yes" if info.live else "no"),
    ]
    for key, value in rows:
        print(f"{key:<11} {value}")
    return 0


def decode(args: argparse.Namespace) -> int:
    if args.graph:  # (never over the input: a picture is a source too; checked before anything is decoded)
        check_output_paths([p for p in (source_path(args.source),) if p is not None], [("--graph", args.graph)])
    with _source.open(args.source, size=args.size, keep_aspect=args.keep_aspect) as src:
        total = expected_frames(src.info.frames, args.max_frames)
        progress = FrameProgress(total, enabled=not args.quiet, description="decode")
        try:
            with progress:
                if args.graph:
                    write_graph(src.graph_dot(), args.graph)
                for frame in src:
                    progress.advance()
                    if args.max_frames is not None and frame.index + 1 >= args.max_frames:
                        break
        finally:
            if not args.quiet:  # -q: errors only
                print(
                    f"decoded {progress.count} frames in {progress.elapsed:.2f} s ({progress.fps:.1f} FPS)",
                    file=sys.stderr,
                )
    return 0


def models(args: argparse.Namespace) -> int:
    import torch

    from ..models import available, choose_backend
    from ..models.base import choose_precision

    for name, summary in available().items():  # a table that fits 100 columns
        if len(name) > NAME_COLUMN:
            print(name)
            name = ""
        lines = textwrap.wrap(summary, width=TABLE_WIDTH - NAME_COLUMN - 1) or [""]
        print(f"{name:<{NAME_COLUMN}} {lines[0]}")
        for line in lines[1:]:
            print(f"{'':<{NAME_COLUMN}} {line}")
    precision, why = choose_precision("auto", torch.device("cpu"))
    print(f"\n--precision auto on this CPU: {precision} ({why.removeprefix('auto: ')})")
    backend, why = choose_backend("auto", DEFAULT_MODEL)
    print(f"--backend auto for {DEFAULT_MODEL} on this CPU: {backend} ({why.removeprefix('auto: ')})")
    optional = (("--backend openvino", "openvino", "openvino"), ("FILE.onnx", "onnxruntime", "onnx"))
    for backend, package, extra in optional:
        found = importlib.util.find_spec(package) is not None
        print(f"{backend}: {'available' if found else f'needs {package}: pip install vidpipe[{extra}]'}")
    return 0


def export(args: argparse.Namespace) -> int:
    from .. import models
    from ..models.export import export_onnx

    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise VidpipeError(f"{args.out}: an ONNX file needs a name ending in .onnx")
    inputs = [Path(p) for p in (args.weights, models.model_file(args.model)) if p]
    check_output_paths(inputs, [("export", args.out)])  # (never over its own weights or model file)
    detector = models.load(args.model, weights=args.weights, precision="fp32")
    export_onnx(detector, out)
    size = out.stat().st_size / 1e6
    print(
        f"wrote {out} ({size:.1f} MB): {detector.name}, one RGB image float[3, H, W] in 0..1 in; boxes, "
        f"scores, labels out; run it with: vidpipe detect SOURCE --model {out}",
        file=sys.stderr,
    )
    return 0


def snapshot(args: argparse.Namespace) -> int:
    from .snapshot import run

    return run(args)


def gst_env(args: argparse.Namespace) -> int:
    """The shell lines that make GStreamer find the vidpipe_detect element, and its Python loader find
    vidpipe and its packages."""
    import shlex
    import site

    package = Path(__file__).resolve().parent.parent
    plugins = package / "element" / "plugins"
    paths = [str(package.parent), *site.getsitepackages()]
    print(f'export GST_PLUGIN_PATH={shlex.quote(str(plugins))}"${{GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}}"')
    print(f'export PYTHONPATH={shlex.quote(":".join(paths))}"${{PYTHONPATH:+:$PYTHONPATH}}"')
    if Gst.Registry.get().find_plugin("python") is None:
        print(
            "vidpipe: warning: GStreamer's Python plugin loader is missing: "
            "sudo apt-get install gstreamer1.0-python3-plugin-loader",
            file=sys.stderr,
        )
    return 0
