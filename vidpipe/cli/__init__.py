"""The vidpipe command line: probe, decode, snapshot, detect, serve, events, gst-env, models, export.

Every failure the user can cause ends as one line on stderr, naming the input and the cause, exit code 2.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import logging
import os
import signal
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import ConfigError, VidpipeError
from ..memory import bound_arenas
from ..models import DEFAULT_MODEL
from ..options import DEFAULT_BATCH, DEFAULT_GPU_BATCH, DEFAULT_LIVE_MAX_LATENCY, MOTION_MODES, MotionOptions
from ..redact import mask_secrets, printable
from .events import add_command as add_events
from .tools import decode, export, gst_env, probe, size, snapshot
from .tools import models as list_models


def _serve(args: argparse.Namespace) -> int:
    from .serve import run

    return run(args)


def _detect(args: argparse.Namespace) -> int:
    from .detect import run

    return run(args)


class _MaskingFormatter(logging.Formatter):
    """Log lines with every URL's password masked and the message's control characters escaped (see
    printable: a name holding a newline cannot forge a second line); a traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``vidpipe: error: argument --batch: invalid int value: 'x'``; an
    unknown option gets the nearest known one: ``unknown option --treshold (did you mean --threshold?)``."""

    commands: dict[str, argparse.ArgumentParser]
    argv: list[str]

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        self.argv = list(sys.argv[1:] if args is None else args)
        return super().parse_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        prog = self.prog
        if message.startswith("unrecognized arguments:") and getattr(self, "commands", None):
            command = next((word for word in self.argv if word in self.commands), None)
            if command is not None:
                sub = self.commands[command]
                prog = sub.prog
                known = [o for action in sub._actions for o in action.option_strings]
                unknown = [w for w in message.split(":", 1)[1].split() if w.startswith("-")]
                if unknown:
                    option = unknown[0].split("=", 1)[0]
                    close = difflib.get_close_matches(option, known, n=1, cutoff=0.6)
                    hint = f" (did you mean {close[0]}?)" if close else ""
                    message = f"unknown option {option}{hint}"
        self.exit(2, f"vidpipe: error: {message}; see {prog} --help\n")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Each option's default shown after its help (unless the help says it); examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS) and action.default != []
        if "(default" not in text and shown and action.option_strings:
            text += " (default: %(default)s)"
        return text


SOURCE_HELP = "a file, file://, rtsp://, http(s):// URL, /dev/videoN, or testsrc://PATTERN?width=W&height=H&fps=F"

EXAMPLES = {
    "probe": """examples:
  vidpipe probe clip.mp4
  vidpipe probe --json rtsp://10.0.0.5/stream""",
    "decode": """examples:
  vidpipe decode clip.mp4                      # decode speed, with a progress bar
  vidpipe decode clip.mp4 --size 640x360 --keep-aspect --max-frames 300
  vidpipe decode clip.mp4 --graph pipeline.svg""",
    "detect": """examples:
  vidpipe detect clip.mp4 --json out/detections.jsonl --video out/annotated.mp4
  vidpipe detect clip.mp4 --classes person,car --threshold 0.6 --json people.jsonl
  vidpipe detect gate=rtsp://10.0.0.5/s door=rtsp://10.0.0.6/s --detect-fps 5 \\
      --json out/all.jsonl --video 'out/{stream}.mp4'
  vidpipe detect --sources cameras.txt --detect-fps 5 --json out/all.jsonl
  vidpipe detect street.mp4 --line door=100,0,100,480 --zone queue=0,300,200,300,200,480,0,480 \\
      --json out/counts.jsonl --csv out/boxes.csv --video out/counted.mp4 --trails 30

outputs: --json .jsonl/.ndjson/.json (JSON Lines), --csv .csv, --video .mp4/.mkv (H.264) or .webm (VP8),
--graph .dot, .png, .svg or .pdf. Ctrl-C, SIGTERM or SIGHUP finish the frames in flight and finalise
every output; a second one exits at once.""",
    "snapshot": """examples:
  vidpipe snapshot clip.mp4 out/frame.png --grid                    # find the pixels to use
  vidpipe snapshot clip.mp4 out/check.png --at 12.5 --line door=192,40,192,288 --zone desk=0,150,150,150,150,288
  vidpipe snapshot rtsp://10.0.0.5/stream out/cam.png --grid         # a live camera: its next frame""",
    "serve": """examples:
  vidpipe serve                                   # no stream yet: add them on the web page or over the API
  vidpipe serve --config vidpipe.yaml             # the streams, model, MQTT and auth of the file
  vidpipe serve --check --config vidpipe.yaml     # validate the file and exit (0 valid, 2 invalid)
  VIDPIPE_TOKEN=... vidpipe serve --config vidpipe.yaml --host 0.0.0.0   # the API's token from the environment
  vidpipe serve --config vidpipe.yaml --host 0.0.0.0 --token-file /etc/vidpipe/token
  curl -X PUT localhost:8080/api/streams/gate -H 'Content-Type: application/json' \\
      -d '{"uri": "rtsp://10.0.0.5/s", "detect_fps": 5, "track": true}'

the page is at http://HOST:PORT/, the API's docs at /docs, metrics at /metrics. SIGTERM or Ctrl-C finish
every output and exit; SIGHUP reloads the configuration and restarts only the streams that changed.""",
    "gst-env": """examples:
  eval "$(vidpipe gst-env)"
  gst-inspect-1.0 vidpipe_detect
  gst-launch-1.0 filesrc location=clip.mp4 ! decodebin ! videoconvert ! vidpipe_detect draw=true \\
      ! videoconvert ! x264enc ! mp4mux ! filesink location=out.mp4""",
    "models": """examples:
  vidpipe models""",
    "export": """examples:
  vidpipe export --model ssd_mobilenet_v2_coco --format onnx out/ssd_mobilenet_v2.onnx
  vidpipe export --model torchvision:fasterrcnn_resnet50_fpn --weights frcnn.pth --format onnx frcnn.onnx
  vidpipe detect clip.mp4 --model out/ssd_mobilenet_v2.onnx      # runs it with ONNX Runtime""",
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vidpipe",
        description="Decode video with GStreamer, detect objects with PyTorch, write JSON Lines and videos.",
        epilog="run 'vidpipe COMMAND --help' for a command's options and examples",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only (no progress bar, no summary)")
    parser.add_argument("--version", action="version", version=f"vidpipe {__version__}")
    common = argparse.ArgumentParser(add_help=False)  # accepted after the subcommand too
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="log more (-vv for debug)")
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="errors only (no progress bar, no summary)",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    parser.commands = {}

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        parser.commands[name] = sub.add_parser(
            name, parents=[common], help=summary, description=summary, epilog=EXAMPLES[name], formatter_class=_Help
        )
        return parser.commands[name]

    p = command("probe", "print container, codec, resolution, fps, duration and frame count of a source")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=probe)

    p = command("decode", "decode a source into tensors and discard them (measures decoding speed)")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames (default: all)")
    p.add_argument("--size", type=size, metavar="WxH", help="scale inside GStreamer (default: the source's size)")
    p.add_argument("--keep-aspect", action="store_true", help="letterbox instead of stretching with --size")
    p.add_argument("--graph", metavar="FILE", help="write the pipeline graph (.dot, .png, .svg, .pdf)")
    p.set_defaults(func=decode)

    p = command("snapshot", "one frame with a pixel grid and the lines and zones drawn, to place them")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("out", metavar="OUT.png", help="the picture to write")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--frame", type=int, metavar="N", help="the frame numbered N (default: the first)")
    where.add_argument("--at", type=float, metavar="SECONDS", help="the first frame at or after this time")
    p.add_argument("--line", action="append", default=[], metavar="NAME=x1,y1,x2,y2",
                   help="a counting line to draw, with the direction that counts as in (repeatable)")  # fmt: skip
    p.add_argument("--zone", action="append", default=[], metavar="NAME=x1,y1,x2,y2,x3,y3,...",
                   help="a zone to draw (repeatable)")  # fmt: skip
    p.add_argument("--grid", action="store_true", help="draw a pixel grid labelled with coordinates")
    p.set_defaults(func=snapshot)

    p = command("gst-env", "print the shell lines that let gst-launch-1.0 use the vidpipe_detect element")
    p.set_defaults(func=gst_env)

    p = command("models", "list the available detectors")
    p.set_defaults(func=list_models)

    p = command("export", "write a detector as an ONNX graph with its pre- and post-processing inside")
    p.add_argument("--model", default=DEFAULT_MODEL, help="detector name (built-in or torchvision:<builder>)")
    p.add_argument("--weights", metavar="FILE", help="weights file for the model (default: the model's own)")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="output format")
    p.add_argument("out", metavar="OUT.onnx", help="the file to write")
    p.set_defaults(func=export)

    p = command("detect", "detect objects in every frame of one or more sources; write JSON Lines and videos")
    inp = p.add_argument_group("input")
    inp.add_argument("source", nargs="*", help=SOURCE_HELP + "; NAME=URI names a stream")
    inp.add_argument("--sources", dest="sources_file", metavar="FILE", help="more sources, one per line (# comments)")
    inp.add_argument("--max-frames", type=int, metavar="N",
                     help="stop each stream after N frames read from it (after --detect-fps; frames a live "
                     "stream then drops to keep its latency bound count too) (default: all)")  # fmt: skip
    model = p.add_argument_group("model")
    model.add_argument("--model", default=DEFAULT_MODEL, help="detector name (see 'vidpipe models')")
    model.add_argument("--weights", metavar="FILE", help="weights file for the model (default: the model's own)")
    model.add_argument("--format", dest="layout", choices=("yolo", "yolov5", "end2end"),
                       help="output layout of an ONNX model (default: recognised from its output shape)")  # fmt: skip
    model.add_argument("--names", metavar="FILE",
                       help="class names of an ONNX model: one per line, or a JSON/YAML list or dict "
                       "(default: the file's metadata, else COCO's 80 for 80 classes)")  # fmt: skip
    model.add_argument(
        "--iou",
        type=float,
        metavar="T",
        help="IoU above which boxes of a class suppress each other (NMS; default: 0.45 for ONNX YOLO, "
        "0.6 for ssd_mobilenet_v2_coco, 0.5 for ssd300)",
    )
    model.add_argument("--max-det", type=int, metavar="N", help="most boxes per frame of an ONNX model (default: 300)")
    model.add_argument("--imgsz", type=int, metavar="N",
                       help="input size of an ONNX model exported with dynamic height and width "
                       "(default: the file's imgsz metadata, else 640)")  # fmt: skip
    model.add_argument("--threshold", type=float, default=None, metavar="T",
                       help="minimum score, 0 to 1 (default: the model's, 0.5 for ssd_mobilenet_v2_coco)")  # fmt: skip
    model.add_argument("--classes", metavar="A,B", help="keep only these labels, comma-separated (default: all)")
    count = p.add_argument_group("tracking and counting")
    count.add_argument("--track", action="store_true",
                       help="give each object a track id that stays with it across frames (ByteTrack)")  # fmt: skip
    count.add_argument("--line", action="append", default=[], metavar="[STREAM:]NAME=x1,y1,x2,y2",
                       help="count tracked objects crossing this line "
                       "(pixels; repeatable; turns --track on)")  # fmt: skip
    count.add_argument("--zone", action="append", default=[], metavar="[STREAM:]NAME=x1,y1,x2,y2,x3,y3,...",
                       help="count objects entering, leaving and inside this polygon "
                       "(repeatable; turns --track on)")  # fmt: skip
    count.add_argument("--anchor", choices=("bottom_center", "center"), default="bottom_center",
                       help="the point of each box that crosses lines and enters zones")  # fmt: skip
    outs = p.add_argument_group("outputs")
    outs.add_argument("--json", dest="json_out", metavar="OUT.jsonl", help="write detections and events as JSON Lines")
    outs.add_argument("--csv", dest="csv_out", metavar="OUT.csv", help="write one row per detection (spreadsheets)")
    outs.add_argument("--events-csv", dest="events_csv", metavar="OUT.csv",
                      help="write one row per event: line crossings, zone entries and exits, reconnects")  # fmt: skip
    outs.add_argument("--video", metavar="OUT.mp4",
                      help="write annotated video: .mp4/.mkv (H.264) or .webm (VP8); with several streams "
                      "the path needs {stream}")  # fmt: skip
    outs.add_argument("--evidence", metavar="DIR",
                      help="keep every event in DIR/events.db (as vidpipe serve does) with a snapshot and a clip "
                      "of the source's own video (5 s before to 5 s after) per line or zone event")  # fmt: skip
    outs.add_argument("--trails", type=int, default=0, metavar="N",
                      help="in --video, draw each track's path over its last N frames")  # fmt: skip
    outs.add_argument("--privacy", action="append", default=[], metavar="x1,y1,x2,y2,x3,y3,...",
                      help="fill this region (pixels, or rel: fractions) in every picture written "
                      "(repeatable)")  # fmt: skip
    outs.add_argument("--blur", metavar="A,B", help="blur the boxes of these labels in every picture written")
    outs.add_argument("--summary", dest="summary_out", metavar="OUT.json",
                      help="write the run's figures and counts as JSON: per stream frames, detections per label, "
                      "line and zone counts, latency; the outputs written")  # fmt: skip
    outs.add_argument("--graph", metavar="FILE", help="write the picture of the whole run (.dot, .png, .svg, .pdf)")
    outs.add_argument("--graph-detail", action="store_true",
                      help="draw GStreamer's full graphs (pads, media types), not just elements")  # fmt: skip
    live = p.add_argument_group("live streams")
    live.add_argument("--detect-fps", type=float, metavar="F",
                      help="detect on at most F frames per second of each stream (default: every frame)")  # fmt: skip
    live.add_argument("--max-latency", type=float, metavar="S",
                      help="drop live frames that cannot reach their result within S seconds "
                      f"(default: {DEFAULT_LIVE_MAX_LATENCY:g})")  # fmt: skip
    live.add_argument("--motion", choices=MOTION_MODES, default="auto",
                      help="skip the detector on frames where nothing moved (docs/motion.md); auto: on for live "
                      "streams (cameras), off for files")  # fmt: skip
    live.add_argument("--motion-threshold", type=float, default=MotionOptions().threshold, metavar="G",
                      help="grey levels a pixel must change by to count as motion (default: %(default)g)")  # fmt: skip
    live.add_argument("--motion-min-area", type=float, default=MotionOptions().min_area, metavar="F",
                      help="fraction of the frame that must change (default: %(default)g)")  # fmt: skip
    live.add_argument("--motion-mask", action="append", default=[], metavar="POLYGON",
                      help="a region whose changes never count (a clock overlay): x1,y1,x2,y2,x3,y3[,...] in "
                      "pixels or rel:fractions; repeatable")  # fmt: skip
    perf = p.add_argument_group("performance")
    perf.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    perf.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16", "int8"),
                      help="number format of the model; auto: bf16 where the CPU computes it natively "
                      "(avx512_bf16, AMX), else fp32; on CUDA the fastest measured (fp32 on an H200); "
                      "fp16 on CUDA only; int8: OpenVINO only, quantised once (see docs/performance.md "
                      "for both)")  # fmt: skip
    perf.add_argument("--backend", choices=("auto", "torch", "openvino"), default="auto",
                      help="what runs a built-in model's network: PyTorch, or OpenVINO (converted once, "
                      "cached); auto: OpenVINO on the CPU where it is installed, else PyTorch")  # fmt: skip
    perf.add_argument("--batch", type=int, metavar="N",
                      help=f"frames per inference batch (default: {DEFAULT_BATCH} on the CPU, "
                      f"{DEFAULT_GPU_BATCH} on CUDA)")  # fmt: skip
    scale = p.add_argument_group("scale-out (Ray)")
    scale.add_argument("--cluster", metavar="WHERE",
                       help="spread the streams over Ray workers: 'ray' (a local Ray, started and stopped here), "
                       "'auto' (the running cluster) or ray://HOST:PORT")  # fmt: skip
    scale.add_argument("--workers", type=int, metavar="N", help="worker actors (default: the cluster's CPUs / GPUs)")
    scale.add_argument("--streams-per-worker", type=int, metavar="N", help="at most N streams per worker")
    scale.add_argument("--cpus-per-worker", type=int, default=1, metavar="N", help="CPU cores each worker reserves")
    p.set_defaults(func=_detect)

    p = command("serve", "run as a service: streams added and removed over an HTTP API, a live web view, metrics, MQTT")
    p.add_argument("--config", metavar="FILE", help="the YAML configuration (default: none, no stream, the defaults)")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    p.add_argument("--port", type=int, default=8080, help="the port to listen on")
    p.add_argument("--token-file", metavar="FILE",
                   help="every request but /healthz needs Authorization: Bearer TOKEN, the token in FILE "
                   "(or $VIDPIPE_TOKEN, or auth.token)")  # fmt: skip
    p.add_argument("--token", help="the token on the command line: visible to every local user (ps); prefer "
                   "$VIDPIPE_TOKEN or --token-file")  # fmt: skip
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without a token")
    p.add_argument("--state", metavar="FILE",
                   help="where the API's stream changes are kept (default: beside --config, NAME.state.json; "
                   "none without --config)")  # fmt: skip
    p.add_argument("--check", action="store_true", help="validate --config (and its state file) and exit: 0 or 2")
    p.set_defaults(func=_serve)
    add_events(command, EXAMPLES)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (the ``vidpipe`` console script and ``python -m vidpipe`` reach it through
    :mod:`vidpipe.__main__`); returns the exit code."""
    bound_arenas()  # before GStreamer starts its threads (see vidpipe.memory)
    args = build_parser().parse_args(argv)
    level = (
        logging.ERROR
        if args.quiet and not args.verbose
        else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    )
    fmt = "vidpipe: %(levelname)s: %(message)s" if args.verbose == 0 else "%(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_MaskingFormatter(fmt))
    logging.addLevelName(logging.WARNING, "warning")
    try:
        code = args.func(args)
        sys.stdout.flush()  # (what is still buffered: its write error is said here, not at the interpreter's exit)
        return code
    except VidpipeError as exc:
        for line in exc.problems if isinstance(exc, ConfigError) else [str(exc)]:
            print(f"vidpipe: error: {printable(line)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vidpipe: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        return 1
    except OSError as exc:
        if exc.filename is not None or exc.errno not in STREAM_ERRORS:
            raise
        return _output_lost(exc)


STREAM_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG)  # standard output's, as the files' are said


def _output_lost(exc: OSError) -> int:
    """Standard output could not be written (``> file`` on a full disk): one line, exit 2, and the rest of
    what was buffered dropped (rather than a second error as the interpreter exits)."""
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), sys.stdout.fileno())
    print(f"vidpipe: error: standard output: cannot write ({exc.strerror})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
