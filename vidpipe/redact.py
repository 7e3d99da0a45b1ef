"""Secrets kept out of every message: the password of a ``scheme://user:password@host`` URL is masked
wherever vidpipe shows a source (errors, events, logs, the summary, graphs, ``probe``)."""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@host — the password runs to the last '@' of the URL, the one before the host: it
# may hold '@', '#', ':' or '/'; it and the user name may hold the apostrophe RFC 3986 allows there (a URL
# ends at whitespace, a double quote or an angle bracket)
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@\"<>]*):(?P<password>[^\s\"<>]*)@")


def mask_secrets(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (``rtsp://admin:***@cam/s``)."""
    if "@" not in text:
        return text
    return _CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@", text)
