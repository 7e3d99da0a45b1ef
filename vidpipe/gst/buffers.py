"""Buffers into tensors: the one copy that turns a GStreamer buffer into a PyTorch tensor."""

from __future__ import annotations

import time

import numpy as np
import torch

from . import Gst, GstVideo

__all__ = ["BufferReader", "arrival"]

try:  # gst-python's overrides (python3-gst-1.0) map a buffer to a memoryview without copying
    from gi.overrides import _gi_gst  # noqa: F401

    ZERO_COPY = True
except ImportError:  # GStreamer without them (a bundle for another Python): one more copy per frame
    ZERO_COPY = False


class BufferReader:
    """Turns RGB ``Gst.Buffer`` objects of one caps into contiguous ``uint8[H, W, 3]`` tensors.

    The strides come from ``GstVideo.VideoInfo`` once per caps (GStreamer pads RGB rows to 4 bytes).
    The distribution's gst-python overrides map the buffer to a ``memoryview`` without copying, so the
    copy into the new tensor is the only one; numpy does it with the GIL released. Without them the
    buffer's bytes are copied out first.
    """

    def __init__(self, caps: Gst.Caps) -> None:
        info = GstVideo.VideoInfo.new_from_caps(caps)
        if info is None:
            raise ValueError(f"not raw video caps: {caps.to_string()}")
        self.width, self.height = info.width, info.height
        self.stride, self.offset = info.stride[0], info.offset[0]
        self._packed = self.stride == self.width * 3

    def to_tensor(self, buf: Gst.Buffer) -> torch.Tensor:
        out = torch.empty((self.height, self.width, 3), dtype=torch.uint8)
        if not ZERO_COPY:
            self._copy(np.frombuffer(buf.extract_dup(0, buf.get_size()), dtype=np.uint8), out)
            return out
        with buf.map(Gst.MapFlags.READ) as mapping:
            self._copy(np.frombuffer(mapping.data, dtype=np.uint8), out)
        return out

    def _copy(self, data: np.ndarray, out: torch.Tensor) -> None:
        """Copy the picture out of a buffer's bytes (rows ``stride`` apart) into ``out``."""
        if self._packed:
            src = data[self.offset : self.offset + self.height * self.width * 3].reshape(self.height, self.width, 3)
        else:
            src = np.lib.stride_tricks.as_strided(
                data[self.offset :], shape=(self.height, self.width, 3), strides=(self.stride, 3, 1), writeable=False
            )
        np.copyto(out.numpy(), src)


def arrival(pipeline: Gst.Pipeline | None, buf: Gst.Buffer, pulled: float) -> float:
    """UNIX time at which a frame left the decoder: for a live source (its ``pipeline`` given: the pts is
    running time on its clock), when it arrived; else when it was pulled (``pulled``)."""
    clock = pipeline.get_clock() if pipeline is not None else None
    if clock is None or buf.pts == Gst.CLOCK_TIME_NONE:
        return pulled
    age = clock.get_time() - pipeline.get_base_time() - buf.pts
    return time.time() - max(0, age) / Gst.SECOND
