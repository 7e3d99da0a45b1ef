"""The live picture: each stream's latest result, drawn and encoded as JPEG only when someone watches.

The pipeline's output thread only stores a reference to each stream's latest result (no pixel work).
A viewer asks for a stream at a height: the frame is drawn once (shared by every size and the mosaic)
and encoded once per size, in the viewer's thread; every other viewer of the same frame and size gets
the same bytes. A viewer reads at its own pace, so a slow or stalled one only skips frames for itself.
"""

from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw

from ..types import Result
from .base import BaseSink
from .draw import Annotator, font


@dataclass
class Latest:
    """A stream's latest result, numbered, and its drawing once made."""

    seq: int
    result: Result
    drawn: torch.Tensor | None = None  # the annotated frame, drawn on first demand


class LiveView(BaseSink):
    """Keeps each stream's latest result; :meth:`jpeg` and :meth:`mosaic` encode on demand."""

    needs_pixels = True

    def __init__(self, quality: int = 80) -> None:
        self.quality = quality
        self._lock = threading.Lock()
        self._latest: dict[str, Latest] = {}
        self._annotators: dict[str, Annotator] = {}
        self._seq = 0
        self._jpegs: dict[tuple[str, int], tuple[int, bytes]] = {}
        self._mosaics: dict[int, tuple[tuple, bytes]] = {}
        self._encoding: dict[object, threading.Lock] = {}  # one encoder at a time per (stream, height)

    # -- the sink side (the pipeline's output thread) -----------------------------------------------

    def write(self, result: Result) -> None:
        stream = result.frame.stream
        with self._lock:
            self._seq += 1
            self._latest[stream] = Latest(self._seq, result)
            # the pictures of its older frame are never served again: none is kept (viewers asking for
            # many sizes would otherwise leave one picture a size behind, for ever)
            for key in [key for key in self._jpegs if key[0] == stream]:
                del self._jpegs[key]
            self._mosaics.clear()

    def close_stream(self, stream: str) -> None:
        with self._lock:
            self._latest.pop(stream, None)
            self._annotators.pop(stream, None)
            for key in [key for key in self._jpegs if key[0] == stream]:
                del self._jpegs[key]
            for key in [key for key in self._encoding if isinstance(key, tuple) and key[0] == stream]:
                del self._encoding[key]

    def close(self) -> None:
        with self._lock:
            self._latest.clear()
            self._jpegs.clear()
            self._mosaics.clear()

    # -- the viewer side ----------------------------------------------------------------------------

    def seq(self, stream: str) -> int | None:
        """The number of the stream's latest frame (None: no frame yet, or gone)."""
        latest = self._latest.get(stream)
        return latest.seq if latest is not None else None

    def mosaic_key(self, streams: list[str]) -> tuple:
        return tuple((name, self.seq(name)) for name in streams)

    def jpeg(self, stream: str, height: int | None = None) -> tuple[int, bytes] | None:
        """The latest annotated frame of ``stream`` as JPEG (scaled to ``height`` when given, never up)."""
        latest = self._latest.get(stream)
        if latest is None:
            return None
        height = min(height or latest.result.frame.height, latest.result.frame.height)
        key = (stream, height)
        with self._lock_for(key):
            cached = self._jpegs.get(key)
            if cached is not None and cached[0] == latest.seq:
                return cached
            image = self._image(stream, latest)
            if image.height != height:
                image = image.resize((max(1, round(image.width * height / image.height)), height), Image.BILINEAR)
            data = self._encode(image)
            with self._lock:
                if self._latest.get(stream) is latest:  # (else a newer frame came meanwhile: not kept)
                    self._jpegs[key] = (latest.seq, data)
            return latest.seq, data

    def mosaic(self, streams: list[str], height: int) -> tuple[tuple, bytes]:
        """Every stream in one grid picture ``height`` pixels high (16:9 tiles, each named)."""
        key = self.mosaic_key(streams)
        with self._lock_for(("mosaic", height)):
            cached = self._mosaics.get(height)
            if cached is not None and cached[0] == key:
                return cached
            columns = max(1, math.ceil(math.sqrt(len(streams))))
            rows = max(1, math.ceil(len(streams) / columns))
            tile_h = max(16, height // rows)
            tile_w = tile_h * 16 // 9
            canvas = Image.new("RGB", (tile_w * columns, tile_h * rows), (24, 24, 24))
            draw = ImageDraw.Draw(canvas)
            face = font(max(10, tile_h // 14))
            for i, name in enumerate(streams):
                x, y = (i % columns) * tile_w, (i // columns) * tile_h
                latest = self._latest.get(name)
                image = self._image(name, latest, tile_h) if latest is not None else None
                if image is not None:
                    scale = min(tile_w / image.width, tile_h / image.height)
                    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
                    tile = image.resize(size, Image.BILINEAR)
                    canvas.paste(tile, (x + (tile_w - size[0]) // 2, y + (tile_h - size[1]) // 2))
                draw.text((x + 6, y + 4), name, fill=(255, 255, 255), font=face, stroke_width=2, stroke_fill=(0, 0, 0))
            data = self._encode(canvas)
            with self._lock:
                if key == self.mosaic_key(streams):  # (else a newer frame came meanwhile: not kept)
                    self._mosaics[height] = (key, data)
            return key, data

    def _lock_for(self, key: object) -> threading.Lock:
        with self._lock:
            return self._encoding.setdefault(key, threading.Lock())

    def _image(self, stream: str, latest: Latest, height: int | None = None) -> Image.Image | None:
        """The frame with its annotations, drawn once per frame (``height``: the size it is wanted at)."""
        if latest.drawn is None:
            with self._lock:
                annotator = self._annotators.setdefault(stream, Annotator())
            latest.drawn = annotator.draw(latest.result)
        return Image.fromarray(latest.drawn.numpy())

    def _encode(self, image: Image.Image) -> bytes:
        out = io.BytesIO()
        image.save(out, "JPEG", quality=self.quality)
        return out.getvalue()
