"""What vidpipe shows of text it was given: control characters escaped (:func:`printable`), and secrets kept
out of every message: the password of a ``scheme://user:password@host`` URL, and the value
of a secret query parameter (``?user=admin&pwd=...``, as many cameras take it), are masked wherever vidpipe
shows a source (errors, events, logs, the summary, graphs, ``probe``). A password the URL rules cannot
delimit (a space or a double quote in it: not legal in a URL, but typed) is masked all the same once its
source has been seen whole (:func:`remember_source`)."""

from __future__ import annotations

import json
import re
import threading
import urllib.parse

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

_UNDELIMITED = re.compile(r"[\s\"<>\\]")  # what ends a password for the rules above
MAX_REMEMBERED = 10_000  # sources' passwords kept (a service adding streams for months stays bounded)
_remembered: dict[str, None] = {}  # ":password@" as given, percent-encoded and in JSON, oldest first
_lock = threading.Lock()


def remember_source(source: str) -> None:
    """Note the password of ``source``, a whole URL as given to vidpipe (a source, a stream's ``uri``), so
    that :func:`mask_secrets` masks it wherever it appears, even where it holds characters that end a URL
    in running text (``rtsp://admin:my pass@cam``, ``rtsp://admin:pa"ss@cam``)."""
    if "@" not in source or "://" not in source:
        return
    try:
        password = urllib.parse.urlsplit(source).password
    except ValueError:  # (an invalid URL: said as such where it is parsed)
        return
    plain = urllib.parse.unquote(password or "")  # (as a message may show it: %20 decoded)
    if not password or not _UNDELIMITED.search(password + plain):  # (the rules above mask it wherever it is)
        return
    with _lock:
        for form in {password, plain, urllib.parse.quote(plain, safe=""), json.dumps(plain)[1:-1]}:
            _remembered.pop(f":{form}@", None)
            _remembered[f":{form}@"] = None
        while len(_remembered) > MAX_REMEMBERED:
            del _remembered[next(iter(_remembered))]


def mask_secrets(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (``rtsp://admin:***@cam/s``), and
    the value of every secret query parameter (``http://cam/video.cgi?user=admin&pwd=***``)."""
    if "@" in text:
        if _remembered:
            with _lock:
                known = [form for form in _remembered if form in text]
            for form in sorted(known, key=len, reverse=True):  # (a longer password may hold a shorter one)
                text = text.replace(form, f":{MASK}@")
        text = _CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@", text)
    if "=" in text:
        text = _QUERY_SECRET.sub(lambda m: f"{m['head']}{MASK}" if m["value"] else m[0], text)
    return text


def printable(text: str) -> str:
    """``text`` with its control characters shown escaped (``\\x1b``, ``\\n``): a name given to vidpipe (a
    file called ESC[2J..., or one holding a newline) is shown on one line, never obeyed by the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
