"""Home Assistant MQTT discovery and per-stream event topics (issue 34), with the real mosquitto the
service tests start: retained configs with unique ids, a device per stream, availability; the states
HA would show, rendered from the retained counts with the configs' own templates (jinja2, as HA does);
a removed stream's configs cleared."""

from __future__ import annotations

import json
import time

import pytest
from conftest import SAMPLE
from serve_helpers import Broker, Listener, Served

from vidpipe.serve.config import MqttConfig
from vidpipe.serve.discovery import Discovery

jinja2 = pytest.importorskip("jinja2")  # Home Assistant's template language
pytestmark = pytest.mark.slow

PATTERN = "testsrc://ball?live=1&frames=100000000&width=320&height=240&fps=10"


def _render(template: str, payload: str) -> str:
    return jinja2.Environment().from_string(template).render(value_json=json.loads(payload)).strip()


def _latest(listener: Listener, prefix: str) -> dict[str, str]:
    """Each topic under ``prefix`` and its last payload."""
    latest: dict[str, str] = {}
    for topic, payload, _, _ in list(listener.messages):
        if topic.startswith(prefix):
            latest[topic] = payload
    return latest


def test_a_replaced_stream_clears_the_configs_it_no_longer_has():
    discovery = Discovery(MqttConfig(host="h"))
    first = dict(discovery.added("cam", ["door=1,2,3,4"], ["desk=0,0,1,0,1,1", "till 2=0,0,1,0,1,1"]))
    assert len(first) == 2 + 2 + 2 + 1 and all(payload for payload in first.values())  # (+1: person present)
    again = discovery.added("cam", [], ["desk=0,0,1,0,1,1"])
    cleared = {topic for topic, payload in again if payload == ""}
    assert cleared == {t for t in first if "door" in t or "till" in t}
    assert all("till_2_" in t for t in first if "till" in t)  # an unsafe name is made safe (and kept apart)
    assert {t for t, _ in discovery.removed("cam")} == {t for t, p in again if p}


def test_home_assistant_discovers_each_stream_and_forgets_a_removed_one(tmp_path):
    broker = Broker()
    listener = Listener(broker.port, "#")
    config = (
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}}}\n"
        f"streams:\n  lab:\n    uri: {SAMPLE}\n    loop: true\n    detect_fps: 10\n    track: true\n"
        "    lines: ['door=192,40,192,288']\n    zones: ['desk=0,150,150,150,150,288,0,288']\n"
        f"  pattern: {{uri: '{PATTERN}', detect_fps: 2, zones: ['all=rel:0,0,1,0,1,1,0,1']}}\n"
    )
    served = Served(tmp_path, config).wait_ready()
    try:
        listener.wait_for("homeassistant/binary_sensor/vidpipe_vidpipe_lab_zone_desk_occupied/config")
        listener.wait_for("vidpipe/lab/status", lambda p: p and json.loads(p)["state"] == "running")
        configs = {t: json.loads(p) for t, p in _latest(listener, "homeassistant/").items() if p}
        lab = {t: c for t, c in configs.items() if c["device"]["name"] == "vidpipe lab"}
        own = {"person present", "last event"}  # each stream's: presence, and a camera with the last snapshot
        assert {c["name"] for c in lab.values()} == {"door in", "door out", "desk occupancy", "desk occupied"} | own
        assert len({c["unique_id"] for c in configs.values()}) == len(configs) == 6 + 4  # pattern: 'all' zone
        assert len({json.dumps(c["device"]) for c in configs.values()}) == 2  # one device per stream
        for topic, c in lab.items():
            assert topic == f"homeassistant/{topic.split('/')[1]}/{c['unique_id']}/config"
            assert c["availability_mode"] == "all"
            assert [a["topic"] for a in c["availability"]] == ["vidpipe/available", "vidpipe/lab/status"]
            if c["name"] not in own:
                assert c["state_topic"] == "vidpipe/lab/counts"
        camera = next(t for t, c in lab.items() if c["name"] == "last event")
        assert camera.startswith("homeassistant/camera/") and lab[camera]["topic"] == "vidpipe/lab/snapshot"
        assert "state_topic" not in lab[camera]
        present = next(c for c in lab.values() if c["name"] == "person present")
        assert present["state_topic"] == "vidpipe/lab/present" and present["device_class"] == "presence"
        retained = {t for t, _, r, _ in listener.messages if r and t.startswith("homeassistant/")}
        late = Listener(broker.port, "homeassistant/#")  # retained: HA starting later finds them all
        try:
            deadline = time.monotonic() + 10
            while len({m[0] for m in late.messages}) < len(configs) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert {m[0] for m in late.messages if m[2]} == set(configs), retained
        finally:
            late.close()
        # Home Assistant restarts: its birth message has every config published again
        before = len(listener.messages)
        listener.client.publish("homeassistant/status", "online", qos=1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            again = {m[0] for m in listener.messages[before:] if m[0].endswith("/config") and m[1]}
            if again == set(configs):
                break
            time.sleep(0.1)
        assert again == set(configs)
        # the states HA shows, rendered with the configs' templates from the retained counts and status
        status = listener.wait_for("vidpipe/lab/status", lambda p: bool(p))
        occupied = next(c for c in lab.values() if c["name"] == "desk occupied")
        assert _render(occupied["availability"][1]["value_template"], status) == "online"
        counts = listener.wait_for("vidpipe/lab/counts", lambda p: json.loads(p)["lines"]["door"]["in"] >= 1, 60)
        door_in = next(c for c in lab.values() if c["name"] == "door in")
        assert int(_render(door_in["value_template"], counts)) == json.loads(counts)["lines"]["door"]["in"]
        entered = listener.wait_for("vidpipe/lab/counts", lambda p: json.loads(p)["zones"]["desk"]["occupancy"] > 0, 60)
        assert _render(occupied["value_template"], entered) == "ON"
        occupancy = next(c for c in lab.values() if c["name"] == "desk occupancy")
        assert int(_render(occupancy["value_template"], entered)) >= 1
        zero = listener.on("vidpipe/pattern/counts")[0][1]  # counts from the start: the sensors are 0, not unknown
        pattern_zone = next(c for c in configs.values() if c["name"] == "all occupied")
        assert _render(pattern_zone["value_template"], zero) == "OFF"
        # someone present: the binary sensor's state; the last event's snapshot: the camera's picture
        seen = listener.wait_for("vidpipe/lab/present", lambda p: "person" in json.loads(p)["present"], 60)
        assert _render(present["value_template"], seen) == "ON"
        nobody = listener.on("vidpipe/pattern/present")[-1][1]  # a test pattern: no person
        assert _render(present["value_template"], nobody) == "OFF"
        picture = listener.wait_for("vidpipe/lab/snapshot", lambda p: isinstance(p, bytes), 60)
        assert picture.startswith(b"\xff\xd8") and picture.endswith(b"\xff\xd9") and len(picture) > 2000
        # per-stream event topics beside the shared one
        crossed = json.loads(
            listener.wait_for("vidpipe/lab/events", lambda p: json.loads(p)["event"] == "line_crossed")
        )
        assert crossed["stream"] == "lab" and any(
            json.loads(p) == crossed for _, p, _, _ in listener.on("vidpipe/events")
        )
        assert all(json.loads(p)["stream"] == "pattern" for _, p, _, _ in listener.on("vidpipe/pattern/events"))
        # a removed stream's configs are cleared (empty retained payloads)
        assert served.client.delete("/api/streams/lab").status_code == 204
        for topic in lab:
            listener.wait_for(topic, lambda p: p == "", 10)
        late = Listener(broker.port, "homeassistant/#")
        try:
            time.sleep(1.0)
            assert {m[0] for m in late.messages if m[1]} == set(configs) - set(lab)
        finally:
            late.close()
    finally:
        served.stop()
        listener.close()
        broker.close()


def test_discovery_can_be_turned_off(tmp_path):
    broker = Broker()
    listener = Listener(broker.port, "#")
    config = (
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}, discovery: false}}\n"
        f"streams:\n  pattern: {{uri: '{PATTERN}', detect_fps: 2, zones: ['all=rel:0,0,1,0,1,1,0,1']}}\n"
    )
    served = Served(tmp_path, config).wait_ready()
    try:
        listener.wait_for("vidpipe/pattern/counts")
        time.sleep(0.5)
        assert not [m for m in listener.messages if m[0].startswith("homeassistant/")]
    finally:
        served.stop()
        listener.close()
        broker.close()


def test_a_restarted_broker_gets_every_stream_s_retained_state_again():
    """A broker restarted without persistence has lost its retained messages: once reconnected the
    service publishes each stream's status, counts, who is present and the last snapshot again, so Home
    Assistant's sensors and camera are not left empty until the next change."""
    import torch

    from vidpipe.serve.mqtt import MqttPublisher
    from vidpipe.types import Detections, Event, Frame, Result

    broker = Broker()
    counts = {"zones": {"all": {"inside": 1, "entered": 1, "left": 0}}}
    publisher = MqttPublisher(MqttConfig(host="127.0.0.1", port=broker.port), stats=dict, counts=lambda _s: counts)
    person = Detections(torch.tensor([[1.0, 2.0, 30.0, 60.0]]), torch.tensor([0.9]), torch.tensor([1]), ["person"])
    picture = b"\xff\xd8 a snapshot"
    expected = {
        "vidpipe/door/status": lambda p: json.loads(p)["state"] == "running",
        "vidpipe/door/counts": lambda p: json.loads(p)["zones"]["all"]["inside"] == 1,
        "vidpipe/door/present": lambda p: json.loads(p)["present"] == ["person"],
        "vidpipe/door/snapshot": lambda p: p == picture,
    }
    publisher.start()
    listener = Listener(broker.port)
    try:
        publisher.event(Event("door", "connected", "door: connected"))
        publisher.added("door", [], [])
        publisher.write(Result(Frame(torch.zeros((64, 64, 3), dtype=torch.uint8), 0, 0.0, "door", time.time()), person))
        publisher.snapshot("door", picture)
        for topic, check in expected.items():
            listener.wait_for(topic, check, timeout=15)
        broker.kill()
        broker.start()  # (the same port, nothing retained)
        listener.close()
        listener = Listener(broker.port)
        for topic, check in expected.items():
            listener.wait_for(topic, check, timeout=40)
        listener.close()
        listener = Listener(broker.port)  # one that subscribes later (Home Assistant starting) gets them retained
        for topic, check in expected.items():
            listener.wait_for(topic, check, timeout=10)
            assert all(retained for _, _, retained, _ in listener.on(topic)), topic
    finally:
        listener.close()
        publisher.close()
        broker.close()


def test_people_who_left_while_the_broker_was_down_are_not_left_present(tmp_path):
    """The broker killed while a person is in view, the person leaves while it is down, the broker comes
    back on its port (nothing retained): the service announces every config again, ``present`` is the
    state now (no one: Home Assistant's sensor OFF, not stuck ON) and ``snapshot`` the last event's."""
    from conftest import start_server
    from scenes import scene

    fps = 10
    clip = scene(tmp_path / "leaves.mp4", [[(120.0, 270.0)] * (8 * fps) + [None] * (120 * fps)], fps)
    server, url = start_server("--clip", str(clip))
    broker = Broker()
    listener = Listener(broker.port, "#")
    config = (
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}}}\noutput_dir: out\n"
        f"streams:\n  lab:\n    uri: '{url.replace('/test', '/clip')}'\n    detect_fps: 5\n    track: true\n"
        "    zones: ['all=rel:0,0,1,0,1,1,0,1']\n"
    )
    served = Served(tmp_path, config).wait_ready()
    try:
        listener.wait_for("vidpipe/lab/present", lambda p: "person" in json.loads(p)["present"], 60)
        listener.wait_for("vidpipe/lab/snapshot", lambda p: isinstance(p, bytes), 30)
        configs = {t for t, p, _, _ in listener.messages if t.startswith("homeassistant/") and p}
        assert any("person_present" in t for t in configs) and any("last_event" in t for t in configs)
        broker.kill()
        listener.close()
        deadline = time.monotonic() + 60  # the person leaves the picture 8 s into the clip
        while not served.client.get("/api/events?type=zone_left").json():  # (lost from view: no snapshot)
            assert time.monotonic() < deadline, served.output()[-2000:]
            time.sleep(0.5)
        time.sleep(4)  # (presence holds 2 s)
        broker.start()  # the same port, nothing retained
        listener = Listener(broker.port, "#")
        listener.wait_for("vidpipe/lab/present", timeout=40)
        time.sleep(3)  # whatever was queued while the broker was down arrives too
        latest = _latest(listener, "")
        assert json.loads(latest["vidpipe/lab/present"])["present"] == []
        last = served.client.get("/api/events?stream=lab").json()
        last = next(e for e in last if e["snapshot"])
        picture = served.client.get(f"/api/events/{last['id']}/snapshot.jpg").content
        assert latest["vidpipe/lab/snapshot"] == picture, "the retained snapshot is not the last event's"
        assert configs <= set(latest)  # every config announced again
        late = Listener(broker.port, "#")  # subscribing now (Home Assistant starting): the retained states
        try:
            present = late.wait_for("vidpipe/lab/present", timeout=10)
            assert json.loads(present)["present"] == [] and late.on("vidpipe/lab/present")[0][2] is True
            assert late.wait_for("vidpipe/lab/snapshot", timeout=10) == picture
        finally:
            late.close()
    finally:
        served.stop()
        listener.close()
        broker.close()
        server.kill()
        server.wait(10)
