"""What a run is made of, and its rules checked in one place for the local runner, the cluster's and the
front doors: the streams' names and sources, a pipeline's arguments, a stream's options."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .. import rules
from ..errors import VidpipeError
from ..gst.source import Source

SINK_ERRORS = ("stop", "isolate")
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
MAX_NAME = 64
NAME_RULE = "use letters, digits, '-', '_' (and '.' after the first character), at most 64"
_COMMENT = re.compile(r"(^|\s)#.*$")  # '#' starts a comment at the start of a line or after whitespace


def check_arguments(
    detector: object, source: object, sources: object, *, keep_alive: bool, batch: object, max_frames: object,
    sink_errors: str, in_flight: object = None,
) -> None:  # fmt: skip
    """Raise :class:`VidpipeError` naming the first argument of a pipeline that breaks its rule."""
    if detector is None:
        raise VidpipeError("a pipeline needs a detector")
    if source is not None and sources is not None:
        raise VidpipeError("give one source, or sources=[...], not both")
    if source is None and sources is None and not keep_alive:
        raise VidpipeError("give one source, or sources=[...] (or keep_alive=True to add streams later)")
    rules.checked("batch", rules.count, batch)
    for name, value in (("max_frames", max_frames), ("in_flight", in_flight)):
        if value is not None:
            rules.checked(name, rules.count, value)
    if sink_errors not in SINK_ERRORS:
        raise VidpipeError(f"sink_errors must be one of {', '.join(SINK_ERRORS)}, got {sink_errors!r}")


def check_stream_name(name: str) -> str:
    """A stream name is a safe token: it becomes part of output paths (``out/{stream}.mp4``), MQTT topics
    and URLs, so it never holds a path separator, ``..``, a space or a control character. Returns it;
    raises :class:`VidpipeError` saying what is wrong."""
    if not isinstance(name, str):
        raise VidpipeError(f"invalid stream name {name!r}: not a string ({NAME_RULE})")
    if not name:
        raise VidpipeError(f"invalid stream name '' (empty): {NAME_RULE}")
    bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "_.-"))})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise VidpipeError(f"invalid stream name {name!r}: it holds {shown}; {NAME_RULE}")
    if ".." in name or name.startswith("."):
        raise VidpipeError(f"invalid stream name {name!r}: '.' may not start it nor be doubled; {NAME_RULE}")
    if len(name) > MAX_NAME:
        raise VidpipeError(f"invalid stream name {name[:16]!r}...: {len(name)} characters; {NAME_RULE}")
    return name


def check_name_free(name: str, taken: Iterable[str]) -> None:
    """Refuse a stream name another stream of the run has."""
    if name in taken:
        raise VidpipeError(f"stream name {name!r} is in use: each stream needs its own name")


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A named source: ``source`` is a source string (path, URL, ``testsrc://``) or an opened Source."""

    name: str
    source: str | Source


def split_name(text: str) -> tuple[str | None, str]:
    """``NAME=URI`` → (NAME, URI); a source without a name (no ``=`` before any ``://``, or an existing
    file whose name holds ``=``) → (None, text). The name is not checked here."""
    name, sep, rest = text.partition("=")
    if not sep or "://" in name or Path(text).exists():
        return None, text
    return name, rest


def read_sources_file(path: str | os.PathLike) -> list[str]:
    """Sources listed one per line (UTF-8, a byte order mark tolerated); ``#`` starts a comment at the
    start of a line or after whitespace (so a ``#`` inside a URL or password stays); blank lines are
    ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise VidpipeError(f"--sources {path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise VidpipeError(
            f"--sources {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8, one source per line"
        ) from None
    sources = [_COMMENT.sub("", line).strip() for line in text.splitlines()]
    sources = [line for line in sources if line]
    if not sources:
        raise VidpipeError(f"--sources {path}: lists no source")
    return sources


def stream_specs(sources: Iterable[str | os.PathLike | Source | tuple[str, str]]) -> list[StreamSpec]:
    """Name every source (``NAME=URI``, a ``(name, source)`` pair, or its position) and check that the
    names are safe tokens and unique. An unnamed source gets its position as its name, or the next
    number no given name uses."""
    given: list[tuple[str | None, str | Source]] = []
    for item in sources:
        if isinstance(item, Source):
            given.append((check_stream_name(item.stream) if item.stream != "0" else None, item))
        elif isinstance(item, tuple):
            given.append((check_stream_name(item[0]), item[1]))
        else:
            text = os.fspath(item)
            name, uri = split_name(text)
            try:
                given.append((None if name is None else check_stream_name(name), uri))
            except VidpipeError as exc:
                if "/" in name or "\\" in name:  # a path with '=' in it, perhaps
                    raise VidpipeError(f"{exc} (and no file {text} exists)") from None
                raise
    if not given:
        raise VidpipeError("no source given")
    seen: set[str] = set()
    for name, _ in given:
        if name is None:
            continue
        if name in seen:
            raise VidpipeError(f"stream name {name!r} is given twice: each stream needs its own name")
        seen.add(name)
    specs, number = [], 0
    for position, (name, source) in enumerate(given):
        if name is None:
            number = max(number, position)
            while str(number) in seen:
                number += 1
            name = str(number)
            seen.add(name)
        specs.append(StreamSpec(name, source))
    return specs
