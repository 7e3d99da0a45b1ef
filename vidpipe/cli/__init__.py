"""The ``vidpipe`` command line: probe, decode, detect, models.

Every failure the user can cause ends as one line on stderr, naming the input and the cause, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import VidpipeError
from ..gst import source as _source
from ..gst.graph import write_graph
from .progress import FrameProgress, expected_frames


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return width, height


def _probe(args: argparse.Namespace) -> int:
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


def _decode(args: argparse.Namespace) -> int:
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
            print(
                f"decoded {progress.count} frames in {progress.elapsed:.2f} s ({progress.fps:.1f} FPS)",
                file=sys.stderr,
            )
    return 0


def _models(args: argparse.Namespace) -> int:
    from ..models import available

    for name, summary in available().items():
        print(f"{name:<44} {summary}")
    return 0


def _detect(args: argparse.Namespace) -> int:
    from .detect import run

    return run(args)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``vidpipe: error: argument --batch: invalid int value: 'x'``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"vidpipe: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vidpipe", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    parser.add_argument("--version", action="version", version=f"vidpipe {__version__}")
    common = argparse.ArgumentParser(add_help=False)  # accepted after the subcommand too
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="log more (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("probe", parents=[common], help="print container, codec, resolution, fps, duration, frame count")
    p.add_argument("source", help="file, URL (rtsp://, http://), /dev/videoN or testsrc://PATTERN")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_probe)

    p = sub.add_parser("decode", parents=[common], help="decode into tensors and discard them (measures decode speed)")
    p.add_argument("source")
    p.add_argument("--max-frames", type=int, metavar="N")
    p.add_argument("--size", type=_size, metavar="WxH", help="scale inside GStreamer")
    p.add_argument("--keep-aspect", action="store_true", help="letterbox instead of stretching with --size")
    p.add_argument("--graph", metavar="FILE", help="write the pipeline graph (.dot, .png, .svg)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_decode)

    p = sub.add_parser("models", parents=[common], help="list the available detectors")
    p.set_defaults(func=_models)

    p = sub.add_parser(
        "detect", parents=[common], help="detect objects in every frame of one or more sources; write JSONL, video"
    )
    p.add_argument("source", nargs="*", help="sources: files, URLs, /dev/videoN, testsrc://; NAME=URI names one")
    p.add_argument("--sources", dest="sources_file", metavar="FILE", help="more sources, one per line (# comments)")
    p.add_argument("--model", default="ssd_mobilenet_v2_coco", help="detector name (see `vidpipe models`)")
    p.add_argument("--weights", metavar="FILE", help="weights file for the model")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--batch", type=int, default=4, metavar="N", help="frames per inference batch")
    p.add_argument("--threshold", type=float, default=None, metavar="T", help="minimum score")
    p.add_argument("--classes", metavar="A,B", help="keep only these labels (comma-separated)")
    p.add_argument("--json", dest="json_out", metavar="OUT.jsonl", help="write detections as JSON Lines")
    p.add_argument(
        "--video", metavar="OUT.mp4", help="write annotated video (.mp4/.mkv H.264, .webm VP8); several: {stream}"
    )
    p.add_argument("--graph", metavar="FILE", help="write the decode pipeline graph (.dot, .png, .svg)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop each stream after N frames")
    p.add_argument("--detect-fps", type=float, metavar="F", help="detect on at most F frames per second of each stream")
    p.add_argument(
        "--max-latency", type=float, metavar="S", help="drop live frames older than S s, not process them late (1.0)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_detect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vidpipe`` console script."""
    args = build_parser().parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    fmt = "vidpipe: %(levelname)s: %(message)s" if args.verbose == 0 else "%(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt)
    logging.addLevelName(logging.WARNING, "warning")
    try:
        return args.func(args)
    except VidpipeError as exc:
        print(f"vidpipe: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vidpipe: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
