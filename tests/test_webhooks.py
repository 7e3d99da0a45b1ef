"""Webhooks (issue 34): events POSTed as signed JSON to a real HTTP receiver on 127.0.0.1 (http.server in
a thread), retried with back-off while it is down, a bounded queue that never blocks the pipeline."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import SAMPLE
from serve_helpers import Served, free_port

from vidpipe.serve.config import ConfigError, load_config
from vidpipe.serve.webhooks import WebhookConfig, Webhooks
from vidpipe.types import Event

SECRET = "hook-secret-1"


class Receiver:
    """A real HTTP server on 127.0.0.1 that keeps each POST and checks its signature."""

    def __init__(self, port: int | None = None, status: int = 200, location: str | None = None) -> None:
        self.port = port or free_port()
        self.status = status
        self.location = location  # sent with the answer (a redirect)
        self.got: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                receiver.got.append(
                    {
                        "path": self.path,
                        "event": json.loads(body),
                        "signed": hmac.compare_digest(self.headers.get("X-Vidpipe-Signature", ""), expected),
                        "kind": self.headers.get("X-Vidpipe-Event"),
                        "auth": self.headers.get("Authorization"),
                        "type": self.headers.get("Content-Type"),
                    }
                )
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # (a followed redirect arrives as a GET)
                receiver.got.append({"path": self.path, "auth": self.headers.get("Authorization")})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, n: int, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.got) >= n, f"{len(self.got)} of {n} requests in {timeout} s: {self.got}"
        return self.got

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _event(i: int, kind: str = "zone_entered") -> Event:
    return Event("cam", kind, f"person {i} entered desk", 1.0 + i, {"zone": "desk", "track_id": i, "label": "person"})


def test_events_are_signed_json_with_basic_auth_from_the_url(caplog):
    receiver = Receiver()
    url = f"http://alice:pa55word@127.0.0.1:{receiver.port}/hook"
    hooks = Webhooks([WebhookConfig(url=url, secret=SECRET, events=["zone_entered", "loitering"])])
    hooks.start()
    try:
        for i in range(3):
            hooks.event(_event(i))
        hooks.event(_event(9, "line_crossed"))  # not asked for
        got = receiver.wait(3)
    finally:
        hooks.close()
        receiver.close()
    assert [g["event"]["track_id"] for g in got] == [0, 1, 2]  # in order
    assert all(g["signed"] and g["kind"] == "zone_entered" and g["path"] == "/hook" for g in got)
    assert got[0]["event"] == {**_event(0).to_dict()} and got[0]["type"] == "application/json"
    assert got[0]["auth"] == "Basic YWxpY2U6cGE1NXdvcmQ="  # alice:pa55word
    assert len(got) == 3
    metrics = hooks.collector().collect()
    sent = next(m for m in metrics if m.name == "vidpipe_webhook_sent")
    assert (
        sent.samples[0].value == 3
        and sent.samples[0].labels["url"] == f"http://alice:***@127.0.0.1:{receiver.port}/hook"
    )


def test_a_receiver_that_is_down_then_comes_back_gets_every_event(caplog):
    caplog.set_level(logging.DEBUG, logger="vidpipe.serve.webhooks")
    port = free_port()
    url = f"http://bob:topsecret@127.0.0.1:{port}/in"
    hooks = Webhooks([WebhookConfig(url=url, secret=SECRET, retries=8, backoff=0.2, timeout=2)])
    hooks.start()
    receiver = None
    try:
        for i in range(3):
            hooks.event(_event(i))
        time.sleep(1.5)  # refused meanwhile: retried with back-off (0.2, 0.4, 0.8 s ...)
        receiver = Receiver(port)
        got = receiver.wait(3)
    finally:
        hooks.close()
        if receiver is not None:
            receiver.close()
    assert [g["event"]["track_id"] for g in got] == [0, 1, 2] and all(g["signed"] for g in got)
    hook = hooks.hooks[0]
    assert hook.retried >= 2 and hook.failed == 0 and hook.sent == 3
    assert "topsecret" not in caplog.text and "bob:***@" in caplog.text  # the URL masked in the logs


def test_a_full_queue_drops_the_oldest_counted_and_never_blocks(caplog):
    port = free_port()  # nobody there, and a long back-off: everything waits in the queue
    hooks = Webhooks([WebhookConfig(url=f"http://127.0.0.1:{port}/", retries=20, backoff=30, queue=5)])
    hooks.start()
    try:
        started = time.perf_counter()
        for i in range(2000):
            hooks.event(_event(i))
        took = time.perf_counter() - started
    finally:
        hooks.close(flush=0)
    assert took < 0.5, took
    hook = hooks.hooks[0]
    assert hook.dropped >= 2000 - 5 - 1 and len(hook.queue) <= 5
    assert [kind for kind, _ in hook.queue] == ["zone_entered"] * len(hook.queue)


def test_a_4xx_answer_is_not_retried():
    receiver = Receiver(status=400)
    hooks = Webhooks([WebhookConfig(url=f"http://127.0.0.1:{receiver.port}/", retries=5, backoff=0.1)])
    hooks.start()
    try:
        hooks.event(_event(1))
        receiver.wait(1)
        deadline = time.monotonic() + 5
        while hooks.hooks[0].failed == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        hooks.close()
        receiver.close()
    assert len(receiver.got) == 1 and hooks.hooks[0].failed == 1 and hooks.hooks[0].retried == 0


def test_a_redirect_is_not_followed_with_the_credentials(caplog):
    """A receiver answering 302 elsewhere: the event is not sent there (urllib would, as a GET carrying the
    URL's Basic credentials); it counts as not delivered, not retried, and the log says why."""
    elsewhere = Receiver()
    receiver = Receiver(status=302, location=f"http://127.0.0.1:{elsewhere.port}/elsewhere")
    url = f"http://alice:pa55word@127.0.0.1:{receiver.port}/hook"
    hooks = Webhooks([WebhookConfig(url=url, secret=SECRET, retries=3, backoff=0.1)])
    hooks.start()
    try:
        hooks.event(_event(1))
        receiver.wait(1)
        deadline = time.monotonic() + 5
        while hooks.hooks[0].failed == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # (a followed redirect would have arrived by now)
    finally:
        hooks.close()
        receiver.close()
        elsewhere.close()
    assert elsewhere.got == [], elsewhere.got
    assert len(receiver.got) == 1 and hooks.hooks[0].failed == 1 and hooks.hooks[0].retried == 0
    assert "HTTP 302 (a redirect: not followed)" in caplog.text


def test_a_process_wide_urllib_opener_does_not_reach_the_hooks(monkeypatch):
    """urllib's shared opener keeps the proxies of the environment at its first use (a library that
    fetched something through a proxy, long before): the hooks post through an opener of their own."""
    import urllib.request

    dead = urllib.request.build_opener(urllib.request.ProxyHandler({"http": "http://127.0.0.1:9"}))
    monkeypatch.setattr(urllib.request, "_opener", dead)
    receiver = Receiver()
    hooks = Webhooks([WebhookConfig(url=f"http://127.0.0.1:{receiver.port}/", retries=0)])
    hooks.start()
    try:
        hooks.event(_event(1))
        receiver.wait(1, timeout=10)
    finally:
        hooks.close()
        receiver.close()


def test_bad_webhooks_are_one_line_each(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("webhooks:\n  - {url: 'ftp://x/'}\n  - {url: 'http://h/', events: [zone_entred], timout: 3}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = "\n".join(caught.value.problems)
    assert "webhooks.0.url:" in text
    assert "webhooks.1.events.0:" in text and "'zone_entered'" in text
    assert "webhooks.1.timout: Extra inputs are not permitted; did you mean 'timeout'?" in text


@pytest.mark.slow
def test_the_service_posts_its_events_to_a_webhook(tmp_path):
    receiver = Receiver()
    config = (
        f"webhooks:\n  - {{url: 'http://u:p4ss@127.0.0.1:{receiver.port}/vidpipe', secret: {SECRET}, "
        "events: [zone_entered, line_crossed]}\n"
        f"streams:\n  lab:\n    uri: {SAMPLE}\n    loop: true\n    detect_fps: 10\n    track: true\n"
        "    lines: ['door=192,40,192,288']\n    zones: ['all=rel:0,0,1,0,1,1,0,1']\n"
    )
    served = Served(tmp_path, config).wait_ready()
    try:
        got = receiver.wait(1, timeout=60)
        metrics = served.client.get("/metrics").text
    finally:
        served.stop()
        receiver.close()
    first = got[0]
    assert first["signed"] and first["path"] == "/vidpipe" and first["event"]["stream"] == "lab"
    assert first["event"]["event"] in ("zone_entered", "line_crossed") and first["kind"] == first["event"]["event"]
    assert 'vidpipe_webhook_sent_total{hook="0",url="http://u:***@127.0.0.1:' in metrics
    assert "p4ss" not in metrics and "p4ss" not in served.output()
