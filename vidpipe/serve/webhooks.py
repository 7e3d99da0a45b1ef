"""Webhooks: each event a hook asks for is POSTed to its URL as JSON, signed, never in the pipeline's way.

The sink side only appends to each hook's bounded queue (the oldest event is dropped and counted when it
is full); a thread per hook delivers in order, retrying a failed delivery (a connection error, a timeout,
408, 425, 429 or 5xx) with back-off. With a ``secret`` each request carries ``X-Vidpipe-Signature:
sha256=<hex HMAC-SHA256(secret, body)>``. A URL's ``user:password@`` becomes a Basic ``Authorization``
header and is masked wherever the URL is shown.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Iterator
from typing import Annotated, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..redact import mask_secrets
from ..sinks.base import BaseSink
from ..types import Event

log = logging.getLogger(__name__)

EventKind = Literal[
    "line_crossed", "zone_entered", "zone_left", "loitering",
    "connected", "reconnected", "disconnected", "failed", "ended", "removed", "stopped",
]  # fmt: skip
DEFAULT_EVENTS = ["line_crossed", "zone_entered", "zone_left", "loitering"]
RETRY_STATUS = {408, 425, 429}  # and every 5xx
MAX_BACKOFF = 30.0


class WebhookConfig(BaseModel):
    """One webhook: where, which events, how it is signed, how long a request may take."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://\S+$", max_length=4096, description="http:// or https:// URL")
    events: list[EventKind] = Field(default_factory=lambda: list(DEFAULT_EVENTS), min_length=1)
    secret: str | None = Field(None, min_length=1, description="signs each body: X-Vidpipe-Signature")
    timeout: Annotated[float, Field(gt=0, le=60)] = 5.0
    retries: Annotated[int, Field(ge=0, le=20)] = 5
    backoff: Annotated[float, Field(gt=0, le=60)] = 0.5
    queue: Annotated[int, Field(ge=1, le=100_000)] = 1000

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not urllib.parse.urlsplit(value).hostname:
            raise ValueError(f"{mask_secrets(value)}: no host")
        return value


def sign(secret: str, body: bytes) -> str:
    """The ``X-Vidpipe-Signature`` of ``body``: ``sha256=`` and the hex HMAC-SHA256 with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _Hook:
    """One hook's queue and delivery thread."""

    def __init__(self, index: int, config: WebhookConfig, stop: threading.Event) -> None:
        self.config = config
        self.index = str(index)
        self.shown = mask_secrets(config.url)
        parts = urllib.parse.urlsplit(config.url)
        self.headers = {"Content-Type": "application/json", "User-Agent": "vidpipe-webhook"}
        if parts.username is not None or parts.password is not None:
            user = urllib.parse.unquote(parts.username or "")
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
            parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
        self.url = urllib.parse.urlunsplit(parts)
        # an opener of its own, with the proxy settings of the environment now (urllib's shared one keeps
        # those of its first use in the process, whatever they were then)
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler(), _NoRedirects())
        self.events = set(config.events)
        self.queue: deque[tuple[str, bytes]] = deque()
        self.cond = threading.Condition()
        self.stop = stop
        self.sent = self.failed = self.dropped = self.retried = 0
        self.busy = False
        self.thread = threading.Thread(target=self._run, name="vidpipe-webhook", daemon=True)

    def put(self, kind: str, body: bytes) -> None:
        with self.cond:
            if len(self.queue) >= self.config.queue:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append((kind, body))
            self.cond.notify()

    def _run(self) -> None:
        while not self.stop.is_set():
            with self.cond:
                if not self.queue:
                    self.cond.wait(timeout=0.5)
                    continue
                kind, body = self.queue.popleft()
                self.busy = True
            try:
                self._deliver(kind, body)
            finally:
                self.busy = False

    def _deliver(self, kind: str, body: bytes) -> None:
        headers = dict(self.headers, **{"X-Vidpipe-Event": kind})
        if self.config.secret:
            headers["X-Vidpipe-Signature"] = sign(self.config.secret, body)
        for attempt in range(self.config.retries + 1):
            if attempt:
                self.retried += 1
                delay = min(MAX_BACKOFF, self.config.backoff * 2 ** (attempt - 1))
                if self.stop.wait(delay):
                    break
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with self.opener.open(request, timeout=self.config.timeout) as response:
                    response.read(65536)
                self.sent += 1
                return
            except urllib.error.HTTPError as exc:
                why = f"HTTP {exc.code}" + (" (a redirect: not followed)" if 300 <= exc.code < 400 else "")
                if exc.code < 500 and exc.code not in RETRY_STATUS:
                    break
            except (OSError, ValueError) as exc:  # refused, unreachable, timed out, a broken answer
                why = str(getattr(exc, "reason", None) or exc)
            log.debug("webhook %s: %s (attempt %d)", self.shown, mask_secrets(why), attempt + 1)
        self.failed += 1
        log.warning("webhook %s: a %s event was not delivered (%s)", self.shown, kind, mask_secrets(why))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is the receiver's answer, not followed: urllib would send the event again, as a GET,
    with its ``Authorization`` and signature, to whatever host the ``Location`` names."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # (urllib's signature)
        return None


class Webhooks(BaseSink):
    """The service's webhooks: a sink whose :meth:`event` only queues."""

    def __init__(self, configs: list[WebhookConfig]) -> None:
        self._stop = threading.Event()
        self.hooks = [_Hook(i, config, self._stop) for i, config in enumerate(configs)]
        self._closed = False

    def start(self) -> None:
        for hook in self.hooks:
            hook.thread.start()

    def event(self, event: Event) -> None:
        wanted = [hook for hook in self.hooks if event.kind in hook.events]
        if not wanted:
            return
        body = mask_secrets(json.dumps(event.to_dict(), separators=(",", ":"), default=str)).encode()
        for hook in wanted:
            hook.put(event.kind, body)

    def close(self, flush: float = 2.0, join: float = 1.0) -> None:
        """Deliver what is queued (for up to ``flush`` seconds), then stop the threads, waiting ``join``
        seconds in all (not per hook) for the requests in flight; what is left undelivered is said."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + flush
        while any(hook.queue or hook.busy for hook in self.hooks) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        for hook in self.hooks:
            with hook.cond:
                hook.cond.notify_all()
        deadline = time.monotonic() + join
        for hook in self.hooks:  # a request in flight past the deadline is left to its daemon thread
            if hook.thread.is_alive():
                hook.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for hook in self.hooks:
            left = len(hook.queue) + hook.busy
            if left:
                log.warning("webhook %s: %d event(s) not delivered at the stop", hook.shown, left)

    def collector(self) -> Collector:
        return _HookCollector(self)


class _HookCollector(Collector):
    def __init__(self, webhooks: Webhooks) -> None:
        self._webhooks = webhooks

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator:
        sent = CounterMetricFamily("vidpipe_webhook_sent", "Events a webhook delivered", labels=["hook", "url"])
        failed = CounterMetricFamily(
            "vidpipe_webhook_failed", "Events a webhook gave up on after its retries", labels=["hook", "url"]
        )
        dropped = CounterMetricFamily(
            "vidpipe_webhook_dropped", "Events dropped from a webhook's full queue", labels=["hook", "url"]
        )
        retried = CounterMetricFamily("vidpipe_webhook_retries", "Deliveries tried again", labels=["hook", "url"])
        queued = GaugeMetricFamily("vidpipe_webhook_queue", "Events waiting for a webhook", labels=["hook", "url"])
        for hook in self._webhooks.hooks:
            sent.add_metric([hook.index, hook.shown], hook.sent)
            failed.add_metric([hook.index, hook.shown], hook.failed)
            dropped.add_metric([hook.index, hook.shown], hook.dropped)
            retried.add_metric([hook.index, hook.shown], hook.retried)
            queued.add_metric([hook.index, hook.shown], len(hook.queue))
        yield from (sent, failed, dropped, retried, queued)
