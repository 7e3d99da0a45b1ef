"""Real parts for the service's tests: ``vidpipe serve`` in a subprocess, a mosquitto broker on a free
port, an MQTT listener (paho), JSON Lines readers."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``vidpipe serve`` running in a subprocess; ``client`` talks to it."""

    def __init__(self, folder: Path, config: str | None = None, *args: str, token: str | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.config = None
        if config is not None:
            self.config = folder / "vidpipe.yaml"
            self.config.write_text(config)
        exe = Path(sys.executable).with_name("vidpipe")
        command = [str(exe), "serve", "--port", str(self.port), *args]
        if self.config is not None:
            command += ["--config", str(self.config)]
        self.log = open(folder / "serve.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(command, cwd=folder, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30, headers=headers)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 120) -> Served:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve ended early ({self.proc.returncode}): {self.output()}")
            try:
                if self.client.get("/healthz").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"serve did not start: {self.output()}")

    def stream(self, name: str) -> dict:
        return self.client.get(f"/api/streams/{name}").json()

    def wait_frames(self, name: str, frames: int, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.client.get(f"/api/streams/{name}")
            if response.status_code == 200 and response.json()["frames"] >= frames:
                return response.json()
            time.sleep(0.2)
        raise AssertionError(f"stream {name}: fewer than {frames} frames in {timeout} s: {response.text}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.client.close()
            self.log.close()

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.folder / "serve.log").read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.client.close()
        self.log.close()


class Broker:
    """A real mosquitto on 127.0.0.1 and a free port; ``restart()`` keeps the port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="mosquitto-"))
        (self.folder / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [exe, "-c", str(self.folder / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("mosquitto did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


class Listener:
    """Subscribes to ``vidpipe/#`` and keeps every message (topic, payload, retained)."""

    def __init__(self, port: int, topic: str = "vidpipe/#") -> None:
        self.messages: list[tuple[str, str, bool, float]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _client, _userdata, message) -> None:
        with self._lock:
            payload = message.payload  # text, or (a snapshot) JPEG bytes, kept as bytes
            text = payload if payload.startswith(b"\xff\xd8") else payload.decode()
            self.messages.append((message.topic, text, message.retain, time.time()))

    def on(self, topic: str) -> list[tuple[str, str, bool, float]]:
        with self._lock:
            return [m for m in self.messages if m[0] == topic]

    def wait_for(self, topic: str, predicate=lambda payload: True, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, payload, _, _ in self.on(topic):
                if predicate(payload):
                    return payload
            time.sleep(0.1)
        seen = sorted({m[0] for m in self.messages})
        raise AssertionError(f"no message on {topic} in {timeout} s; topics seen: {seen}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def recordings(folder: Path, stream: str, ext: str) -> list[Path]:
    return sorted((folder / stream).glob(f"*{ext}"))
