"""What an opened source is: its frame rate, duration, frame count, codec and container, read from its
running GStreamer pipeline once the first frame is decoded."""

from __future__ import annotations

from ..types import SourceInfo
from . import Gst, GstPbutils
from .uri import SourceSpec

# A frame rate above this is not a rate but a container's time base: the file has a variable rate.
MAX_PLAUSIBLE_FPS = 1000.0


def source_info(
    pipeline: Gst.Pipeline, caps: Gst.Caps, spec: SourceSpec, *, width: int, height: int, live: bool, stream: str
) -> SourceInfo:
    """The :class:`SourceInfo` of ``spec``'s ``pipeline`` whose frames have ``caps`` (``width`` × ``height``)."""
    structure = caps.get_structure(0)
    ok, num, den = structure.get_fraction("framerate")
    fps = num / den if ok and num > 0 and den > 0 else None
    if fps is not None and fps > MAX_PLAUSIBLE_FPS:  # e.g. 1000000000/1 from a variable-rate MP4
        fps = None
    duration = None
    if not live:
        ok, nanos = pipeline.query_duration(Gst.Format.TIME)
        duration = nanos / Gst.SECOND if ok and nanos > 0 else None
    if spec.kind == "test" and not live:
        frames = _test_frames(pipeline)
        duration = frames / fps if fps else None
    else:
        frames = round(duration * fps) if duration and fps else None
    codec, container = _codec_and_container(pipeline, spec)
    return SourceInfo(
        source=spec.text, width=width, height=height, fps=fps, duration=duration, frames=frames, codec=codec,
        container=container, live=live, stream=stream,
    )  # fmt: skip


def _test_frames(pipeline: Gst.Pipeline) -> int:
    for element in pipeline.iterate_elements():
        if element.get_factory() and element.get_factory().get_name() == "videotestsrc":
            return int(element.get_property("num-buffers"))
    return 0


def _codec_and_container(pipeline: Gst.Pipeline, spec: SourceSpec) -> tuple[str | None, str | None]:
    codec = container = None
    iterator = pipeline.iterate_recurse()
    while True:
        result, element = iterator.next()
        if result != Gst.IteratorResult.OK:
            break
        factory = element.get_factory()
        if factory is None:
            continue
        klass = factory.get_metadata("klass") or ""
        if factory.get_name() == "typefind" and container is None:
            found = element.get_property("caps")
            if found is not None and not found.get_structure(0).get_name().startswith("video/x-raw"):
                container = GstPbutils.pb_utils_get_codec_description(found)
            continue
        pad = element.get_static_pad("sink")
        found = pad.get_current_caps() if pad else None
        if found is None:
            continue
        if "Decoder" in klass and ("Video" in klass or "Image" in klass) and codec is None:
            codec = GstPbutils.pb_utils_get_codec_description(found)
    if spec.kind == "test":
        codec = "raw video (test pattern)"
    return codec, container
