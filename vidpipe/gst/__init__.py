"""Everything that touches GStreamer: its import and initialisation (here, once), source strings
(``uri``), bus messages into errors (``bus``), decoding (``source``), buffers into tensors (``buffers``)
and pipeline graphs (``graph``)."""

from __future__ import annotations

import contextlib
import ctypes

import gi

# libgstreamer loads the system's libunwind, whose unwinder then serves C++ exceptions in libraries loaded
# later; OpenVINO throws and catches one while it loads its plugins, and the process aborted ("dlSym
# cannot locate method 'create_extensions'") when GStreamer came first. With GCC's unwinder loaded
# globally first, exceptions unwind as they should.
with contextlib.suppress(OSError):
    ctypes.CDLL("libgcc_s.so.1", mode=ctypes.RTLD_GLOBAL)

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstPbutils", "1.0")

from gi.repository import GLib, Gst, GstApp, GstPbutils, GstVideo  # noqa: E402

if not Gst.is_initialized():
    Gst.init(None)

__all__ = ["GLib", "Gst", "GstApp", "GstPbutils", "GstVideo"]
