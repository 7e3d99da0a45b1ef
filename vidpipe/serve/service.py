"""The service: one live pipeline whose streams come and go by configuration, API and SIGHUP, with the
live view, metrics, MQTT and each stream's recordings as its outputs (isolated: one failing output never
stops the others or the pipeline)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path

from .. import models
from ..api import Pipeline
from ..errors import VidpipeError
from ..gst.segments import CameraRecorder
from ..gst.uri import source_path
from ..options import default_batch
from ..redact import mask_secrets
from ..sinks.base import BaseSink
from ..sinks.live import LiveView
from ..sinks.recorder import Recorder
from .clips import ClipMaker, ClipsCollector
from .config import (
    ClipsConfig,
    ConfigError,
    ServeConfig,
    StateFile,
    StateFileError,
    StreamConfig,
    StreamEventsConfig,  # fmt: skip
    load_config,
)
from .events import EventStore, StoreCollector
from .live import RemoteLiveView
from .metrics import Metrics
from .mqtt import MqttPublisher
from .retention import Retention
from .webhooks import Webhooks

log = logging.getLogger(__name__)

NEXT_START = ("model", "mqtt", "auth", "web", "output_dir", "cluster", "events", "webhooks")  # not changed by a reload
STOP_WAIT = 8.0  # seconds a stop waits for the streams' ends (a stuck stream never holds the exit longer)


def prepare_output_dir(folder: Path, where: str = "", *, make: bool = True) -> None:
    """``output_dir`` made (with its parents) when it is not there (``make`` False: only checked, as
    ``serve --check`` does); :class:`ConfigError` when it cannot be or is no folder (a file): the service
    never runs with nowhere to keep its events and recordings."""
    try:
        if make:
            folder.mkdir(parents=True, exist_ok=True)
        elif folder.exists() and not folder.is_dir():
            raise FileExistsError(folder)
    except OSError as exc:
        why = "not a folder" if isinstance(exc, FileExistsError) or folder.is_file() else exc.strerror
        raise ConfigError([f"{where}output_dir: {folder}: cannot be used ({why})"]) from None


class Service:
    """A pipeline that runs until stopped, its streams those of the configuration with the API's changes
    laid over them (kept in ``state_path``)."""

    def __init__(
        self, config: ServeConfig, *, config_path: str | Path | None = None, state_path: str | Path | None = None
    ) -> None:
        self.config = config
        self.config_path = Path(config_path) if config_path is not None else None
        self.state = StateFile(state_path)
        self.changes = self.state.load()  # name -> config (added or replaced over the API) or None (removed)
        prepare_output_dir(Path(config.output_dir), f"{config_path}: " if config_path is not None else "")
        m = config.model
        model = m.load_args()
        cluster = config.cluster
        self.mqtt = MqttPublisher(config.mqtt, self.figures, self._counts_of) if config.mqtt is not None else None
        self.metrics = Metrics(self.figures, lambda: self.mqtt.connected if self.mqtt is not None else None)
        self.store = self._store()
        if self.store is not None and self.store.snapshots and self.mqtt is not None:
            self.store.on_snapshot = self.mqtt.snapshot  # Home Assistant's camera shows the last event
            if self.mqtt.discovery is not None:
                self.mqtt.discovery.camera = True
        self.cameras: dict[str, CameraRecorder] = {}  # streams whose camera video is kept (clips, record)
        self.clips = None  # (each stream's pre- and post-roll: events.clips, or its own)
        if self.store is not None and cluster is None:
            self.clips = ClipMaker(self.store, self.cameras)
            self.store.on_stored, self.store.on_close = self.clips.add, self._close_evidence
        self.metrics.registry.register(ClipsCollector(self.clips, self.cameras))
        kept = config.events.retention
        self.retention = None
        if kept is not None and (kept.days is not None or kept.max_gb is not None):
            self.retention = Retention(Path(config.output_dir), self.store, days=kept.days, max_gb=kept.max_gb)
        self.webhooks = Webhooks(config.webhooks) if config.webhooks else None
        if self.webhooks is not None:
            self.metrics.registry.register(self.webhooks.collector())
        common = {"keep_alive": True, "sink_errors": "isolate", "classes": m.classes,
                  "batch": m.batch or default_batch(m.device)}  # fmt: skip
        if cluster is None:
            self.live = LiveView(config.web.quality)
            self.recorder = Recorder(Path(config.output_dir))
            self.pipeline = Pipeline(detector=models.load(**model), sinks=self._sinks(), **common)
        else:  # the workers keep the pixels: they encode the viewers' pictures and write the videos
            self.live = RemoteLiveView(lambda name, height: self.pipeline.jpeg(name, height), config.web.quality)
            self.recorder = Recorder(Path(config.output_dir), kinds=("json", "csv"))
            self.pipeline = Pipeline(
                detector=model, sinks=self._sinks(), cluster=cluster.address, workers=cluster.workers,
                cpus_per_worker=cluster.cpus_per_worker, live=config.web.quality,
                output_dir=Path(config.output_dir).resolve(), **common,
            )  # fmt: skip
        self.pipeline.stats.watchers.append(self.metrics.watch)
        self.streams: dict[str, StreamConfig] = {}  # what runs now
        self._lock = threading.RLock()  # one change of streams at a time
        self.started_at = time.time()
        self.stopping = threading.Event()

    def _sinks(self) -> list[BaseSink]:
        sinks: list[BaseSink] = [self.recorder, self.live, self.metrics]
        sinks += [self.store] if self.store is not None else []
        sinks += [self.webhooks] if self.webhooks is not None else []
        return sinks + ([self.mqtt] if self.mqtt is not None else [])

    def _store(self) -> EventStore | None:
        """The event store under ``output_dir`` (None: switched off, or its database unusable: said)."""
        events = self.config.events
        if not events.store:
            return None
        store = EventStore.open(
            Path(self.config.output_dir), snapshots=events.snapshots, queue_size=events.queue,
            quality=self.config.web.quality,
        )  # fmt: skip
        if store is not None:
            self.metrics.registry.register(StoreCollector(store))
        return store

    # -- lifetime -----------------------------------------------------------------------------------

    def connect(self) -> None:
        """Join or start the cluster of ``cluster:`` (nothing without one): before the server starts, so
        that a cluster that cannot be reached is one error line."""
        if self.config.cluster is not None:
            self.pipeline.connect()

    def start(self) -> Service:
        if self.mqtt is not None:
            self.mqtt.start()
        if self.webhooks is not None:
            self.webhooks.start()
        if self.retention is not None:
            self.retention.start()
        self.pipeline.start()
        for name, spec in self.desired().items():
            self._add(name, spec)
        if self.clips is not None:  # (the clips a killed run left due: from the video its rings kept)
            self.clips.recover()
        return self

    def stop(self) -> None:
        """Stop reading, finish every output (videos play, files end in whole lines), say goodbye."""
        self.stopping.set()
        self.pipeline.stop()
        try:
            self.pipeline.wait(timeout=STOP_WAIT if self.config.cluster is None else 60)
        except VidpipeError as exc:  # streams that failed: said already, as events
            log.info("%s", exc)
        except TimeoutError:  # a stream stuck where it cannot be stopped (a hung disk): the others are done
            busy = ("starting", "running", "reconnecting")
            stuck = [f["name"] for f in self.pipeline.streams() if f["state"] in busy]
            log.error("stopped %g s after the stop without the end of stream(s) %s", STOP_WAIT, ", ".join(stuck))
        finally:
            self._close_evidence()
            if self.retention is not None:
                self.retention.close()
            if self.mqtt is not None:
                self.mqtt.close()
            if self.store is not None:
                self.store.close()
            if self.webhooks is not None:
                self.webhooks.close()

    def _close_evidence(self) -> None:
        """The camera recorders' last segments finalised, then the clips due cut (before the store closes)."""
        for camera in list(self.cameras.values()):
            camera.close()
        if self.clips is not None:
            self.clips.close()

    @property
    def running(self) -> bool:
        return self.pipeline.running and not self.stopping.is_set()

    # -- streams ------------------------------------------------------------------------------------

    def desired(self) -> dict[str, StreamConfig]:
        """The configuration's streams with the API's changes laid over them."""
        wanted = dict(self.config.streams)
        for name, spec in self.changes.items():
            if spec is None:
                wanted.pop(name, None)
            else:
                wanted[name] = spec
        return wanted

    def put_stream(self, name: str, spec: StreamConfig) -> bool:
        """Create or replace a stream (only it restarts); True when it is new. Kept in the state file,
        written first: :class:`StateFileError` when it cannot be, and nothing changed."""
        with self._lock:
            self._save({**self.changes, name: spec})
            old = self.streams.get(name)
            if old is not None:
                self._remove(name)
            try:
                self._add(name, spec)
            except VidpipeError:  # as it was: the state file and the stream it replaced
                with contextlib.suppress(StateFileError):
                    self.state.save(self.changes)
                if old is not None:
                    with contextlib.suppress(VidpipeError):
                        self._add(name, old)
                raise
            self.changes[name] = spec
            return old is None

    def delete_stream(self, name: str) -> None:
        """Remove a stream, its outputs finalised; ``KeyError`` when unknown. Kept in the state file,
        written first: :class:`StateFileError` when it cannot be, and the stream runs on."""
        with self._lock:
            if name not in self.streams:
                raise KeyError(name)
            changes = dict(self.changes)
            if name in self.config.streams:
                changes[name] = None
            else:
                changes.pop(name, None)
            self._save(changes)
            self._remove(name)
            self.changes = changes

    def _save(self, changes: dict[str, StreamConfig | None]) -> None:
        try:
            self.state.save(changes)
        except StateFileError as exc:
            log.error("%s; the change was not made", exc)
            raise

    def reload(self) -> list[str]:
        """Read the configuration again and apply only the differences in its streams: a changed stream
        restarts alone, the others never pause. Returns what was done, one line each (a bad file changes
        nothing and says why)."""
        if self.config_path is None:
            return ["no configuration file to reload"]
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            for line in exc.problems:
                log.error("reload: %s", line)
            return [f"not reloaded: {line}" for line in exc.problems]
        done = []
        for key in NEXT_START:
            if getattr(config, key) != getattr(self.config, key):
                done.append(f"{key}: changed; takes effect at the next start")
        with self._lock:
            self.config = config.model_copy(update={key: getattr(self.config, key) for key in NEXT_START})
            wanted = self.desired()
            for name in [name for name in self.streams if name not in wanted]:
                self._remove(name)
                done.append(f"stream {name}: removed")
            for name, spec in wanted.items():
                if name not in self.streams:
                    self._add(name, spec)
                    done.append(f"stream {name}: added")
                elif self.streams[name] != spec:
                    self._remove(name)
                    self._add(name, spec)
                    done.append(f"stream {name}: restarted (changed)")
        for line in done:
            log.info("reload: %s", line)
        return done or ["nothing changed"]

    def _add(self, name: str, spec: StreamConfig) -> None:
        stem = self.recorder.plan(name, spec.record)
        annotated = spec.record.video and spec.record.annotated
        video = {"record": (spec.record, stem)} if self.config.cluster is not None and annotated else {}
        camera = self._camera(name, spec)
        if camera is not None:
            video["tap"] = camera.tap
        try:
            self.pipeline.add_stream(
                spec.uri, name, detect_fps=spec.detect_fps, max_latency=spec.max_latency, max_frames=spec.max_frames,
                lines=spec.lines, zones=spec.zone_shapes(), track=spec.track, loop=spec.loop, privacy=spec.privacy,
                blur=spec.blur, motion=spec.motion, **video,
            )  # fmt: skip
        except VidpipeError:
            self.recorder.plans.pop(name, None)
            if camera is not None:
                camera.close()
            raise
        self.streams[name] = spec
        self.metrics.zones(name, [zone.name for zone in spec.zone_shapes()])
        if self.mqtt is not None:
            self.mqtt.added(name, spec.lines, spec.zones)
        log.info("stream %s: added (%s)", name, mask_secrets(spec.uri))

    def _camera(self, name: str, spec: StreamConfig) -> CameraRecorder | None:
        """The recorder of a stream's own video (for clips, and ``record: {video: true, annotated: false}``);
        None when neither is asked for, or on a cluster (not there yet: said)."""
        own = spec.events or StreamEventsConfig()
        if self.store is not None:
            self.store.stream_snapshots[name] = self.config.events.snapshots if own.snapshots is None else own.snapshots
        clips = own.clips if isinstance(own.clips, ClipsConfig) else self.config.events.clips
        if own.clips is True:
            clips = clips or ClipsConfig()
        elif own.clips is False:
            clips = None
        hourly = spec.record.video and not spec.record.annotated
        if self.clips is not None:
            self.clips.rolls.pop(name, None)
        if clips is None and not hourly:
            return None
        if spec.privacy:  # the camera's own video cannot hide them: refuse rather than keep what must not be
            raise VidpipeError(
                f"stream {name}: its privacy regions cannot be hidden in the camera's own video, which clips and "
                "record: {annotated: false} keep; give the stream events: {clips: false} and record the "
                "annotated video (record: {video: true})"
            )
        if self.config.cluster is not None or (clips is not None and self.clips is None):
            log.warning("stream %s: no clips or camera recordings (not on a cluster, nor without a store)", name)
            return None
        keep = None
        if clips is not None:
            self.clips.rolls[name] = (clips.pre_roll, clips.post_roll)
            if not spec.loop and source_path(spec.uri) is not None:  # a file read at full speed: by stream time
                self.clips.by_pts.add(name)
            else:
                self.clips.by_pts.discard(name)
            keep = self.clips.keep(clips.pre_roll, clips.post_roll)
        camera = self.cameras.get(name)
        if camera is not None and camera.keep == keep and camera.hourly == hourly:
            camera.reopen()  # (a restarted stream keeps its ring: the clips still due are cut from it)
            return camera
        camera = CameraRecorder(Path(self.config.output_dir) / name, keep=keep, hourly=hourly, adopt=True)
        self.cameras[name] = camera
        return camera

    def _remove(self, name: str) -> None:
        with contextlib.suppress(KeyError):
            self.pipeline.remove_stream(name)
        camera = self.cameras.get(name)
        if camera is not None:  # (kept, closed: the clips still due are cut from its ring)
            camera.close()
        self.streams.pop(name, None)
        self.recorder.plans.pop(name, None)
        self.metrics.forget(name)
        if self.mqtt is not None:
            self.mqtt.removed(name)
        log.info("stream %s: removed", name)

    # -- figures ------------------------------------------------------------------------------------

    def figures(self) -> dict:
        return self.pipeline.stats.snapshot()

    def stream_list(self) -> list[dict]:
        """Every stream as the API shows it."""
        listed = []
        for figures in self.pipeline.streams():
            spec = self.streams.get(figures["name"])
            listed.append(self._describe(figures, spec))
        return listed

    def stream(self, name: str) -> dict:
        """One stream as the API shows it; ``KeyError`` when unknown."""
        for figures in self.pipeline.streams():
            if figures["name"] == name:
                return self._describe(figures, self.streams.get(name))
        raise KeyError(name)

    def _describe(self, figures: dict, spec: StreamConfig | None) -> dict:
        described = {"name": figures["name"], "uri": mask_secrets(spec.uri) if spec else figures["source"]}
        described.update({key: value for key, value in figures.items() if key not in ("name", "source")})
        if spec is not None:
            described["config"] = spec.model_dump(by_alias=True, exclude={"uri"})
        return described

    def events(self, limit: int = 200) -> list[dict]:
        return [event.to_dict() for event in list(self.pipeline.stats.events)[-limit:]]

    def _counts_of(self, stream: str) -> dict:
        return self.pipeline.counts(stream)
