"""GStreamer's Python plugin loader (libgstpython) imports this file from ``GST_PLUGIN_PATH/python/``;
``eval "$(vidpipe gst-env)"`` sets the paths. The element itself: :mod:`vidpipe.element`."""

from vidpipe.element.element import VidpipeDetect, __gstelementfactory__

__all__ = ["VidpipeDetect", "__gstelementfactory__"]
