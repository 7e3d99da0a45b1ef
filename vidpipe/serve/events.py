"""The event store: every event of the service, one row each, in SQLite (``output_dir/events.db``, WAL),
with a JPEG snapshot of the frame for each analytics event (the object's box drawn) under
``output_dir/snapshots/STREAM/``.

The sink side never waits: it appends to a bounded queue (a full queue drops the event and counts it); a
thread of its own draws, encodes and writes. A database that cannot be opened (damaged, locked, not
writable) is one log line and the service runs on without a store; a write that fails (disk full) is said
once and the store resumes when writes work again.
"""

from __future__ import annotations

import io
import json
import logging
import math
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from ..sinks.base import BaseSink
from ..sinks.draw import Annotator
from ..types import Event, Result

log = logging.getLogger(__name__)

DB_NAME = "events.db"
SNAPSHOTS = "snapshots"
ANALYTICS = ("line_crossed", "zone_entered", "zone_left", "loitering")
COLUMNS = ("id", "stream", "type", "time", "wall", "label", "track_id", "line", "zone", "direction", "score",
           "box", "snapshot", "clip", "clip_ready", "clip_failed", "evicted", "message", "extra")  # fmt: skip
_OWN = {"stream", "wall", "event", "message", "label", "track_id", "line", "zone", "direction", "score", "box"}
SCHEMA = """CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, type TEXT NOT NULL, time TEXT NOT NULL,
    wall REAL NOT NULL, label TEXT, track_id INTEGER, line TEXT, zone TEXT, direction TEXT, score REAL,
    box TEXT, snapshot TEXT, clip TEXT, clip_ready INTEGER NOT NULL DEFAULT 0, clip_failed TEXT, message TEXT,
    extra TEXT,
    evicted INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS events_wall ON events (wall);
CREATE INDEX IF NOT EXISTS events_stream ON events (stream, id);"""
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
MAX_INTEGER = 2**63 - 1  # SQLite's largest (a larger limit is all of them)


class StoreError(Exception):
    """The database cannot be opened or read (its one line says why)."""


def iso(wall: float) -> str:
    """ISO 8601 UTC with milliseconds: ``2026-12-04T20:57:39.123Z``."""
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str | float | None) -> float | None:
    """An epoch (seconds) from an epoch number or ISO 8601 text (no zone: UTC); ValueError when neither
    (or not finite: ``nan``, ``inf``)."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not a time (expected ISO 8601 or epoch seconds)")
        return number
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{value!r} is neither ISO 8601 nor an epoch time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def connect(path: Path, create: bool = False) -> sqlite3.Connection:
    """A connection to the store at ``path`` (its schema made with ``create``); :class:`StoreError`."""
    if not create and not path.is_file():
        raise StoreError(f"{path}: no event store there")
    try:
        db = sqlite3.connect(path, timeout=2.0, check_same_thread=False)
        try:
            if create:
                mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise sqlite3.OperationalError(f"journal mode {mode}, not WAL")
                db.executescript(SCHEMA)
            names = [row[1] for row in db.execute("PRAGMA table_info(events)")]
            for column, kind in (("evicted", "INTEGER NOT NULL DEFAULT 0"), ("clip_failed", "TEXT")):
                if names and column not in names:  # (a store of an earlier version)
                    with db:
                        db.execute(f"ALTER TABLE events ADD COLUMN {column} {kind}")
            db.execute("SELECT id FROM events LIMIT 1").fetchall()
        except BaseException:
            db.close()
            raise
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: {exc}") from None
    return db


def query(
    db: sqlite3.Connection, *, stream: str | None = None, type: str | None = None, label: str | None = None,
    since: float | None = None, until: float | None = None, limit: int = 100, before_id: int | None = None,
) -> list[dict]:  # fmt: skip
    """Events, newest first, at most ``limit``, those with an id below ``before_id`` (the next page)."""
    where, args = [], []
    for column, value in (("stream", stream), ("type", type), ("label", label)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    for clause, value in (("wall >= ?", since), ("wall <= ?", until), ("id < ?", before_id)):
        if value is not None:
            where.append(clause)
            args.append(value)
    sql = f"SELECT {', '.join(COLUMNS)} FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    try:
        rows = db.execute(sql + " ORDER BY id DESC LIMIT ?", [*args, min(int(limit), MAX_INTEGER)]).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(str(exc)) from None
    return [row_dict(row) for row in rows]


def row_dict(row: tuple) -> dict:
    record = dict(zip(COLUMNS, row, strict=True))
    extra = json.loads(record.pop("extra") or "{}")
    record["box"] = json.loads(record["box"]) if record["box"] else None
    record["event"] = record["type"]  # as the in-memory events and MQTT name it
    return {**{k: v for k, v in extra.items() if k not in record}, **record}


def safe_part(name: str) -> str:
    """A name usable as one path component (never ``..`` or a separator)."""
    part = _UNSAFE.sub("_", name).lstrip(".")
    return part or "_"


class EventStore(BaseSink):
    """The store as a sink of the service: fed every event in order with its results."""

    def __init__(self, output_dir: Path, *, snapshots: bool = True, queue_size: int = 1000, quality: int = 85):
        self.output_dir = Path(output_dir)
        self.on_stored: Callable[[int, Event], None] | None = None  # each analytics event once stored (clips)
        self.on_close: Callable[[], None] | None = None  # before the database closes (the last clips)
        self.path = self.output_dir / DB_NAME
        self.snapshots = snapshots
        self.stream_snapshots: dict[str, bool] = {}  # a stream's own choice (over ``snapshots``)
        self.quality = quality
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = "is a file, not a folder" if self.output_dir.exists() else f"cannot be made ({exc.strerror})"
            raise StoreError(f"{self.output_dir}: {why}") from None
        self._db = connect(self.path, create=True)  # StoreError: the service goes on without a store
        self._queue: queue.Queue = queue.Queue(queue_size)
        self._last: dict[str, Result] = {}
        self._annotator = Annotator()
        self.dropped = 0  # events not stored: the queue was full, or the write failed
        self.stored = 0
        self._failing = False
        self._snapshots_failing = False
        self.on_snapshot: Callable[[str, bytes], None] | None = None  # told each snapshot written (MQTT)
        self._lock = threading.Lock()  # the writer's connection, shared with readers
        self._thread = threading.Thread(target=self._run, name="vidpipe-events", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, output_dir: Path, **options: Any) -> EventStore | None:
        """The store, or None (said in one line) when its database cannot be used."""
        try:
            return cls(output_dir, **options)
        except (StoreError, OSError) as exc:
            log.error("event store: %s; the service runs without it (events are kept in memory only)", exc)
            return None

    # -- the sink side (never waits) ----------------------------------------------------------------

    def write(self, result: Result) -> None:
        self._last[result.frame.stream] = result  # (a reference: an analytics event's object is in it)

    def event(self, event: Event) -> None:
        result = self._last.get(event.stream) if event.kind in ANALYTICS else None
        try:
            self._queue.put_nowait((event, result))
        except queue.Full:
            self.dropped += 1

    def close_stream(self, stream: str) -> None:
        self._last.pop(stream, None)

    def close(self) -> None:
        """Store what is queued, let ``on_close`` finish (the last clips), then close the database."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=10)
        if self.on_close is not None:
            self.on_close()
        with self._lock:
            self._db.close()

    # -- the reading side ---------------------------------------------------------------------------

    def query(self, **filters: Any) -> list[dict]:
        with self._lock:
            return query(self._db, **filters)

    def get(self, event_id: int) -> dict | None:
        try:
            with self._lock:
                row = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM events WHERE id = ?", (event_id,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from None
        return row_dict(row) if row is not None else None

    def snapshot_file(self, record: dict, key: str = "snapshot") -> Path | None:
        """The snapshot (or ``key``: the clip) of an event's row when its file is there, in ``output_dir``."""
        if not record.get(key):
            return None
        file = (self.output_dir / record[key]).resolve()
        if not file.is_relative_to(self.output_dir.resolve()) or not file.is_file():
            return None
        return file

    def set_clip(self, event_id: int, clip: str) -> None:
        """An event's clip is ready (``clip``: its path relative to ``output_dir``); StoreError."""
        self._update("UPDATE events SET clip = ?, clip_ready = 1, clip_failed = NULL WHERE id = ?", [(clip, event_id)])

    def set_clip_failed(self, event_id: int, why: str) -> None:
        """An event's clip was given up (``why``, in words: its row says so); StoreError."""
        self._update("UPDATE events SET clip_failed = ? WHERE id = ? AND clip_ready = 0", [(why, event_id)])

    def last_id(self) -> int:
        """The newest event's id (0: none); StoreError."""
        try:
            with self._lock:
                return self._db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from None

    def without_clip(self, stream: str, since: float, up_to: int) -> list[dict]:
        """A stream's line, zone and loitering events from ``since`` (UNIX time) with ids up to ``up_to``
        that have neither a clip nor a reason for none, oldest first (a killed run's clips still due)."""
        marks = ", ".join("?" * len(ANALYTICS))
        sql = (f"SELECT {', '.join(COLUMNS)} FROM events WHERE stream = ? AND wall >= ? AND id <= ? AND clip_ready = 0"
               f" AND clip_failed IS NULL AND evicted = 0 AND type IN ({marks}) ORDER BY id")  # fmt: skip
        try:
            with self._lock:
                rows = self._db.execute(sql, (stream, since, up_to, *ANALYTICS)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from None
        return [row_dict(row) for row in rows]

    def evict(self, files: list[str]) -> None:
        """Files retention deleted (relative to ``output_dir``): their rows stay, marked ``evicted``."""
        pairs = [(name,) for name in files]
        self._update("UPDATE events SET clip = NULL, clip_ready = 0, evicted = 1 WHERE clip = ?", pairs)
        self._update("UPDATE events SET snapshot = NULL, evicted = 1 WHERE snapshot = ?", pairs)

    def _update(self, sql: str, rows: list[tuple]) -> None:
        try:
            with self._lock, self._db:
                self._db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None

    # -- the writer thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < 200:  # a burst in one transaction
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            done = None in items
            self._store([item for item in items if item is not None])
            if done:
                return

    def _store(self, items: list[tuple[Event, Result | None]]) -> None:
        prepared = [self._prepare(event, result) for event, result in items]  # drawn before the lock: reads go on
        try:
            with self._lock, self._db:
                for event, found, picture in prepared:
                    self._insert(event, found, picture)
        except (sqlite3.Error, OSError) as exc:
            self.dropped += len(items)
            if not self._failing:
                log.error("event store: %s: %s; events are not stored until it works again", self.path, exc)
            self._failing = True
            return
        self.stored += len(items)
        if self._failing:
            log.warning("event store: %s: storing again", self.path)
            self._failing = False

    def _prepare(self, event: Event, result: Result | None) -> tuple[Event, tuple | None, bytes | None]:
        """The event, its object (index, score, box) in its frame, and its snapshot as JPEG bytes."""
        found = _object(result, event.fields.get("track_id")) if result is not None else None
        if found is None or not self.stream_snapshots.get(event.stream, self.snapshots):
            return event, found, None
        frame = result.frame
        if frame.picture is not None or frame.tensor.numel() == 0:  # no pixels here (a cluster's worker has them)
            return event, found, None
        picked = Result(frame, result.detections[slice(found[0], found[0] + 1)], shapes=result.shapes)
        out = io.BytesIO()
        try:
            Image.fromarray(self._annotator.draw(picked).numpy()).save(out, "JPEG", quality=self.quality)
        except Exception as exc:  # (a picture that cannot be drawn): the event is stored without it
            if not self._snapshots_failing:
                log.error("event store: a snapshot of %s could not be drawn (%s: %s); the event is kept without it",
                          event.stream, type(exc).__name__, exc)  # fmt: skip
            self._snapshots_failing = True
            return event, found, None
        return event, found, out.getvalue()

    def _insert(self, event: Event, found: tuple | None, picture: bytes | None) -> None:
        fields = event.fields
        score, box = (round(found[1], 4), [round(v, 2) for v in found[2]]) if found else (None, None)
        extra = {k: v for k, v in event.to_dict().items() if k not in _OWN}
        cursor = self._db.execute(
            "INSERT INTO events (stream, type, time, wall, label, track_id, line, zone, direction, score, box,"
            " message, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event.stream, event.kind, iso(event.wall), event.wall, fields.get("label"), fields.get("track_id"),
             fields.get("line"), fields.get("zone"), fields.get("direction"), score,
             json.dumps(box) if box else None, event.message, json.dumps(extra, default=str)),
        )  # fmt: skip
        if self.on_stored is not None and event.kind in ANALYTICS:
            self.on_stored(cursor.lastrowid, event)  # (only queues: a clip is cut later, elsewhere)
        if picture is None:
            return
        try:
            name = self._write_snapshot(event, picture, cursor.lastrowid)
        except OSError as exc:  # (disk full) the row is kept without its picture
            if not self._snapshots_failing:
                log.error("event store: snapshots not written until it works again: %s", exc)
            self._snapshots_failing = True
            return
        self._snapshots_failing = False
        self._db.execute("UPDATE events SET snapshot = ? WHERE id = ?", (name, cursor.lastrowid))
        if self.on_snapshot is not None:
            self.on_snapshot(event.stream, picture)

    def _write_snapshot(self, event: Event, picture: bytes, event_id: int) -> str:
        """The snapshot's file under ``output_dir/snapshots/STREAM/``; its path relative to output_dir."""
        folder = self.output_dir / SNAPSHOTS / safe_part(event.stream)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(event.wall))
        file = folder / f"{stamp}-{event_id}.jpg"
        if not file.resolve().is_relative_to(self.output_dir.resolve()):
            raise OSError(f"{file}: outside {self.output_dir}")
        folder.mkdir(parents=True, exist_ok=True)
        file.write_bytes(picture)
        return file.relative_to(self.output_dir).as_posix()


def _object(result: Result, track: int | None) -> tuple[int, float, list[float]] | None:
    """The index, score and box of the tracked object in a result."""
    found = result.detections
    if track is None or found.track_ids is None:
        return None
    for i, tid in enumerate(found.track_ids.tolist()):
        if tid == track:
            return i, float(found.scores[i]), found.boxes[i].tolist()
    return None


class StoreCollector(Collector):
    """The store's figures for Prometheus."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def describe(self):
        return []

    def collect(self):
        stored = CounterMetricFamily("vidpipe_events_stored", "Events written to the event store")
        stored.add_metric([], self.store.stored)
        dropped = CounterMetricFamily("vidpipe_events_dropped", "Events the store dropped (queue full, write failed)")
        dropped.add_metric([], self.store.dropped)
        yield from (stored, dropped)
