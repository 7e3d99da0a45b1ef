"""The ``vidpipe_detect`` GStreamer element: a front door that runs vidpipe's detector, tracker and counters
inside any GStreamer pipeline. ``plugins/python/`` is where GStreamer's Python plugin loader finds it
(``eval "$(vidpipe gst-env)"``); in a Python program, :func:`register` makes it available."""

from .element import VidpipeDetect, register

__all__ = ["VidpipeDetect", "register"]
