"""A stream's camera video kept without re-encoding: a ring of short MPEG-TS segments (the pre-roll of
event clips) and, when asked, continuous recordings in hourly fragmented MP4 files.

:meth:`CameraRecorder.attach` is a source's ``tap``: it hooks the video decoder's input inside the
source's ``uridecodebin`` (the parsed, still-encoded H.264/H.265) before the source starts, and copies
each buffer (a reference, not the bytes) into a pipeline of its own, ``appsrc ! tee``, whose branches are
``h264parse ! splitmuxsink`` (cut at keyframes). Sources without such a stream (test patterns, raw or
MJPEG cameras, other codecs) are encoded once, from the decoded frames (x264, else OpenH264). A fault
of the recording (disk full) is said once, never reaches the source, and recording resumes by itself.

Times: each source opening is a *session* whose recording timeline starts at 0 with its first buffer,
stamped with the UNIX time it arrived; segments are indexed by UNIX time (start, end), the time the
pipeline's frames and events carry, so that an event maps onto its segments across reconnects.

With ``adopt``, the ring's index is kept on disk (:mod:`.ringindex`) and the next recorder of the folder
adopts the earlier run's segments still within ``keep`` (a killed service's clips still due are cut from
them: :meth:`CameraRecorder.covering` with ``earlier``); without, an earlier run's ring is deleted.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path

from . import Gst, ringindex
from .ringindex import Segment

log = logging.getLogger(__name__)

SEGMENT_S = 2.0  # target length of a ring segment (cut at the next keyframe after it)
HOUR_S = 3600  # camera files are cut at the first keyframe of each UTC hour
MAX_QUEUED = 16 << 20  # bytes waiting in a recorder's appsrc before buffers are dropped (to the next keyframe)
RETRY_S = 5.0  # a failed recording pipeline is rebuilt at the first keyframe after this long
WORKING_S = 30.0  # a rebuilt one that wrote this long without a fault works again (hourly files: no other sign)
RING_SINK = "properties,buffer-mode=2"  # the ring's files written unbuffered: a kill loses no video handed over
PARSERS = {"video/x-h264": "h264parse", "video/x-h265": "h265parse"}
ENCODERS = (  # (only for sources without an H.264/H.265 stream: test patterns, raw and MJPEG cameras)
    ("x264enc", "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={key} bframes=0"),
    ("openh264enc", "openh264enc gop-size={key}"),
)


def encoder(key_frames: int) -> str | None:
    """The launch text of the first H.264 encoder installed (None: none is)."""
    for factory, text in ENCODERS:
        if Gst.ElementFactory.find(factory) is not None:
            return text.format(key=key_frames) + " ! h264parse"
    return None


class CameraRecorder:
    """One stream's camera video under ``folder`` (``output_dir/STREAM``): ``segments/`` (a ring keeping
    the last ``keep`` seconds; None: no ring) and, with ``hourly``, ``camera-YYYYmmdd-HHMMSS.mp4`` files
    of an hour each (UTC start time in the name). With ``adopt`` the ring's index is kept on disk and an
    earlier run's segments within ``keep`` are adopted (:attr:`adopted`), not deleted."""

    def __init__(
        self, folder: Path, *, keep: float | None, hourly: bool = False, segment_s: float = SEGMENT_S,
        adopt: bool = False,
    ) -> None:  # fmt: skip
        self.folder = Path(folder)
        self.keep = keep
        self.hourly = hourly
        self.segment_s = segment_s
        self.segments: list[Segment] = []  # closed ring segments, oldest first
        self.dropped = 0  # buffers not recorded (the recorder fell behind, or was failing)
        self._lock = threading.Lock()
        self._session: _Session | None = None
        self._sessions = 0
        self._failing = False
        self.trouble: str | None = None  # why recording first stopped, if it ever did (a run's report)
        self._closed = False
        self._index = adopt and keep is not None  # the ring's index is kept on disk (a next run adopts it)
        self._index_lock = threading.Lock()  # (one write of the index at a time)
        self._writing: dict[Path, Segment] = {}  # ring segments being written (listed in the index as open)
        self.adopted: list[Segment] = []  # an earlier run's segments still kept, oldest first
        self.earlier_from: float | None = None  # the oldest time an earlier run's index listed
        self._adopt()

    def _adopt(self) -> None:
        """An earlier run's ring: its segments within ``keep`` adopted (``adopt``), the other files the
        ring names as its own deleted (nothing maps onto them)."""
        ring = self.folder / "segments"
        listed = ringindex.read(ring) if self._index else []
        limit = time.time() - self.keep if self.keep is not None else None
        self.adopted = [s for s in listed if (limit is None or s.end >= limit) and s.path.is_file()]
        self.earlier_from = listed[0].start if listed else None
        kept = {s.path.name for s in self.adopted}
        for stale in ring.glob("*.ts"):
            if ringindex.NAMED.fullmatch(stale.name) and stale.name not in kept:
                with contextlib.suppress(OSError):
                    stale.unlink()
        if self._index and self.adopted:
            self._save_index()
        elif ring.is_dir():
            for name in (ringindex.INDEX, ringindex.INDEX + ".tmp"):
                with contextlib.suppress(OSError):
                    (ring / name).unlink()

    def attach(self, pipeline: Gst.Pipeline) -> None:
        """A source's ``tap``: record the stream of this (new) source pipeline; the previous one ends."""
        with self._lock:
            if self._closed:
                return
            previous, self._sessions = self._session, self._sessions + 1
            self._session = _Session(self, pipeline, self._sessions)
        if previous is not None:
            previous.finish()

    def tap(self, _stream: str, pipeline: Gst.Pipeline) -> None:
        """A stream's ``tap`` (see :class:`vidpipe.options.StreamOptions`): :meth:`attach`."""
        self.attach(pipeline)

    def discard(self) -> None:
        """Delete the ring's segments and index (closed: nothing will be cut from them any more)."""
        with self._lock:
            segments, self.segments, self.adopted = self.segments + self.adopted, [], []
        for path in [s.path for s in segments] + [self.folder / "segments" / ringindex.INDEX]:
            with contextlib.suppress(OSError):
                path.unlink()

    def reopen(self) -> None:
        """Record again after :meth:`close` (a restarted stream: its ring goes on)."""
        with self._lock:
            self._closed = False

    def close(self) -> None:
        """End the recording (the last segment and hourly file are finalised)."""
        with self._lock:
            self._closed, session, self._session = True, self._session, None
        if session is not None:
            session.finish(wait=True)

    # -- reading ------------------------------------------------------------------------------------

    def covering(self, start: float, end: float, pts: bool = False, earlier: bool = False) -> list[Segment]:
        """The closed segments of one session that overlap ``[start, end]`` (UNIX times, or with ``pts``
        the source's stream time: a file read as fast as it decodes), of the session with the most of
        that time (a clip never spans a reconnection); with ``earlier``, among the adopted segments of an
        earlier run (only those: this run's stream times are not the earlier run's)."""
        with self._lock:
            kept = self.adopted if earlier else self.segments
            spans = [(s, (s.pts_start, s.pts_end) if pts else (s.start, s.end)) for s in kept]
        found = [(s, span) for s, span in spans if span[1] > start and span[0] < end]
        if not found:
            return []
        overlap: dict[int, float] = {}
        for s, (first, last) in found:
            overlap[s.session] = overlap.get(s.session, 0.0) + min(last, end) - max(first, start)
        best = max(overlap, key=lambda k: overlap[k])
        return [s for s, _ in found if s.session == best]

    def recorded_until(self, when: float, pts: bool = False) -> bool:
        """Whether the ring holds everything up to ``when`` (or no more will come for that time)."""
        with self._lock:
            session = self._session
            last = (self.segments[-1].pts_end if pts else self.segments[-1].end) if self.segments else 0.0
        return last >= when or session is None or session.ended or (not pts and session.started_at > when)

    # -- the sessions' reports -------------------------------------------------------------------------

    def _opened_segment(self, segment: Segment) -> None:
        with self._lock:
            self._writing[segment.path] = segment
        self._save_index()

    def _closed_segment(self, segment: Segment) -> None:
        with self._lock:
            self._writing.pop(segment.path, None)
            self.segments.append(segment)
            limit = time.time() - self.keep if self.keep is not None else None
            old = [s for s in self.segments + self.adopted if limit is not None and s.end < limit]
            self.segments = [s for s in self.segments if s not in old]
            self.adopted = [s for s in self.adopted if s not in old]
        self._save_index()
        for s in old:
            with contextlib.suppress(OSError):
                s.path.unlink()

    def _dropped_segments(self, session: int) -> None:
        """A failed recording pipeline's segment being written: never closed, no more listed."""
        with self._lock:
            self._writing = {path: s for path, s in self._writing.items() if s.session != session}
        self._save_index()

    def _save_index(self) -> None:
        """The ring's index rewritten (with ``adopt``); a disk that cannot take it is the recording's to say."""
        if not self._index:
            return
        with self._index_lock:
            with self._lock:
                closed, opened = self.adopted + self.segments, list(self._writing.values())
            with contextlib.suppress(OSError):
                ringindex.write(self.folder / "segments", closed, opened)

    def _failed(self, why: str) -> None:
        if self.trouble is None:
            self.trouble = why
        if not self._failing:
            log.error("%s: camera recording stopped: %s; it resumes by itself when it can", self.folder, why)
        self._failing = True

    def _working(self) -> None:
        if self._failing:
            log.warning("%s: camera recording resumed", self.folder)
        self._failing = False


class _Session:
    """The recording of one source opening: hooks the source, feeds its own recording pipeline."""

    def __init__(self, owner: CameraRecorder, source: Gst.Pipeline, number: int) -> None:
        self.owner = owner
        self.number = number
        self.started_at = time.time()
        self.ended = False
        self._recording: Gst.Pipeline | None = None
        self._appsrc: Gst.Element | None = None
        self._caps: Gst.Caps | None = None
        self._base: int | None = None  # the first buffer's timestamp (ns): the recording timeline's 0
        self._t0 = 0.0  # the UNIX time of the recording timeline's 0
        self._need_key = True
        self._failed_at: float | None = None
        self._restarts = 0  # recording pipelines after the first (each a timeline of its own)
        self._rebuilt_at = 0.0  # when the recording pipeline was last built
        self._hourly: Gst.Element | None = None
        self._hour: int | None = None  # the UTC hour of the camera file being written
        self._opened: dict[str, tuple[float, float]] = {}  # ring segment being written -> its start (UNIX, pts)
        self._raw = False  # the decoded frames are recorded (encoded once): no H.264/H.265 stream to keep
        self._encoded = False  # the decoder's input is recorded
        self._parser = "h264parse"
        self._done = threading.Event()
        decode = source.get_by_name("decode")
        if decode is not None:
            decode.connect("deep-element-added", self._element_added)
        frames = source.get_by_name("frames")
        if frames is not None:  # (used when no H.264/H.265 comes before the frames: raw, MJPEG, other codecs)
            frames.get_static_pad("sink").add_probe(
                Gst.PadProbeType.BUFFER | Gst.PadProbeType.EVENT_DOWNSTREAM, self._on_raw
            )
        self._source = source

    # -- hooking the source --------------------------------------------------------------------------

    def _element_added(self, _bin: Gst.Bin, _parent: Gst.Bin, element: Gst.Element) -> None:
        factory = element.get_factory()
        klass = factory.get_metadata("klass") or "" if factory is not None else ""
        if "Decoder/Video" in klass and not isinstance(element, Gst.Bin):
            pad = element.get_static_pad("sink")
            pad.add_probe(Gst.PadProbeType.BUFFER | Gst.PadProbeType.EVENT_DOWNSTREAM, self._on_encoded)

    def _on_encoded(self, pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        """The decoder's input (before any decoded frame): kept as it is when H.264 or H.265."""
        caps = pad.get_current_caps()
        name = caps.get_structure(0).get_name() if caps is not None and caps.get_size() else ""
        if self._raw or (name and name not in PARSERS):  # (the decoded frames are recorded instead)
            return Gst.PadProbeReturn.REMOVE
        if info.type & Gst.PadProbeType.BUFFER:
            self._encoded = True
        return self._on_buffer(pad, info)

    def _on_raw(self, pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        """The decoded frames: recorded (encoded once) when the stream had no H.264/H.265 to keep."""
        if self._encoded:
            return Gst.PadProbeReturn.REMOVE
        if info.type & Gst.PadProbeType.BUFFER:
            self._raw = True
        return self._on_buffer(pad, info)

    def _on_buffer(self, pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        """Every buffer (or event) of the stream, in the source's streaming thread: never waits."""
        if info.type & Gst.PadProbeType.EVENT_DOWNSTREAM:
            event = info.get_event()
            if event is not None and event.type == Gst.EventType.EOS:
                self.finish()
            return Gst.PadProbeReturn.OK
        buf = info.get_buffer()
        if buf is None or self.ended:
            return Gst.PadProbeReturn.OK
        try:
            self._record(pad, buf)
        except Exception as exc:  # (a recording fault never reaches the source)
            self._fail(str(exc))
        return Gst.PadProbeReturn.OK

    # -- recording -----------------------------------------------------------------------------------

    def _record(self, pad: Gst.Pad, buf: Gst.Buffer) -> None:
        key = self._raw or not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        stamp = buf.pts if buf.pts != Gst.CLOCK_TIME_NONE else buf.dts
        if stamp == Gst.CLOCK_TIME_NONE:
            return
        if self._recording is None:
            if not key or (self._failed_at is not None and time.time() - self._failed_at < RETRY_S):
                return
            self._start(pad.get_current_caps())
        if self._need_key and not key:
            self.owner.dropped += 1
            return
        appsrc = self._appsrc
        if appsrc.get_property("current-level-bytes") > MAX_QUEUED:  # behind (a slow disk): skip to a keyframe
            self.owner.dropped += 1
            self._need_key = True
            return
        caps = pad.get_current_caps()
        if caps is not None and (self._caps is None or not caps.is_equal(self._caps)):
            self._caps = caps
            appsrc.set_property("caps", caps)
        if self._base is None:
            first = min(t for t in (buf.pts, buf.dts) if t != Gst.CLOCK_TIME_NONE)
            self._base = first
            self._t0 = time.time() - (stamp - first) / Gst.SECOND
        out = buf.copy()  # (shares the memory: only the timestamps are its own)
        out.pts = max(0, buf.pts - self._base) if buf.pts != Gst.CLOCK_TIME_NONE else Gst.CLOCK_TIME_NONE
        out.dts = max(0, buf.dts - self._base) if buf.dts != Gst.CLOCK_TIME_NONE else Gst.CLOCK_TIME_NONE
        self._need_key = False
        if self._hourly is not None and key:  # a new UTC hour: a new camera file from this keyframe on
            hour = int((self._t0 + out.pts / Gst.SECOND) // HOUR_S) if out.pts != Gst.CLOCK_TIME_NONE else self._hour
            if self._hour is not None and hour != self._hour:
                self._hourly.emit("split-now")
            self._hour = hour
        if appsrc.emit("push-buffer", out) != Gst.FlowReturn.OK and not self.ended:  # (ended: finish() raced)
            self._fail("the recording pipeline stopped")
        elif self.owner._failing and time.time() - self._rebuilt_at > WORKING_S:  # (written that long: it works)
            self.owner._working()

    def _start(self, caps: Gst.Caps | None) -> None:
        owner = self.owner
        if self._raw:
            rate = caps.get_structure(0).get_fraction("framerate") if caps is not None else (False, 0, 1)
            fps = rate[1] / rate[2] if rate[0] and rate[2] else 25.0
            chain = encoder(max(1, round(fps * owner.segment_s)))
            if chain is None:
                raise RuntimeError("no H.264 encoder (x264enc or openh264enc) for a raw source")
            head, parser = f"videoconvert ! {chain} ! ", "h264parse"
        else:
            name = caps.get_structure(0).get_name() if caps is not None else ""
            head, parser = "", PARSERS[name]
        self._parser = parser
        branches = []
        if owner.keep is not None:
            (owner.folder / "segments").mkdir(parents=True, exist_ok=True)
            branches.append(
                f"t. ! queue ! {parser} config-interval=-1 ! splitmuxsink name=ring async-finalize=true "
                f"muxer-factory=mpegtsmux max-size-time={int(owner.segment_s * Gst.SECOND)} "
                f'sink-properties="{RING_SINK}"'
            )
        if owner.hourly:
            owner.folder.mkdir(parents=True, exist_ok=True)
            branches.append(
                f"t. ! queue ! {parser} ! splitmuxsink name=hourly async-finalize=true muxer-factory=mp4mux "
                'muxer-properties="properties,fragment-duration=1000"'
            )
        text = f"appsrc name=src format=time ! {head}tee name=t " + " ".join(branches)
        recording = Gst.parse_launch(text)
        self._appsrc = recording.get_by_name("src")
        self._appsrc.set_property("max-bytes", 0)
        if caps is not None:
            self._caps = caps
            self._appsrc.set_property("caps", caps)
        for name, namer in (("ring", self._ring_name), ("hourly", self._hourly_name)):
            element = recording.get_by_name(name)
            if element is not None:
                element.connect("format-location-full", namer)
        recording.get_bus().set_sync_handler(self._on_message)
        self._recording, self._need_key, self._base, self._rebuilt_at = recording, True, None, time.time()
        self._hourly, self._hour = recording.get_by_name("hourly"), None
        if recording.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self._fail("cannot start the recording pipeline")

    def _ring_name(self, _sink: Gst.Element, fragment: int, _sample: Gst.Sample | None) -> str:
        return str(self.owner.folder / "segments" / f"{self.started_at * 1000:.0f}-{self.number}-{fragment:05d}.ts")

    def _hourly_name(self, _sink: Gst.Element, _fragment: int, _sample: Gst.Sample | None) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        path = self.owner.folder / f"camera-{stamp}.mp4"
        take = 1
        while path.exists():
            take += 1
            path = self.owner.folder / f"camera-{stamp}-{take}.mp4"
        return str(path)

    def _on_message(self, _bus: Gst.Bus, message: Gst.Message) -> Gst.BusSyncReply:
        """The recording pipeline's messages, in the thread that posts them."""
        if message.type == Gst.MessageType.ELEMENT and message.src.get_name() == "ring":
            s = message.get_structure()
            location, running = s.get_value("location"), s.get_value("running-time")
            if running == Gst.CLOCK_TIME_NONE:
                return Gst.BusSyncReply.DROP
            at, pts = self._t0 + running / Gst.SECOND, ((self._base or 0) + running) / Gst.SECOND
            timeline = self.number * 1000 + self._restarts
            if s.get_name() == "splitmuxsink-fragment-opened":
                self._opened[location] = (at, pts)
                self.owner._opened_segment(Segment(Path(location), timeline, at, at, self._parser, pts, pts))
            elif s.get_name() == "splitmuxsink-fragment-closed" and location in self._opened:
                start, pts_start = self._opened.pop(location)
                segment = Segment(Path(location), timeline, start, at, self._parser, pts_start, pts)
                self.owner._closed_segment(segment)
                self.owner._working()
        elif message.type == Gst.MessageType.ERROR:
            error, _debug = message.parse_error()
            self._fail(f"{message.src.get_name()}: {error.message}")
        elif message.type == Gst.MessageType.EOS:
            self._done.set()
        return Gst.BusSyncReply.DROP

    def _fail(self, why: str) -> None:
        """Drop the recording pipeline (in a thread of its own: this may be one of its threads)."""
        self.owner._failed(why)
        recording, self._recording, self._appsrc = self._recording, None, None
        self.owner._dropped_segments(self.number * 1000 + self._restarts)
        self._failed_at, self._opened, self._restarts = time.time(), {}, self._restarts + 1
        self._done.set()
        if recording is not None:
            _stop_later(recording, wait=False)

    def finish(self, wait: bool = False) -> None:
        """End this session: its last segment and hourly file are finalised (in the background, or
        waited for with ``wait``)."""
        if self.ended:
            return
        self.ended = True
        recording, appsrc = self._recording, self._appsrc
        if recording is None:
            return
        appsrc.emit("end-of-stream")
        thread = _stop_later(recording, wait=True, done=self._done)
        if wait:
            thread.join(timeout=10)


def _stop_later(recording: Gst.Pipeline, *, wait: bool, done: threading.Event | None = None) -> threading.Thread:
    def stop() -> None:
        if wait and done is not None:
            done.wait(timeout=10)
        recording.get_bus().set_sync_handler(None)
        recording.set_state(Gst.State.NULL)

    thread = threading.Thread(target=stop, name="vidpipe-recording-stop", daemon=True)
    thread.start()
    return thread
