"""The live picture of streams that run on Ray workers: each picture is fetched from the worker that
runs its stream (:class:`vidpipe.sinks.live.LiveView` there), on demand."""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image

from ..sinks.live import Latest, LiveView


class RemoteLiveView(LiveView):
    """The live picture of streams that run on a cluster's workers: the results that come here carry
    no pixels; each worker keeps its streams' latest frames and encodes the JPEG a viewer asks for
    (``fetch(stream, height)``), so only those pictures cross the network, at the viewers' pace."""

    needs_pixels = False

    def __init__(self, fetch: Callable[[str, int | None], tuple[int, bytes] | None], quality: int = 80) -> None:
        super().__init__(quality)
        self._fetch = fetch

    def jpeg(self, stream: str, height: int | None = None) -> tuple[int, bytes] | None:
        latest = self._latest.get(stream)
        if latest is None:
            return None
        key = (stream, height or 0)
        with self._lock_for(key):
            cached = self._jpegs.get(key)
            if cached is not None and cached[0] == latest.seq:
                return cached
            found = self._fetch(stream, height)
            if found is None:
                return cached
            with self._lock:
                if self._latest.get(stream) is latest:  # (else a newer frame came meanwhile: not kept)
                    self._jpegs[key] = (latest.seq, found[1])
            return latest.seq, found[1]

    def _image(self, stream: str, latest: Latest, height: int | None = None) -> Image.Image | None:
        found = self.jpeg(stream, height)
        return Image.open(io.BytesIO(found[1])).convert("RGB") if found is not None else None
