"""Retention: a periodic sweep of ``output_dir`` that deletes evidence and recordings (clips, snapshots,
camera and annotated videos, JSON Lines, CSV) older than ``days`` and, while they take more than
``max_gb``, the oldest first. Only regular files found under ``output_dir`` itself, named as the service
names them (``MADE_HERE``), are ever deleted
(symbolic links are neither followed nor deleted; each path is resolved and checked); the event store
and the camera recorders' rings are not swept (the rings keep themselves short). The events' rows stay,
marked ``evicted``."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path

from .events import EventStore, StoreError

log = logging.getLogger(__name__)

SWEEP_S = 300.0  # seconds between sweeps
BUSY_S = 120.0  # a file modified this recently may be being written: never deleted
SWEPT = (".mp4", ".jpg", ".jsonl", ".csv")
_STAMP = r"\d{8}-\d{6}"
# what the service names its files (relative to output_dir): an event's snapshot, an event's clip, a
# stream's recordings (JSON Lines, CSV, annotated video) and camera recordings; nothing else is swept, so an
# output_dir shared with other files (a home folder) never loses them
MADE_HERE = re.compile(
    rf"snapshots/[^/]+/{_STAMP}-\d+\.jpg|[^/]+/clips/\d+\.mp4|[^/]+/(camera-)?{_STAMP}(-\d+)?\.(mp4|jsonl|csv)"
)
GB = 1_000_000_000


class Retention:
    """Sweeps ``output_dir`` every ``interval`` seconds in a thread of its own (:meth:`sweep` is one)."""

    def __init__(
        self, output_dir: Path, store: EventStore | None, *, days: float | None, max_gb: float | None,
        interval: float = SWEEP_S,
    ) -> None:  # fmt: skip
        self.output_dir = Path(output_dir)
        self.store = store
        self.days = days
        self.max_gb = max_gb
        self.interval = interval
        self.deleted = 0
        self._stop = threading.Event()
        self._failing = False
        self._thread: threading.Thread | None = None

    def start(self) -> Retention:
        self._thread = threading.Thread(target=self._run, name="vidpipe-retention", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except Exception as exc:  # (the next sweep tries again)
                if not self._failing:
                    log.error("retention: %s: %s", self.output_dir, exc)
                self._failing = True

    def sweep(self, now: float | None = None) -> list[Path]:
        """Delete what is too old or over the size, oldest first; the files deleted."""
        now = time.time() if now is None else now
        root = self.output_dir.resolve()
        found = self._files(root)  # (mtime, size, path)
        total = sum(size for _, size, _ in found)  # (the files being written count, but stay)
        files = sorted(item for item in found if now - item[0] >= BUSY_S)  # oldest first
        limit = self.max_gb * GB if self.max_gb is not None else None
        oldest = now - self.days * 86400 if self.days is not None else None
        doomed = []
        for mtime, size, path in files:
            if (oldest is not None and mtime < oldest) or (limit is not None and total > limit):
                doomed.append(path)
                total -= size
        deleted = [path for path in doomed if self._delete(root, path)]
        if deleted and self.store is not None:
            try:
                self.store.evict([path.relative_to(root).as_posix() for path in deleted])
            except StoreError as exc:
                log.error("retention: the events of deleted files are not marked: %s", exc)
        if deleted:
            self.deleted += len(deleted)
            log.info("retention: deleted %d file(s) under %s", len(deleted), self.output_dir)
        self._failing = False
        return deleted

    def _files(self, root: Path) -> list[tuple[float, int, Path]]:
        found = []
        for folder, dirs, names in os.walk(root):  # (symbolic links to folders are not followed)
            here = Path(folder)
            dirs[:] = [d for d in dirs if (d != "segments" or here == root) and not (here / d).is_symlink()]
            for name in names:
                path = here / name
                if not name.endswith(SWEPT) or not MADE_HERE.fullmatch(path.relative_to(root).as_posix()):
                    continue
                try:
                    info = path.lstat()
                except OSError:
                    continue
                if not path.is_file() or path.is_symlink():
                    continue
                found.append((info.st_mtime, info.st_size // max(1, info.st_nlink), path))  # (clips share links)
        return found

    @staticmethod
    def _delete(root: Path, path: Path) -> bool:
        """Delete one file, only when it is really under ``root`` (resolved) and not a link."""
        try:
            if path.is_symlink() or not path.resolve().is_relative_to(root):
                return False
            path.unlink()
        except OSError as exc:
            log.warning("retention: %s: %s", path, exc.strerror or exc)
            return False
        return True
