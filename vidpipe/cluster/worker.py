"""A cluster worker: one vidpipe pipeline over its share of the streams, inside a Ray actor.

Cross-stream batching, tracking and counting stay inside it. What leaves it are the pixel-free records
(``Result.record()`` and ``Event.to_dict()``), taken in batches by the driver; a bounded queue between
the pipeline's output thread and the driver makes a slow driver slow the worker, never grow its memory.
Outputs that need pixels (the annotated video) are written here, to the path given.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import VidpipeError
from ..types import Event, Result

QUEUE = 512  # records waiting for the driver, per worker (back-pressure beyond)


class StreamWorker:
    """The actor's class (wrapped with ``ray.remote`` by the driver). ``settings`` are the run's:
    ``model`` (``models.load`` arguments), ``analysis`` (classes, track, lines, zones, anchor, stages),
    ``options`` (``StreamOptions`` fields), ``batch``, ``video`` (a path with ``{stream}``, or None),
    and for the service ``output_dir`` (each stream's video recording, named by the driver) and
    ``live`` (JPEG quality: the worker keeps its streams' latest frames for viewers)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from .. import models
        from ..pipeline import Pipeline
        from ..sinks import VideoSink

        self.pid = os.getpid()
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE)
        self._stop = threading.Event()
        detector = models.load(**settings["model"])
        sinks: list = [VideoSink(settings["video"])] if settings.get("video") else []
        self.recorder = self.live = None
        if settings.get("output_dir"):
            from ..sinks.recorder import Recorder

            self.recorder = Recorder(Path(settings["output_dir"]), kinds=("video",))
            sinks.append(self.recorder)
        if settings.get("live"):
            from ..sinks.live import LiveView

            self.live = LiveView(settings["live"])
            sinks.append(self.live)
        self.pipeline = Pipeline(
            detector=detector,
            keep_alive=True,
            sinks=sinks,
            batch=settings["batch"],
            options=stream_options(settings.get("options", {})),
            on_result=[self._result],
            on_event=[self._event],
            sink_errors="isolate",
            **settings.get("analysis", {}),
        )
        self.pipeline.start()

    def _put(self, item: dict) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _result(self, result: Result) -> None:
        self._put(result.record())

    def _event(self, event: Event) -> None:
        record = event.to_dict()
        if event.kind in ("ended", "failed", "stopped", "removed"):
            record["_end"] = True  # this stream has nothing more to say on this worker
        self._put(record)

    # -- the driver's calls -------------------------------------------------------------------------

    def ready(self) -> int:
        """The worker's process id, once its model is loaded."""
        return self.pid

    def add(self, name: str, uri: str, options: dict | None = None) -> None:
        """Add a stream; ``options`` are :meth:`Pipeline.add_stream`'s keywords, and ``record`` (a
        ``Record`` and the name its files take) for the service's recordings."""
        options = dict(options or {})
        record = options.pop("record", None)
        if record is not None and self.recorder is not None:
            self.recorder.plan(name, *record)
        try:
            self.pipeline.add_stream(uri, name, **options)
        except VidpipeError as exc:  # said as the stream's end, never an unhandled error in Ray's log
            if self.pipeline.stopped:  # a stop overtook it (the actor's calls run concurrently)
                self._event(Event(name, "stopped", f"{name}: stopped before it started"))
            else:
                self._event(Event(name, "failed", f"{name}: {exc}"))

    def remove(self, name: str) -> None:
        """Remove a stream: its outputs are finished, and its ``removed`` event is the last record."""
        with contextlib.suppress(KeyError):
            self.pipeline.remove_stream(name)

    def jpeg(self, name: str, height: int | None = None) -> tuple[int, bytes] | None:
        """The stream's latest annotated frame as JPEG (None: no live view, or no frame yet)."""
        return self.live.jpeg(name, height) if self.live is not None else None

    def take(self, most: int = 256, wait: float = 0.5) -> list[dict]:
        """Up to ``most`` records, waiting up to ``wait`` seconds for the first."""
        items: list[dict] = []
        deadline = time.monotonic() + wait
        while len(items) < most:
            try:
                timeout = max(0.0, deadline - time.monotonic()) if not items else 0.0
                items.append(self._queue.get(timeout=timeout) if timeout else self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def figures(self) -> dict:
        """This worker's streams (as :meth:`Pipeline.streams`), their counts, and its whole run's figures."""
        streams = self.pipeline.streams()
        counts = {s["name"]: self.pipeline.counts(s["name"]) for s in streams}
        return {"streams": streams, "counts": counts, "stats": self.pipeline.stats.snapshot()}

    def stop(self) -> dict:
        """Stop reading; the frames read are still processed; every output finished. Returns the figures."""
        self.pipeline.stop()
        waiter = threading.Thread(target=self._finish, daemon=True)
        waiter.start()
        return {"stopping": True}

    def _finish(self) -> None:
        with contextlib.suppress(Exception):  # failed streams: said as events already
            self.pipeline.wait(timeout=120)
        self._put({"_finished": True})


def stream_options(fields: dict[str, Any]) -> Any:
    """The ``StreamOptions`` a driver sent (``dataclasses.asdict``: the motion options as a dict)."""
    from ..options import MotionOptions, StreamOptions

    motion = dict(fields.get("motion", {}))
    motion["masks"] = tuple(motion.get("masks", ()))
    return StreamOptions(**{**fields, "motion": MotionOptions(**motion)})
