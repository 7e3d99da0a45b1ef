"""Save one frame of a video as PNG: ``python scripts/frame_png.py VIDEO INDEX OUT.png``."""

from __future__ import annotations

import sys

from PIL import Image

import vidpipe


def main(video: str, index: str, out: str) -> None:
    with vidpipe.open(video) as src:
        for frame in src:
            if frame.index == int(index):
                Image.fromarray(frame.tensor.numpy()).save(out)
                return
    raise SystemExit(f"{video}: has no frame {index}")


if __name__ == "__main__":
    main(*sys.argv[1:])
