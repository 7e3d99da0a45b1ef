"""CPU cost of recording N cameras: the camera's own stream kept without re-encoding (the ring of
segments for clips, hourly camera files) against today's annotated, re-encoded recorder (VideoSink,
x264), and the cost of cutting one clip.

Each mode decodes the same N streams of the bundled clip (384×288, 30 fps H.264) as fast as they go,
in parallel (a thread each, as the service's readers), and measures the process's CPU seconds (all
threads) per second of video; the cost of a mode is its CPU minus that of decoding alone, in CPU cores
per camera in real time.

    python benchmarks/recording.py [--cameras 8] [--frames 600] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from _common import SAMPLE

import vidpipe
from vidpipe.gst.clips import cut, duration
from vidpipe.gst.segments import CameraRecorder
from vidpipe.sinks.video import VideoSink
from vidpipe.types import Detections, Result


def run(mode: str, cameras: int, frames: int, folder: Path) -> tuple[float, float, float]:
    """CPU seconds, seconds of video and bytes written of one round of ``mode`` over ``cameras`` streams."""
    recorders: list[CameraRecorder] = []
    sink = VideoSink(folder / "{stream}.mp4") if mode == "re-encode" else None
    fps: list[float] = []

    def one(i: int) -> None:
        tap = None
        if mode in ("ring", "ring+hourly"):
            recorder = CameraRecorder(folder / f"cam{i}", keep=60, hourly=mode == "ring+hourly", adopt=True)
            recorders.append(recorder)
            tap = recorder.attach
        source = vidpipe.open(SAMPLE, stream=f"cam{i}", tap=tap)
        fps.append(source.info.fps)
        if sink is not None:
            sink.open_stream(source.info)
        for n, frame in enumerate(source):
            if sink is not None:
                sink.write(Result(frame, Detections.empty()))
            if n + 1 >= frames:
                break
        source.close()
        if sink is not None:
            sink.close_stream(frame.stream)

    started = time.process_time()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(cameras)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for recorder in recorders:
        recorder.close()
    written = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return time.process_time() - started, cameras * frames / fps[0], written


def clip_cost(folder: Path, clips: int) -> tuple[float, float, float]:
    """CPU seconds per clip cut from a ring, the clip's length and its size in MB."""
    recorder = CameraRecorder(folder / "ring", keep=600, segment_s=2.0)
    source = vidpipe.open(SAMPLE, stream="ring", tap=recorder.attach)
    for _ in source:
        pass
    source.close()
    recorder.close()
    parts = [s.path for s in recorder.segments[1:4]]
    started = time.process_time()
    for i in range(clips):
        cut(parts, folder / f"clip{i}.mp4")
    cpu = (time.process_time() - started) / clips
    return cpu, duration(folder / "clip0.mp4"), (folder / "clip0.mp4").stat().st_size / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--frames", type=int, default=600, help="frames per camera and round (600: 20 s)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    modes = ("decode only", "ring", "ring+hourly", "re-encode")
    cost: dict[str, list[float]] = {mode: [] for mode in modes}
    rate: dict[str, list[float]] = {mode: [] for mode in modes}  # bytes per second of video
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for mode in modes:  # (interleaved: a busy neighbour on a shared machine hits every mode alike)
                folder = Path(tmp) / f"{mode}-{r}".replace(" ", "_").replace("+", "_")
                folder.mkdir()
                cpu, seconds, written = run(mode, args.cameras, args.frames, folder)
                cost[mode].append(cpu / seconds)
                rate[mode].append(written / seconds)
        per_clip, length, size = clip_cost(Path(tmp), 10)
    base = statistics.median(cost["decode only"])
    print(f"{args.cameras} cameras, 384x288 30 fps H.264, {args.frames} frames each, median of {args.rounds} rounds")
    print(f"{'mode':<14} {'CPU s / video s':>16} {'beyond decoding, cores per camera':>34} {'GB per camera-day':>18}")
    for mode in modes:
        value, day = statistics.median(cost[mode]), statistics.median(rate[mode]) * 86400 / 1e9
        print(f"{mode:<14} {value:>16.4f} {value - base:>34.4f} {day:>18.2f}")
    print(f"one clip ({length:.1f} s, {size:.2f} MB, remuxed): {per_clip * 1000:.1f} ms CPU")


if __name__ == "__main__":
    main()
