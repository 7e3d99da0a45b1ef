"""The public surface: what ``import vidpipe`` offers, pinned so that it only changes on purpose."""

from __future__ import annotations

import pytest

import vidpipe


def test_public_names_are_pinned_and_resolve():
    assert vidpipe.__all__ == [
        "Detections",
        "Detector",
        "Event",
        "Frame",
        "MotionOptions",
        "Pipeline",
        "Result",
        "Source",
        "SourceInfo",
        "Stats",
        "StreamOptions",
        "StreamsFailedError",
        "VidpipeError",
        "detect",
        "errors",
        "models",
        "open",
    ]
    for name in vidpipe.__all__:
        assert getattr(vidpipe, name) is not None, name


def test_types_import_neither_gstreamer_nor_models():
    import subprocess
    import sys

    code = (
        "import sys, vidpipe.types, vidpipe.options, vidpipe.errors; "
        "print(sorted(m for m in sys.modules if m.startswith(('gi', 'vidpipe.models', 'vidpipe.gst'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_detect_with_no_sources_is_an_error_not_an_empty_run():
    with pytest.raises(vidpipe.VidpipeError, match="no sources given"):
        next(vidpipe.detect([]))
