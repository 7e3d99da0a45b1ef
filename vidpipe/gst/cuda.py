"""Frames that stay on the GPU (issue 31, measured by ``benchmarks/gpu_handoff.py`` before any source uses
it): GStreamer's CUDA elements made to work in PyTorch's CUDA context, and an RGB frame in CUDA memory
copied into a PyTorch tensor on the device, device to device, with no trip through the host.

GStreamer 1.22 ships no introspection data for its CUDA library, so the few calls go through ``ctypes``:
``gst_buffer_map`` with ``GST_MAP_CUDA`` gives the frame's device pointer (the pool's ``GstVideoMeta``
gives its row pitch); the context is PyTorch's (the device's primary context) wrapped by
``gst_cuda_context_new_wrapped`` and set on the pipeline, so the decoder's and the converter's memory
lives in the context PyTorch's kernels run in. The same mapping reads system memory too (``cuda=False``),
which is how it is tested on machines without a GPU.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from . import Gst, GstVideo

GST_MAP_READ = 1
GST_MAP_CUDA = 1 << 17  # GST_MAP_FLAG_LAST << 1 (gst/cuda/gstcudamemory.h, GStreamer 1.22)


class MapInfo(ctypes.Structure):
    """``GstMapInfo`` (gst/gstmemory.h)."""

    _fields_ = [
        ("memory", ctypes.c_void_p),
        ("flags", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_size_t),
        ("maxsize", ctypes.c_size_t),
        ("user_data", ctypes.c_void_p * 4),
        ("_gst_reserved", ctypes.c_void_p * 4),
    ]


@functools.cache
def _library(name: str) -> ctypes.CDLL:
    return ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)


@functools.cache
def _gstreamer() -> ctypes.CDLL:
    lib = _library("libgstreamer-1.0.so.0")
    lib.gst_buffer_map.argtypes = [ctypes.c_void_p, ctypes.POINTER(MapInfo), ctypes.c_int]
    lib.gst_buffer_map.restype = ctypes.c_int
    lib.gst_buffer_unmap.argtypes = [ctypes.c_void_p, ctypes.POINTER(MapInfo)]
    lib.gst_element_set_context.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.gst_mini_object_unref.argtypes = [ctypes.c_void_p]
    return lib


def pointer(instance: Gst.Buffer | Gst.Element) -> int:
    """The C address of a GStreamer buffer or element (PyGObject hashes its wrappers by it)."""
    return hash(instance)


@contextmanager
def mapped(buffer: Gst.Buffer, cuda: bool) -> Iterator[tuple[int, int]]:
    """``(address, size)`` of the buffer's bytes while mapped for reading: a device pointer with
    ``cuda`` (the buffer must hold CUDA memory), a host pointer without. RuntimeError when it cannot."""
    lib = _gstreamer()
    info = MapInfo()
    flags = GST_MAP_READ | (GST_MAP_CUDA if cuda else 0)
    if not lib.gst_buffer_map(pointer(buffer), ctypes.byref(info), flags):
        raise RuntimeError(f"cannot map the buffer for reading{' as CUDA memory' if cuda else ''}")
    try:
        yield info.data, info.size
    finally:
        lib.gst_buffer_unmap(pointer(buffer), ctypes.byref(info))


class _Strided:
    """An array interface over memory vidpipe does not own: ``__cuda_array_interface__`` (device) or
    ``__array_interface__`` (host), version 3, rows ``stride`` bytes apart."""

    def __init__(self, address: int, shape: tuple[int, int, int], stride: int, cuda: bool) -> None:
        interface = {"shape": shape, "typestr": "|u1", "data": (address, True), "strides": (stride, 3, 1), "version": 3}
        setattr(self, "__cuda_array_interface__" if cuda else "__array_interface__", interface)


class FrameCopier:
    """Copies RGB frames of one caps out of GStreamer buffers into new ``uint8[H, W, 3]`` tensors on
    ``device``: from CUDA memory device to device on a CUDA device, from system memory on the CPU. The
    row pitch comes from the buffer's ``GstVideoMeta`` (CUDA pools pitch their rows), else the caps."""

    def __init__(self, caps: Gst.Caps, device: torch.device | str) -> None:
        info = GstVideo.VideoInfo.new_from_caps(caps)
        if info is None or info.finfo.format != GstVideo.VideoFormat.RGB:
            raise ValueError(f"not RGB video caps: {caps.to_string()}")
        self.width, self.height = info.width, info.height
        self.stride, self.offset = info.stride[0], info.offset[0]
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    def to_tensor(self, buffer: Gst.Buffer) -> torch.Tensor:
        meta = GstVideo.buffer_get_video_meta(buffer)
        stride, offset = (meta.stride[0], meta.offset[0]) if meta is not None else (self.stride, self.offset)
        out = torch.empty((self.height, self.width, 3), dtype=torch.uint8, device=self.device)
        with mapped(buffer, self.cuda) as (address, _size):
            view = _Strided(address + offset, (self.height, self.width, 3), stride, self.cuda)
            if self.cuda:
                out.copy_(torch.as_tensor(view, device=self.device))
                # the buffer goes back to GStreamer's pool when released: the copy must be done by then
                torch.cuda.current_stream(self.device).synchronize()
            else:
                np.copyto(out.numpy(), np.asarray(view))
        return out


_shared: dict[int, int] = {}  # device index -> the GstCudaContext wrapping PyTorch's context there


def share_torch_context(pipeline: Gst.Element, device: torch.device | str) -> None:
    """Make ``pipeline``'s CUDA elements (NVIDIA's decoders, the CUDA converters) work in PyTorch's CUDA
    context on ``device`` instead of making their own, so that the memory they fill is the memory
    PyTorch's kernels can read. Set before the pipeline starts; RuntimeError when CUDA says no."""
    device = torch.device(device)
    torch.cuda.init()
    index = device.index if device.index is not None else torch.cuda.current_device()
    torch.cuda.set_device(index)
    torch.zeros(1, device=f"cuda:{index}")  # PyTorch's context exists (the device's primary context)
    if index not in _shared:
        cuda = _library("libcuda.so.1")
        handle, context = ctypes.c_int(), ctypes.c_void_p()
        for call, args in (("cuDeviceGet", (ctypes.byref(handle), index)),
                           ("cuDevicePrimaryCtxRetain", (ctypes.byref(context), handle))):  # fmt: skip
            result = getattr(cuda, call)(*args)
            if result != 0:
                raise RuntimeError(f"{call} failed with CUDA error {result}")
        gstcuda = _library("libgstcuda-1.0.so.0")
        gstcuda.gst_cuda_load_library.restype = ctypes.c_int  # (its CUDA calls go through a table it fills)
        if not gstcuda.gst_cuda_load_library():
            raise RuntimeError("GStreamer's CUDA library could not load libcuda")
        gstcuda.gst_cuda_context_new_wrapped.argtypes = [ctypes.c_void_p, ctypes.c_int]
        gstcuda.gst_cuda_context_new_wrapped.restype = ctypes.c_void_p
        wrapped = gstcuda.gst_cuda_context_new_wrapped(context, handle)
        if not wrapped:
            raise RuntimeError("GStreamer could not wrap PyTorch's CUDA context")
        _shared[index] = wrapped  # (kept for the process's life, like PyTorch's own context)
    gstcuda = _library("libgstcuda-1.0.so.0")
    gstcuda.gst_context_new_cuda_context.argtypes = [ctypes.c_void_p]
    gstcuda.gst_context_new_cuda_context.restype = ctypes.c_void_p
    context = gstcuda.gst_context_new_cuda_context(_shared[index])
    if not context:
        raise RuntimeError("GStreamer could not make a context of PyTorch's CUDA context")
    lib = _gstreamer()
    lib.gst_element_set_context(pointer(pipeline), context)  # a bin passes it to its elements, present and future
    lib.gst_mini_object_unref(context)
