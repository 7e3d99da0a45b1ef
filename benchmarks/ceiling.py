"""The pipeline's own ceiling: ``Pipeline`` on N streams of the bundled clip with a detector that costs
nothing (no network, no pre- or post-processing, empty detections), so what is measured is decoding,
conversion, the copy into tensors, batching, result building and delivery: the most frames a second any
model can get out of this machine's pipeline. (Where Python's share of it goes: run it under
``py-spy record --gil``.)

    python benchmarks/ceiling.py [--streams 1 8] [--batch 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from vidpipe.models.base import Batch, Detector
from vidpipe.pipeline import Pipeline
from vidpipe.types import Detections

SAMPLE = Path(__file__).resolve().parent.parent / "media" / "sample.mp4"


class FreeDetector(Detector):
    """A detector that finds nothing at no cost."""

    name = "free"

    def __init__(self) -> None:
        super().__init__(nn.Identity(), classes=["person"])

    def preprocess(self, frames) -> Batch:
        return Batch(None, [(int(f.shape[0]), int(f.shape[1])) for f in frames])

    def forward(self, batch: Batch) -> None:
        return None

    def postprocess(self, outputs, batch: Batch) -> list[Detections]:
        return [Detections.empty() for _ in batch.sizes]


def run(streams: int, batch: int) -> tuple[int, float]:
    detector = FreeDetector()
    start, frames = time.perf_counter(), 0
    for _ in Pipeline(sources=[(f"s{i}", str(SAMPLE)) for i in range(streams)], detector=detector, batch=batch):
        frames += 1
    return frames, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"the pipeline with a detector that costs nothing, {SAMPLE.name}, batch {args.batch}, best of {args.rounds}")
    print("| streams | frames | FPS (best) | FPS (all rounds) |\n|---|---|---|---|")
    for streams in args.streams:
        rounds = [run(streams, args.batch) for _ in range(args.rounds)]
        rates = [frames / seconds for frames, seconds in rounds]
        every = ", ".join(f"{rate:,.0f}" for rate in rates)
        print(f"| {streams} | {rounds[0][0]} | {max(rates):,.0f} | {every} |", flush=True)


if __name__ == "__main__":
    main()
