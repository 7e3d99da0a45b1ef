"""A ring's index: ``segments/index.json`` beside a camera recorder's MPEG-TS segments, rewritten (beside,
then renamed: whole or not at all) each time a segment opens or closes, so that a service killed (SIGKILL,
a power cut) leaves the UNIX and stream times of its segments behind, which their file names do not carry.
The next run adopts those still kept and cuts the clips that were still due from them.

A segment still open at the kill is listed with its start only; it is adopted up to its file's last
write (its modification time), the video a killed recorder had written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

INDEX = "index.json"
PARSERS = ("h264parse", "h265parse")  # (a segment's parser goes into a clip's launch line: only these)
NAMED = re.compile(r"\d+-\d+-\d{5}\.ts")  # a ring segment as the recorder names it (start ms, session, fragment)


@dataclass(frozen=True, slots=True)
class Segment:
    """A closed ring segment: its file, its timeline (one per recording pipeline: segments of one
    timeline concatenate) and its UNIX start and end times."""

    path: Path
    session: int
    start: float
    end: float
    parser: str = "h264parse"
    pts_start: float = 0.0  # the same span in the source's own stream time (seconds)
    pts_end: float = 0.0


def write(folder: Path, closed: list[Segment], opened: list[Segment]) -> None:
    """The index of ``folder`` (a ring's ``segments/``): its ``closed`` segments and those being written
    (``opened``: their ends not known yet); OSError (a full disk) is the caller's to bear."""
    entries = [
        {"file": s.path.name, "session": s.session, "start": s.start, "end": s.end, "parser": s.parser,
         "pts_start": s.pts_start, "pts_end": s.pts_end, **({"open": True} if s in opened else {})}
        for s in [*closed, *opened]
    ]  # fmt: skip
    partial = folder / (INDEX + ".tmp")
    partial.write_text(json.dumps({"version": 1, "segments": entries}))
    os.replace(partial, folder / INDEX)


def read(folder: Path) -> list[Segment]:
    """The segments an earlier run's index lists (their files may be gone), oldest first, each timeline
    given a session number below 0 (never one of this run's); [] without a usable index. One being
    written at the kill ends at its file's last write (left out when its file is gone)."""
    try:
        entries = json.loads((folder / INDEX).read_text())["segments"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    found: list[Segment] = []
    sessions: dict[int, int] = {}
    for entry in entries if isinstance(entries, list) else []:
        with contextlib.suppress(KeyError, TypeError, ValueError, OverflowError, OSError):  # (not understood: left out)
            name, parser = str(entry["file"]), str(entry.get("parser", "h264parse"))
            if not NAMED.fullmatch(name) or parser not in PARSERS:  # (only the ring's own files, in the folder)
                continue
            path = folder / name
            start, pts_start = float(entry["start"]), float(entry["pts_start"])
            if entry.get("open"):  # (being written at the kill: as far as its file got; an empty one is none)
                end = path.stat().st_mtime if path.is_file() and path.stat().st_size else start
                pts_end = pts_start + end - start
            else:
                end, pts_end = float(entry["end"]), float(entry["pts_end"])
            if end <= start:
                continue
            session = sessions.setdefault(int(entry["session"]), -1 - len(sessions))
            found.append(Segment(path, session, start, end, parser, pts_start, pts_end))
    return sorted(found, key=lambda s: s.start)
