"""The GStreamer element against ``vidpipe detect`` on the bundled clip, side by side, interleaved:

(a) ``vidpipe detect media/sample.mp4`` (the defaults; its own summary's FPS)
(b) ``gst-launch-1.0 filesrc ! decodebin ! videoconvert ! vidpipe_detect ! fakesink`` (batch-size 1)
(c) the same with ``batch-size=4`` (held frames leave within ``max-latency``)
(d) (c) with a ``queue`` before the element (decoding in a thread of its own, overlapping detection)

The element's FPS is the clip's frames over gst-launch's whole run, less the time the same command
takes to start and stop on a 1-frame clip (the model's load, which ``vidpipe detect``'s FPS leaves out).

    python benchmarks/element.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import SAMPLE

VIDPIPE = str(Path(sys.executable).with_name("vidpipe"))


def frames_of(clip: Path) -> int:
    out = subprocess.run([VIDPIPE, "probe", "--json", str(clip)], capture_output=True, text=True, check=True)
    import json

    return int(json.loads(out.stdout)["frames"])


def launch(description: str, env: dict) -> float:
    script = f'eval "$({shlex.quote(VIDPIPE)} gst-env)" && exec gst-launch-1.0 -q {description}'
    start = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def cli_fps(clip: Path) -> float:
    result = subprocess.run([VIDPIPE, "detect", str(clip)], capture_output=True, text=True, check=True)
    match = re.search(r"frames\s+(\d+) in ([\d.]+) s", result.stderr)
    return int(match.group(1)) / float(match.group(2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    env = dict(os.environ, GST_REGISTRY=str(folder / "registry.bin"))
    one = folder / "one.mp4"
    subprocess.run(
        ["gst-launch-1.0", "-q", "filesrc", f"location={SAMPLE}", "!", "qtdemux", "!", "h264parse", "!",
         "avdec_h264", "!", "identity", "eos-after=1", "!", "videoconvert", "!", "x264enc", "!", "mp4mux", "!",
         "filesink", f"location={one}"],
        check=True,
    )  # fmt: skip
    frames = frames_of(SAMPLE)

    def element(clip: Path, batch: int, queue: bool = False) -> float:
        before = "queue max-size-buffers=8 ! " if queue else ""
        return launch(
            f"filesrc location={clip} ! decodebin ! videoconvert ! {before}vidpipe_detect batch-size={batch} ! "
            "fakesink",
            env,
        )

    rows: dict[str, list[float]] = {
        "(a) vidpipe detect": [], "(b) vidpipe_detect": [], "(c) batch-size=4": [], "(d) queue, batch-size=4": []
    }  # fmt: skip
    element(one, 1)  # the registry and the model cache, once
    for _ in range(args.rounds):
        rows["(a) vidpipe detect"].append(cli_fps(SAMPLE))
        for key, batch, queue in (
            ("(b) vidpipe_detect", 1, False), ("(c) batch-size=4", 4, False), ("(d) queue, batch-size=4", 4, True)
        ):  # fmt: skip
            overhead = element(one, batch, queue)
            rows[key].append(frames / max(1e-3, element(SAMPLE, batch, queue) - overhead))
    base = max(rows["(a) vidpipe detect"])
    print(f"bundled clip, {frames} frames; best of {args.rounds} rounds")
    for key, values in rows.items():
        print(f"  {key:<22} {max(values):7.1f} FPS  {max(values) / base:5.2f}x  (rounds: "
              f"{', '.join(f'{v:.1f}' for v in values)})")  # fmt: skip


if __name__ == "__main__":
    main()
