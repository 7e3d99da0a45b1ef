"""GStreamer import and initialisation in one place."""

from __future__ import annotations

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstPbutils", "1.0")

from gi.repository import GLib, Gst, GstApp, GstPbutils, GstVideo  # noqa: E402

if not Gst.is_initialized():
    Gst.init(None)

__all__ = ["GLib", "Gst", "GstApp", "GstPbutils", "GstVideo"]
