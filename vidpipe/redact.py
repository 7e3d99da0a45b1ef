"""Secrets kept out of every message: the password of a ``scheme://user:password@host`` URL, and the value
of a secret query parameter (``?user=admin&pwd=...``, as many cameras take it), are masked wherever vidpipe
shows a source (errors, events, logs, the summary, graphs, ``probe``)."""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@host — the password runs to the last '@' of the URL, the one before the host: it
# may hold '@', '#', ':', '/' or "'", and the user name the apostrophe RFC 3986 allows there too (a URL ends
# at whitespace, a double quote or an angle bracket; a backslash escapes the next character, as JSON's \" does)
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@\"<>]*):(?P<password>(?:[^\s\"<>\\]|\\\S)*)@")
# ?pwd=... &password=... &token=...: a query parameter whose name says it holds a secret
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&](?:[A-Za-z0-9_.-]*[_.-])?(?:password|passwd|passwort|pwd|pass|pw|secret|token|api_?key|apikey"
    r"|key|auth|authorization|sig|signature|credentials?)=)(?P<value>(?:[^&\s\"<>#\\]|\\\S)*)",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (``rtsp://admin:***@cam/s``), and
    the value of every secret query parameter (``http://cam/video.cgi?user=admin&pwd=***``)."""
    if "@" in text:
        text = _CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@", text)
    if "=" in text:
        text = _QUERY_SECRET.sub(lambda m: f"{m['head']}{MASK}" if m["value"] else m[0], text)
    return text


def printable(text: str) -> str:
    """``text`` with its control characters shown escaped (``\\x1b``, ``\\r``): a name given to vidpipe
    (a file called ESC[2J...) is shown, never obeyed by the terminal. Newlines stay: a configuration's
    problems are one a line."""
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)
