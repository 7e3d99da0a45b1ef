"""``vidpipe detect --evidence DIR``: the service's event store for a file or camera run — every event a
row of ``DIR/events.db``, a snapshot and a clip of the source's own video for each line or zone event
(``vidpipe events --db DIR/events.db`` lists them). A file read as fast as it decodes maps its events
onto its video by stream time; a live source by UNIX time, as the service does."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

from ..errors import VidpipeError
from ..gst import Gst
from ..gst.segments import CameraRecorder
from ..serve.clips import ClipMaker
from ..serve.events import EventStore, StoreError, safe_part

ROLL = 5.0  # seconds of clip before and after each event


class Evidence:
    """The store, the streams' camera recorders (made at their opening, by :meth:`tap`) and the clips."""

    def __init__(self, folder: str | Path, pre_roll: float = ROLL, post_roll: float = ROLL) -> None:
        self.folder = Path(folder)
        try:
            store = EventStore(self.folder)
        except StoreError as exc:  # (the service goes on without its store; a run asked for one)
            raise VidpipeError(f"--evidence {exc}") from None
        except OSError as exc:
            raise VidpipeError(f"--evidence {folder}: the event store cannot be used ({exc.strerror})") from None
        self.store = store
        self.rolls = (pre_roll, post_roll)
        self.cameras: dict[str, CameraRecorder] = {}
        self.clips = ClipMaker(store, self.cameras)
        store.on_stored, store.on_close = self.clips.add, self._close

    def tap(self, stream: str, pipeline: Gst.Pipeline) -> None:
        """A stream's tap (:class:`vidpipe.options.StreamOptions`): its video kept for the clips."""
        camera = self.cameras.get(stream)
        if camera is None:  # (the whole run's ring: clips are cut as the run goes, the ring deleted at its end)
            camera = CameraRecorder(self.folder / safe_part(stream), keep=math.inf)
            self.cameras[stream] = camera
            self.clips.rolls[stream] = self.rolls
        camera.attach(pipeline)

    def opened(self, live: dict[str, bool]) -> None:
        """The streams opened (name -> live): files map their events by stream time."""
        self.clips.by_pts = {name for name, is_live in live.items() if not is_live}

    def problems(self) -> list[str]:
        """After the run: what it could not keep (a recording that stopped: a full disk...), one line each."""
        lines = [f"--evidence {self.folder}: the video of stream {name} was not all kept ({camera.trouble}); "
                 "clips may be missing" for name, camera in self.cameras.items() if camera.trouble]  # fmt: skip
        if self.store.dropped:
            lines.append(f"--evidence {self.folder}: {self.store.dropped} event(s) could not be stored")
        return lines

    def _close(self) -> None:
        """Before the store closes: the last segments finalised, the clips cut, the rings deleted."""
        for camera in self.cameras.values():
            camera.close()
        self.clips.close()
        for camera in self.cameras.values():
            camera.discard()
            with contextlib.suppress(OSError):
                (camera.folder / "segments").rmdir()
