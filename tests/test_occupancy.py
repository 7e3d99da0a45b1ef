"""Occupancy and loitering (issue 34): how many are in each zone now, per label; one ``loitering``
event per track and visit; the service's configuration checks loitering against the stream's zones."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import SAMPLE
from pydantic import ValidationError
from serve_helpers import Broker, Listener, Served

from vidpipe.analytics import ZoneCounter, parse_zone
from vidpipe.errors import VidpipeError
from vidpipe.serve.config import StreamConfig
from vidpipe.types import Detections, Frame, Result

pytest.importorskip("trackers")

BLANK = torch.zeros((480, 640, 3), dtype=torch.uint8)
ZONE = "desk=100,0,300,0,300,480,100,480"


def _result(index: int, boxes: list[tuple[float, str, int]], fps: float = 10.0) -> Result:
    """Boxes 40x100 whose bottom centres are at (x, 300), each with its label and track id."""
    n = len(boxes)
    found = Detections(
        torch.tensor([[x - 20, 200, x + 20, 300] for x, _, _ in boxes], dtype=torch.float32).reshape(n, 4),
        torch.full((n,), 0.9),
        torch.ones(n, dtype=torch.int64),
        [label for _, label, _ in boxes],
        torch.tensor([track for _, _, track in boxes], dtype=torch.int64),
    )
    return Result(Frame(BLANK, index, index / fps, "cam"), found)


def test_occupancy_per_label_now():
    zone = ZoneCounter([ZONE], min_frames=1)
    zone(_result(0, [(200, "person", 1), (150, "person", 2), (250, "dog", 3), (50, "person", 4)]))
    assert zone.totals()["desk"] == {
        "entered": 3, "left": 0, "peak": 3, "occupancy": 3, "labels": {"person": 2, "dog": 1}
    }  # fmt: skip
    zone(_result(1, [(350, "person", 1), (150, "person", 2), (250, "dog", 3)]))
    zone(_result(2, [(350, "person", 1), (150, "person", 2), (350, "dog", 3)]))
    assert zone.totals()["desk"]["occupancy"] == 1 and zone.totals()["desk"]["labels"] == {"person": 1}
    zone(_result(3, [(350, "person", 2)]))
    assert zone.totals()["desk"]["occupancy"] == 0 and zone.totals()["desk"]["labels"] == {}


def test_loitering_is_one_event_per_track_and_visit():
    zone = ZoneCounter([dataclasses.replace(parse_zone(ZONE), loiter=2.0)], min_frames=1)
    # track 7 stays 3.5 s (one event at 2 s), leaves, comes back for 1 s (none), then 2.5 s (one more);
    # track 8 walks through in 1 s (none)
    path = [200] * 35 + [350] * 5 + [200] * 10 + [350] * 5 + [200] * 25
    events = []
    for i, x in enumerate(path):
        boxes = [(x, "person", 7)] + ([(110 + 20 * i, "person", 8)] if i < 10 else [])
        events += [(i, e.kind, e.fields["track_id"], e.fields.get("dwell")) for e in zone(_result(i, boxes)).events]
    loiter = [e for e in events if e[1] == "loitering"]
    assert loiter == [(20, "loitering", 7, 2.0), (75, "loitering", 7, 2.0)], events
    assert zone.totals()["desk"]["loitering"] == 2
    left = [e for e in events if e[1] == "zone_left" and e[2] == 7]
    assert [round(e[3], 1) for e in left] == [3.5, 1.0]  # zone_left carries dwell seconds


def test_a_bad_loitering_time_is_refused():
    with pytest.raises(VidpipeError, match="loitering needs a time above 0"):
        dataclasses.replace(parse_zone(ZONE), loiter=0)


def test_the_config_checks_loitering_against_the_streams_zones():
    spec = StreamConfig(uri="x", zones=[ZONE, "door=0,0,10,0,10,10"], loitering={"desk": 30})
    shapes = {zone.name: zone.loiter for zone in spec.zone_shapes()}
    assert shapes == {"desk": 30.0, "door": None}
    with pytest.raises(ValidationError, match="loitering: 'till' is not one of this stream's zones"):
        StreamConfig(uri="x", zones=[ZONE], loitering={"till": 30})
    with pytest.raises(ValidationError, match="must be a number above 0, got 0"):
        StreamConfig(uri="x", zones=[ZONE], loitering={"desk": 0})


# -- in the service: API, MQTT (a real mosquitto) and metrics ------------------------------------------


def _metric(text: str, name: str, **labels: str) -> float | None:
    want = [f'{key}="{value}"' for key, value in labels.items()]
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(part in line.split("}")[0] for part in want):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.slow
def test_occupancy_loitering_and_dwell_in_the_service(tmp_path):
    broker = Broker()
    listener = Listener(broker.port)
    config = (
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}}}\n"
        f"streams:\n  lab:\n    uri: {SAMPLE}\n    loop: true\n    detect_fps: 10\n    track: true\n"
        "    zones: ['desk=0,150,150,150,150,288,0,288', 'all=rel:0,0,1,0,1,1,0,1']\n"
        "    loitering: {all: 1.5}\n"
    )
    served = Served(tmp_path, config).wait_ready()
    try:
        metrics = served.client.get("/metrics").text  # every zone's series from the start, 0 while empty
        assert _metric(metrics, "vidpipe_zone_occupancy", stream="lab", zone="desk") is not None, metrics
        loiter = json.loads(listener.wait_for("vidpipe/events", lambda p: json.loads(p)["event"] == "loitering", 60))
        assert loiter["zone"] == "all" and loiter["label"] == "person" and loiter["dwell"] >= 1.5
        assert loiter["loiter"] == 1.5
        mine = [json.loads(p) for _, p, _, _ in listener.on("vidpipe/events") if json.loads(p)["event"] == "loitering"]
        assert len({e["track_id"] for e in mine}) == len(mine)  # one per track and visit
        counts = json.loads(listener.wait_for("vidpipe/lab/counts", lambda p: "occupancy" in p))
        assert counts["zones"]["all"]["occupancy"] >= 0 and "labels" in counts["zones"]["all"]
        late = Listener(broker.port, "vidpipe/lab/counts")  # retained: a new subscriber has it at once
        try:
            late.wait_for("vidpipe/lab/counts", timeout=5)
            assert late.on("vidpipe/lab/counts")[0][2] is True
        finally:
            late.close()
        api = served.stream("lab")["counts"]["zones"]
        bad = {"uri": str(SAMPLE), "zones": ["desk=0,150,150,150,150,288,0,288"], "loitering": {"till": 5}}
        refused = served.client.put("/api/streams/other", json=bad)  # the API's bodies share the model
        assert refused.status_code == 422 and "'till' is not one of this stream's zones" in refused.text
        assert set(api) == {"desk", "all"} and api["all"]["loitering"] >= 1 and "occupancy" in api["desk"]
        left = json.loads(listener.wait_for("vidpipe/events", lambda p: json.loads(p)["event"] == "zone_left", 60))
        assert left["dwell"] >= 0
        metrics = served.client.get("/metrics").text
        zone = left["zone"]
        assert _metric(metrics, "vidpipe_zone_dwell_seconds_count", stream="lab", zone=zone) >= 1
        assert _metric(metrics, "vidpipe_zone_loitering_total", stream="lab", zone="all") >= 1
        assert _metric(metrics, "vidpipe_zone_objects", stream="lab", zone=zone, label="person") is not None
        assert _metric(metrics, "vidpipe_zone_occupancy", stream="lab", zone="desk") is not None
    finally:
        served.stop()
        listener.close()
        broker.close()
