"""``vidpipe_detect``: vidpipe's detectors, tracker and counters as a GStreamer element.

A ``GstBase.BaseTransform`` working in place on raw RGB/RGBx/BGRx/RGBA/BGRA video of any size. Each
buffer leaves with one ``GstVideoRegionOfInterestMeta`` per detection (the label as the ROI type, a
``detection`` structure with ``score``, ``class-id`` and ``track-id``), optionally the annotations drawn
on it, an element message on the bus per frame (``post-messages``) and a JSON Lines file (``json``)
with the same lines as ``vidpipe detect --json``. Buffers may be held to fill a batch (``batch-size``),
each released within ``max-latency`` seconds of its arrival (a timer releases them when no further
buffer comes). ``interval=N`` detects in every Nth frame and gives the others the last results.
``motion`` gates live pipelines as vidpipe's sources do (docs/motion.md): frames where nothing moved skip
the detector and carry the last detections, ``"motion": false``.

Registered for GStreamer's Python plugin loader by ``vidpipe/element/plugins/python/vidpipe_detect.py``
(``eval "$(vidpipe gst-env)"`` makes GStreamer find it).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import ClassVar

import gi
import numpy as np
import torch

from ..gst import Gst, GstVideo
from ..redact import printable
from .gating import ElementGate
from .properties import LIVE_PROPERTIES, SPECS, defaults

gi.require_version("GstBase", "1.0")
from gi.repository import GObject, GstBase  # noqa: E402

FORMATS = ("RGB", "RGBx", "BGRx", "RGBA", "BGRA")
_CAPS = Gst.Caps.from_string(f"video/x-raw, format=(string){{ {', '.join(FORMATS)} }}")
# where R, G and B sit in a pixel of each format
_CHANNELS = {"RGB": (0, 1, 2), "RGBx": (0, 1, 2), "RGBA": (0, 1, 2), "BGRx": (2, 1, 0), "BGRA": (2, 1, 0)}


class _Held:
    __slots__ = ("arrived", "buffer", "index")

    def __init__(self, buffer: Gst.Buffer, index: int) -> None:
        self.buffer = buffer
        self.index = index
        self.arrived = time.monotonic()


class VidpipeDetect(GstBase.BaseTransform):
    """Detects objects in each frame; tracks, counts, draws; attaches ROI metas and posts messages."""

    __gstmetadata__ = (
        "vidpipe object detection",
        "Filter/Analyzer/Video",
        "Detects objects with vidpipe's detectors (tracking, line and zone counting optional); attaches "
        "GstVideoRegionOfInterestMeta per object, posts per-frame messages, draws, writes JSON Lines",
        "vidpipe",
    )
    __gsttemplates__ = (
        Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, _CAPS),
        Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, _CAPS),
    )
    # GStreamer names each instance after the type (vidpipedetect0): not after PyGObject's module path
    # (vidpipe+element+element+vidpipedetect0 in every message that names the element)
    __gtype_name__ = "VidpipeDetect"
    __gproperties__: ClassVar[dict] = dict(SPECS)  # (declared in properties.py)
    _writing: ClassVar[set[str]] = set()  # the json= files elements of this process write (one each)
    _writing_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        super().__init__()
        self.set_in_place(True)
        self.set_passthrough(False)
        self._props = defaults()
        self._pipeline = None
        self._annotator = None
        self._json = None
        self._json_key: str | None = None
        self._channels = (0, 1, 2)
        self._pixel = 3
        self._info: GstVideo.VideoInfo | None = None
        self._held: list[_Held] = []
        self._count = 0  # frames seen
        self._first = 0  # the first frame of the caps' size (detected whatever the interval)
        self._last = None  # the last detections (for the frames between detections)
        self._gate: ElementGate | None = None  # motion gating (see gating.py)
        self._gating = False  # whether this caps' frames are gated (mode, and auto: a live pipeline)
        self._lock = threading.RLock()  # the streaming thread and the latency timer
        self._timer: threading.Thread | None = None
        self._wake = threading.Condition(self._lock)
        self._running = False
        self._flow = Gst.FlowReturn.OK
        self._batch = 1  # the batch size of this run (batch-size at the start)

    # -- properties ---------------------------------------------------------------------------------

    def do_get_property(self, prop: GObject.ParamSpec):
        return self._props[prop.name]

    def do_set_property(self, prop: GObject.ParamSpec, value) -> None:
        if self._running and prop.name not in LIVE_PROPERTIES and value != self._props[prop.name]:
            self._warn(f"vidpipe_detect: {prop.name} cannot change while the element runs; it takes effect at its "
                       "next start (only interval and post-messages change at once)")  # fmt: skip
        self._props[prop.name] = value

    # -- lifetime -----------------------------------------------------------------------------------

    def do_start(self) -> bool:
        from ..errors import VidpipeError

        try:
            self._build()
        except VidpipeError as exc:
            self._error(Gst.ResourceError.SETTINGS, str(exc))
            return False
        except (ValueError, TypeError) as exc:
            self._error(Gst.ResourceError.SETTINGS, f"vidpipe_detect: {exc}")
            return False
        self._count, self._last, self._held, self._gating, self._first = 0, None, [], False, 0
        self._flow = Gst.FlowReturn.OK
        self._batch = self._props["batch-size"]  # (read at the start, as its detector's batch: not live)
        self._running = True
        if self._batching:
            self._timer = threading.Thread(target=self._release_late, name="vidpipe-detect-latency", daemon=True)
            self._timer.start()
        return True

    def do_stop(self) -> bool:
        with self._lock:
            self._running = False
            self._wake.notify_all()
        if self._timer is not None:
            self._timer.join(timeout=5)
            self._timer = None
        self._held = []
        if self._json is not None:
            self._json.close()
            self._json = None
        self._release_json()
        return True

    def _claim_json(self, path: Path) -> None:
        """Take ``path`` for this element's JSON Lines; another element of this process writing it
        already is an error (their lines would be mixed into a file that is no JSON Lines)."""
        from ..errors import OutputError

        key = os.path.realpath(path)
        with self._writing_lock:
            if key in self._writing:
                raise OutputError(f"json={path}: another vidpipe_detect element writes this file; give each its own")
            self._writing.add(key)
        self._json_key = key

    def _release_json(self) -> None:
        if self._json_key is not None:
            with self._writing_lock:
                self._writing.discard(self._json_key)
            self._json_key = None

    def _build(self) -> None:
        """The detector and the stream's stages from the properties; a bad value raises one clear error."""
        from .. import models
        from ..pipeline import Pipeline
        from ..pipeline.specs import check_stream_name
        from ..sinks.draw import Annotator
        from ..sinks.textfile import WholeLinesFile
        from .properties import configs

        p = self._props
        check_stream_name(p["stream"])
        model, stream = configs(p)
        detector = models.load(**model.load_args())
        self._pipeline = Pipeline(
            detector=detector, keep_alive=True, classes=model.classes, track=stream.track,
            lines=stream.line_shapes(), zones=stream.zone_shapes(), anchor=p["anchor"], batch=model.batch,
        )  # fmt: skip
        self._pipeline.chain(p["stream"])
        self._gate = ElementGate(stream.motion.options())
        self._pipeline.warm_up()  # on CUDA: each batch size once, before the first buffer (nothing on the CPU)
        self._annotator = Annotator() if p["draw"] else None
        if p["json"]:
            self._claim_json(Path(p["json"]))
            try:
                self._json = WholeLinesFile(Path(p["json"]))
                self._json.open()
            except BaseException:
                self._json = None
                self._release_json()
                raise

    def _warn(self, text: str) -> None:
        text = printable(text)  # (a value's terminal escapes are shown, not obeyed by gst-launch's terminal)
        self.message_full(
            Gst.MessageType.WARNING, Gst.ResourceError.quark(), Gst.ResourceError.SETTINGS, text, text, __file__,
            "vidpipe_detect", 0,
        )  # fmt: skip

    def _error(self, code, text: str, debug: str = "") -> None:
        text, debug = printable(text), "\n".join(printable(line) for line in debug.split("\n"))  # (a traceback's lines)
        self.message_full(
            Gst.MessageType.ERROR, Gst.ResourceError.quark(), code, text, debug or text, __file__, "vidpipe_detect", 0
        )

    def do_set_caps(self, incaps: Gst.Caps, outcaps: Gst.Caps) -> bool:
        info = GstVideo.VideoInfo.new_from_caps(incaps)
        if info is None:
            return False
        if self._info is not None and (info.width, info.height) != (self._info.width, self._info.height):
            self._first = self._count  # a new size: its first frame is detected (the last boxes fit no longer)
        self._info = info
        name = info.finfo.name
        self._channels = _CHANNELS[name]
        self._pixel = 3 if name == "RGB" else 4
        if self._gate is not None:
            self._gate.reset()
            self._gating = self._gate.active(self.sinkpad)
        return True

    def do_sink_event(self, event: Gst.Event) -> bool:
        if event.type == Gst.EventType.FLUSH_START:  # (a flushing seek) downstream first: a push blocked there,
            handled = GstBase.BaseTransform.do_sink_event(self, event)  # holding the lock, returns
            with self._lock:
                self._held = []
            return handled
        if event.type == Gst.EventType.FLUSH_STOP:
            with self._lock:
                self._held = []
                if self._flow == Gst.FlowReturn.FLUSHING:  # (a push refused during the flush) frames flow again
                    self._flow = Gst.FlowReturn.OK
        elif Gst.EventType.get_flags(event.type) & Gst.EventTypeFlags.SERIALIZED:
            self._release()  # held frames go out before what follows them (caps, segment, EOS)
        return GstBase.BaseTransform.do_sink_event(self, event)

    # -- buffers ------------------------------------------------------------------------------------

    @property
    def _batching(self) -> bool:
        return self._batch > 1

    def do_submit_input_buffer(self, is_discont: bool, inbuf: Gst.Buffer) -> Gst.FlowReturn:
        if not self._batching:  # one frame at a time: GStreamer's own in-place path (do_transform_ip)
            return GstBase.BaseTransform.do_submit_input_buffer(self, is_discont, inbuf)
        with self._lock:
            if self._flow != Gst.FlowReturn.OK:
                return self._flow
            self._held.append(_Held(inbuf, self._count))
            self._count += 1
            if len(self._held) >= self._batch:
                self._release()
            else:
                self._wake.notify_all()
            return self._flow

    def do_generate_output(self):
        if not self._batching:
            return GstBase.BaseTransform.do_generate_output(self)
        return self._flow, None  # held frames are pushed by _release, in order, under the lock

    def do_transform_ip(self, buf: Gst.Buffer) -> Gst.FlowReturn:
        """One frame (batch-size 1): the buffer is writable here (GStreamer made it so)."""
        index = self._count
        self._count += 1
        try:
            due = index % self._props["interval"] == 0 or index == self._first
            frame = self._frame(buf, index, due)
            if due:
                [self._last] = self._pipeline.process(self._props["stream"], [frame])
                result = self._last
            else:
                result = self._carry(frame)
            self._attach(buf, result)
        except Exception as exc:  # one error on the bus, not a traceback in the streaming thread
            return self._failed(exc)
        return Gst.FlowReturn.OK

    def _release_late(self) -> None:
        """The latency bound: held frames whose time is up are detected and pushed from this thread."""
        limit = self._props["max-latency"]
        with self._lock:
            while self._running:
                if not self._held:
                    self._wake.wait()
                    continue
                due = self._held[0].arrived + limit - time.monotonic()
                if due > 0:
                    self._wake.wait(due)
                    continue
                self._release()

    def _release(self) -> None:
        """Detect in the held frames (those due by ``interval``), attach, draw, tell, and push them in
        order. Every push happens here, under the lock, from the streaming thread or the timer."""
        with self._lock:
            held, self._held = self._held, []
            if not held or self._flow != Gst.FlowReturn.OK:
                return
            interval = self._props["interval"]
            try:
                buffers = [self._writable_copy(h.buffer) for h in held]
                due = [i for i, h in enumerate(held) if h.index % interval == 0 or h.index == self._first]
                frames = [
                    self._frame(buf, h.index, i in due) for i, (buf, h) in enumerate(zip(buffers, held, strict=True))
                ]
                found = self._pipeline.process(self._props["stream"], [frames[i] for i in due])
                results = dict(zip(due, found, strict=True))
                for i, buf in enumerate(buffers):
                    if i in results:
                        self._last = results[i]
                    self._attach(buf, results[i] if i in results else self._carry(frames[i]))
            except Exception as exc:
                self._flow = self._failed(exc)
                return
            for buf in buffers:
                flow = self.srcpad.push(buf)
                if flow != Gst.FlowReturn.OK:
                    self._flow = flow
                    return

    def _failed(self, exc: Exception) -> Gst.FlowReturn:
        from ..errors import VidpipeError

        text = str(exc) if isinstance(exc, VidpipeError) else f"vidpipe_detect: {type(exc).__name__}: {exc}"
        self._error(Gst.ResourceError.FAILED, text)
        return Gst.FlowReturn.ERROR

    def _writable_copy(self, buf: Gst.Buffer) -> Gst.Buffer:
        """A held buffer's pixels, timestamps, flags and metas in a new buffer this element owns alone
        (Python's references keep a held buffer from being writable; one copy of the pixels)."""
        out = Gst.Buffer.new_allocate(None, buf.get_size(), None)
        with buf.map(Gst.MapFlags.READ) as source, out.map(Gst.MapFlags.WRITE) as target:
            np.copyto(np.frombuffer(target.data, dtype=np.uint8), np.frombuffer(source.data, dtype=np.uint8))
        flags = Gst.BufferCopyFlags
        Gst.Buffer.copy_into(out, buf, flags.FLAGS | flags.TIMESTAMPS | flags.META, 0, 0)
        return out

    def _frame(self, buf: Gst.Buffer, index: int, due: bool):
        """The buffer's RGB frame; when it is ``due`` for detection and the frames are gated, with the
        motion gate's answer (``motion``: False skips the detector)."""
        from ..types import Frame

        info = self._info
        width, height, stride = info.width, info.height, info.stride[0]
        out = torch.empty((height, width, 3), dtype=torch.uint8)
        with buf.map(Gst.MapFlags.READ) as mapping:
            data = np.frombuffer(mapping.data, dtype=np.uint8)
            rows = np.lib.stride_tricks.as_strided(
                data[info.offset[0] :], shape=(height, width, self._pixel), strides=(stride, self._pixel, 1),
                writeable=False,
            )  # fmt: skip
            np.copyto(out.numpy(), rows[:, :, list(self._channels)])
        pts = buf.pts / Gst.SECOND if buf.pts != Gst.CLOCK_TIME_NONE else None
        if pts is None and info.fps_n > 0:  # a buffer without a timestamp: its time by the caps' frame rate (not
            pts = index * info.fps_d / info.fps_n  # 0 for all: track timeouts and zone times would stand still)
        motion = self._gate(out.numpy(), pts) if due and self._gating else None
        return Frame(out, index, 0.0 if pts is None else pts, stream=self._props["stream"], motion=motion)

    def _carry(self, frame):
        from ..types import Result

        last = self._last
        if last is None:
            from ..types import Detections

            return Result(frame, Detections.empty())
        return Result(frame, last.detections, zones=last.zones, shapes=last.shapes)

    def _attach(self, buf: Gst.Buffer, result) -> None:
        found = result.detections
        tracks = found.track_ids.tolist() if found.track_ids is not None else [-1] * len(found)
        for number, (box, label, score, class_id, track) in enumerate(
            zip(
                found.boxes.tolist(), found.labels, found.scores.tolist(), found.class_ids.tolist(), tracks, strict=True
            )
        ):
            x1, y1, x2, y2 = box
            x, y = round(x1), round(y1)
            meta = GstVideo.buffer_add_video_region_of_interest_meta(
                buf, label, x, y, max(0, round(x2) - x), max(0, round(y2) - y)
            )
            meta.id = number  # the frame's objects are numbered from 0 (find one with ..._meta_id(buf, n))
            params = Gst.Structure.new_empty("detection")
            params.set_value("score", float(score))
            params.set_value("class-id", int(class_id))
            params.set_value("track-id", int(track))
            params.set_value("box", GObject.Value(GObject.TYPE_STRING, json.dumps([round(v, 3) for v in box])))
            meta.add_param(params)
        if self._annotator is not None:
            self._draw(buf, result)
        record = result.record()
        lines = [record, *(event.to_dict() for event in result.events)]
        if self._json is not None:
            self._json.write("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines), len(lines))
        if self._props["post-messages"]:
            structure = Gst.Structure.new_empty("vidpipe-detect")
            structure.set_value("stream", record["stream"])
            structure.set_value("frame", GObject.Value(GObject.TYPE_INT64, record["frame"]))
            structure.set_value("pts", float(record["pts"]))
            if "motion" in record:  # (gated frames: False, their detections are the last detected frame's)
                structure.set_value("motion", record["motion"])
            structure.set_value("detections", json.dumps(record["detections"], separators=(",", ":")))
            structure.set_value("events", json.dumps([e.to_dict() for e in result.events], separators=(",", ":")))
            self.post_message(Gst.Message.new_element(self, structure))

    def _draw(self, buf: Gst.Buffer, result) -> None:
        drawn = self._annotator.draw(result)
        if drawn is result.frame.tensor:
            return  # nothing to draw
        info = self._info
        with buf.map(Gst.MapFlags.READ | Gst.MapFlags.WRITE) as mapping:
            data = np.frombuffer(mapping.data, dtype=np.uint8)
            rows = np.lib.stride_tricks.as_strided(
                data[info.offset[0] :], shape=(info.height, info.width, self._pixel),
                strides=(info.stride[0], self._pixel, 1),
            )  # fmt: skip
            pixels = drawn.numpy()
            for source, target in enumerate(self._channels):
                rows[:, :, target] = pixels[:, :, source]


GObject.type_register(VidpipeDetect)
__gstelementfactory__ = ("vidpipe_detect", Gst.Rank.NONE, VidpipeDetect)


def register() -> bool:
    """Register the element in this process (without the plugin loader): for Python programs that
    build pipelines with ``Gst.parse_launch``."""
    return Gst.Element.register(None, "vidpipe_detect", Gst.Rank.NONE, VidpipeDetect)


__all__ = ["VidpipeDetect", "register"]
