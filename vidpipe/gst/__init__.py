"""Everything that touches GStreamer: its import and initialisation (here, once), source strings
(``uri``), bus messages into errors (``bus``), decoding (``source``), buffers into tensors (``buffers``)
and pipeline graphs (``graph``)."""

from __future__ import annotations

import gi

# (vidpipe's __init__ put GCC's unwinder in the global scope before this loads libgstreamer and its
# libunwind: see vidpipe.unwinder)
gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstPbutils", "1.0")

from gi.repository import GLib, Gst, GstApp, GstPbutils, GstVideo  # noqa: E402

if not Gst.is_initialized():
    Gst.init(None)

__all__ = ["GLib", "Gst", "GstApp", "GstPbutils", "GstVideo"]
