"""Source strings: paths, ``file://``, ``rtsp://``, ``http(s)://``, ``/dev/videoN``, ``testsrc://``.

Pure functions (no pipeline is built): parse a source string into the GStreamer description of its
first part, and check a local file before GStreamer sees it.
"""

from __future__ import annotations

import os
import stat
import struct
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from ..errors import (
    NotAVideoError,
    SourceNotFoundError,
    StreamUnreachableError,
    TruncatedSourceError,
    UnsupportedSourceError,
)
from ..redact import mask_secrets, remember_source
from . import Gst

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtspt", "http", "https")
MAX_TEST_SIDE = 8192  # a test pattern's largest width and height (8K; a larger one only eats memory)
MAX_TEST_FPS = 1000
TEST_PATTERNS = ("smpte", "ball", "snow", "black", "white", "gradient", "checkers-8", "colors", "smpte100")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A parsed source string: the GStreamer description of its first part and how to treat it."""

    text: str
    kind: str  # "file", "network", "v4l2", "test"
    description: str
    path: Path | None = None
    live: bool = False


def _parse_test_uri(text: str) -> SourceSpec:
    parts = _split(text)
    pattern = parts.netloc or "smpte"
    if pattern not in TEST_PATTERNS:
        raise UnsupportedSourceError(f"{text}: unknown test pattern {pattern!r} (known: {', '.join(TEST_PATTERNS)})")
    query = dict(urllib.parse.parse_qsl(parts.query))
    try:
        width = int(query.pop("width", 640))
        height = int(query.pop("height", 480))
        fps = float(query.pop("fps", 30))
        frames = int(query.pop("frames", 300))
        live = query.pop("live", "0").lower() in ("1", "true", "yes")
    except ValueError as exc:
        raise UnsupportedSourceError(f"{text}: bad test source parameter ({exc})") from None
    if query:
        raise UnsupportedSourceError(
            f"{text}: unknown test source parameter(s) {', '.join(query)} (known: width, height, fps, frames, live)"
        )
    if not (1 <= width <= MAX_TEST_SIDE and 1 <= height <= MAX_TEST_SIDE):
        raise UnsupportedSourceError(f"{text}: width and height must be 1 to {MAX_TEST_SIDE}, got {width}x{height}")
    if not 0 < fps <= MAX_TEST_FPS:
        raise UnsupportedSourceError(f"{text}: fps must be above 0 and at most {MAX_TEST_FPS}, got {fps:g}")
    rate = Gst.util_double_to_fraction(fps)
    description = (
        f"videotestsrc pattern={pattern} num-buffers={frames} is-live={str(live).lower()} "
        f"! video/x-raw,width={width},height={height},framerate={rate[0]}/{rate[1]}"
    )
    return SourceSpec(text, "test", description, live=live)


_SPECIAL = (
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
)
_PSEUDO = ("/proc/", "/sys/")  # the kernel's files: their size says nothing, reading them may never end


def _check_file(text: str, path: Path) -> None:
    """One line naming ``text`` and the cause when the file cannot be a video (never an OSError)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SourceNotFoundError(f"{text}: no such file") from None
    except OSError as exc:  # a name too long, a loop of links, a folder that cannot be searched...
        raise SourceNotFoundError(f"{text}: cannot open ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise SourceNotFoundError(f"{text}: is a directory, not a video file")
    for test, kind in _SPECIAL:
        if test(mode):
            raise NotAVideoError(f"{text}: not a regular file ({kind})")
    if str(path.resolve()).startswith(_PSEUDO):
        raise NotAVideoError(f"{text}: not a regular file (a kernel pseudo-file)")
    if not os.access(path, os.R_OK):
        raise SourceNotFoundError(f"{text}: permission denied")
    if path.stat().st_size == 0:
        raise NotAVideoError(f"{text}: the file is empty (0 bytes)")
    if _mp4_lacks_index(path):
        raise TruncatedSourceError(
            f"{text}: MP4 without its index ('moov' box missing: the file was cut off before it was "
            "finalised); no frame can be decoded"
        )


def parse_source(source: str | os.PathLike) -> SourceSpec:
    """Parse a source string: a path, ``file://``, ``rtsp://``, ``http(s)://``, ``/dev/videoN`` or
    ``testsrc://PATTERN?width=W&height=H&fps=F&frames=N&live=0``."""
    text = os.fspath(source)
    if not text.strip():  # (an empty path would name the current folder)
        raise SourceNotFoundError(f"{text!r}: an empty source; give a file path or a URL")
    scheme = _split(text).scheme.lower() if "://" in text else ""
    if scheme == "testsrc":
        return _parse_test_uri(text)
    if scheme in NETWORK_SCHEMES:
        live = scheme.startswith("rtsp")  # http(s) serves files (or HLS/DASH, which pace themselves)
        remember_source(text)
        shown = mask_secrets(text)  # messages name the source without its password
        if not _host(shown):
            raise UnsupportedSourceError(f"{shown}: no host in the URL (expected {scheme}://HOST[:PORT]/PATH)")
        return SourceSpec(shown, "network", f"uridecodebin name=decode uri={_quote(text)}", live=live)
    if scheme and scheme != "file":
        raise UnsupportedSourceError(
            f"{text}: unsupported source scheme {scheme!r} "
            "(use a file path, file://, rtsp://, http(s)://, /dev/videoN or testsrc://)"
        )
    path = Path(urllib.parse.unquote(_split(text).path)) if scheme == "file" else Path(text)
    if text.startswith("/dev/video"):
        if not path.exists():
            raise StreamUnreachableError(f"{text}: no such video device")
        return SourceSpec(text, "v4l2", f"v4l2src device={text} ! decodebin name=decode", path=path, live=True)
    _check_file(text, path)
    uri = Gst.filename_to_uri(str(path.resolve()))
    return SourceSpec(text, "file", f"uridecodebin name=decode uri={_quote(uri)}", path=path)


def source_path(source: str | os.PathLike) -> Path | None:
    """The local file a source string names (a path or ``file://`` URI), else None. No checks."""
    text = os.fspath(source)
    scheme = _split(text).scheme.lower() if "://" in text else ""
    if scheme == "file":
        return Path(urllib.parse.unquote(_split(text).path))
    if scheme or text.startswith("/dev/"):
        return None
    return Path(text)


def _split(text: str) -> urllib.parse.SplitResult:
    """``urlsplit``, with :class:`UnsupportedSourceError` naming the source (masked) for a malformed URL."""
    try:
        return urllib.parse.urlsplit(text)
    except ValueError as exc:  # an unclosed '[' of an IPv6 address, a bad port...
        raise UnsupportedSourceError(f"{mask_secrets(text)}: not a valid URL ({exc})") from None


def _host(shown: str) -> str:
    """The host of a network URL with its password masked (the password may hold '/'); '' when none."""
    return _split(shown).hostname or ""


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mp4_lacks_index(path: Path) -> bool:
    """True for an ISO-BMFF (MP4/MOV) file whose top-level boxes hold no ``moov`` index."""
    try:
        with path.open("rb") as fh:
            size = path.stat().st_size
            pos, seen = 0, []
            while pos + 8 <= size:
                fh.seek(pos)
                box_size, box_type = struct.unpack(">I4s", fh.read(8))
                if box_size == 1:
                    box_size = struct.unpack(">Q", fh.read(8))[0]
                seen.append(box_type)
                if box_size < 8:
                    break
                pos += box_size
    except OSError:
        return False
    return bool(seen) and seen[0] == b"ftyp" and b"moov" not in seen
