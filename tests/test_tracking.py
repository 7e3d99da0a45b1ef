"""Tracking, line and zone counting, CSV and annotations: hand-made box sequences for the logic, and
footage with known truth (a person from the bundled clip moved along known paths) end to end."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import scenes
import torch
from conftest import vidpipe_cli

from vidpipe.analytics import LineCounter, Tracker, ZoneCounter, parse_line, parse_zone, side
from vidpipe.errors import VidpipeError
from vidpipe.sinks.draw import Annotator, place_label, sizes
from vidpipe.sinks.jsonl import SCHEMA_FILE
from vidpipe.types import Detections, Frame, Result

pytest.importorskip("trackers")

BLANK = torch.zeros((480, 640, 3), dtype=torch.uint8)


def _result(index: int, boxes: list[list[float]], tracks: list[int] | None, stream: str = "0") -> Result:
    n = len(boxes)
    found = Detections(
        torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
        torch.full((n,), 0.9),
        torch.ones(n, dtype=torch.int64),
        ["person"] * n,
        None if tracks is None else torch.tensor(tracks, dtype=torch.int64),
    )
    return Result(Frame(BLANK, index, index / 30, stream), found)


def _box_at(x: float, y: float = 300.0) -> list[float]:
    """A 40x100 box whose bottom centre is (x, y)."""
    return [x - 20, y - 100, x + 20, y]


def _run(stage, xs: list[float | None], y: float = 300.0, track: int = 5) -> list:
    events = []
    for i, x in enumerate(xs):
        boxes = [] if x is None else [_box_at(x, y)]
        result = stage(_result(i, boxes, [] if x is None else [track]))
        events += result.events
    return events


# -- the logic, on hand-made sequences ---------------------------------------------------------------


def test_side_sign_and_the_direction_convention():
    door = ((100, 0), (100, 480))
    assert side(*door, (150, 240)) < 0 < side(*door, (50, 240))
    assert side(*door, (100, 10)) == 0
    # supervision's convention: moving from x=50 to x=150 across door=100,0,100,480 (onto the negative
    # side) goes "in"
    events = _run(LineCounter(["door=100,0,100,480"]), [50 + 10 * i for i in range(11)])
    assert [(e.kind, e.fields["direction"], e.fields["line"], e.fields["track_id"]) for e in events] == [
        ("line_crossed", "in", "door", 5)
    ]
    events = _run(LineCounter(["door=100,0,100,480"]), [150 - 10 * i for i in range(11)])
    assert [e.fields["direction"] for e in events] == ["out"]


def test_jitter_on_the_line_counts_once_in_the_overall_direction():
    approach = [40 + 6 * i for i in range(10)]  # 40 .. 94
    jitter = [100 + (4 if i % 2 else -4) for i in range(40)]  # stands on the line, 4 px either side
    onwards = [106 + 6 * i for i in range(10)]
    counter = LineCounter(["door=100,0,100,480"])
    events = _run(counter, approach + jitter + onwards)
    assert [e.fields["direction"] for e in events] == ["in"]
    assert counter.totals() == {"door": {"in": 1, "out": 0}}
    # ... and one that jitters on the line, then goes back where it came from, has not crossed
    counter = LineCounter(["door=100,0,100,480"])
    assert _run(counter, approach + jitter + approach[::-1]) == []
    # two frames on the far side and back (less than min_frames=3 and within min_distance) is jitter
    assert _run(LineCounter(["door=100,0,100,480"]), [80, 90, 95, 103, 105, 95, 90, 80]) == []


def test_crossing_is_confirmed_by_frames_or_distance():
    counter = LineCounter(["door=100,0,100,480"], min_frames=3, min_distance=10)
    events = []
    for i, x in enumerate([90, 95, 98, 102, 103, 104]):  # slow: confirmed on the 3rd frame past the line
        result = counter(_result(i, [_box_at(x)], [1]))
        events += [(i, e.fields["direction"]) for e in result.events]
    assert events == [(5, "in")]
    counter = LineCounter(["door=100,0,100,480"], min_frames=3, min_distance=10)
    events = []
    for i, x in enumerate([90, 95, 115]):  # fast: 15 px past the line at once
        result = counter(_result(i, [_box_at(x)], [1]))
        events += [(i, e.fields["direction"]) for e in result.events]
    assert events == [(2, "in")]


def test_passing_beyond_the_end_of_the_segment_is_not_a_crossing():
    # a short line from y=0 to y=200; the object walks along y=300, below its end
    assert _run(LineCounter(["door=100,0,100,200"]), [40 + 10 * i for i in range(13)]) == []
    assert len(_run(LineCounter(["door=100,0,100,200"]), [40 + 10 * i for i in range(13)], y=150)) == 1


def test_anchor_center_uses_the_middle_of_the_box():
    # a horizontal line at y=250 and a box 100 px high moving up: its bottom centre (y 300 -> 200)
    # crosses the line; its centre (y 250 -> 150) starts on the line, so it never changes sides
    ys = [300 - 10 * i for i in range(11)]
    for anchor, expected in (("bottom_center", 1), ("center", 0)):
        counter = LineCounter(["h=0,250,640,250"], anchor=anchor)
        events = []
        for i, y in enumerate(ys):
            events += counter(_result(i, [[300, y - 100, 340, y]], [2])).events
        assert len(events) == expected, anchor


def test_untracked_detections_never_count_and_tracks_are_required():
    counter = LineCounter(["door=100,0,100,480"])
    assert _run(counter, [150 - 10 * i for i in range(11)], track=-1) == []
    with pytest.raises(VidpipeError, match="Tracker"):
        counter(_result(0, [_box_at(10)], None))


def test_lines_for_one_stream_only():
    counter = LineCounter(["cam2:door=100,0,100,480"])
    for stream, expected in (("cam1", 0), ("cam2", 1)):
        events = []
        for i in range(11):
            events += counter(_result(i, [_box_at(150 - 10 * i)], [1], stream)).events
        assert len(events) == expected


def test_zone_enter_leave_occupancy_dwell_and_lost_tracks():
    zone = ZoneCounter(["desk=100,0,300,0,300,480,100,480"], min_frames=2, lost_after=1.0)
    xs = [50 + 10 * i for i in range(31)]  # 50 .. 350: in the zone for 100 <= x < 300 (frames 5 to 24)
    occupancy, events = [], []
    for i, x in enumerate(xs):
        result = zone(_result(i, [_box_at(x), _box_at(200, 400)], [1, 2]))  # track 2 stands inside
        occupancy.append(result.zones["desk"])
        events += [(i, e.kind, e.fields["track_id"]) for e in result.events]
    # track 2 is inside from its first frame; track 1 enters at its 2nd frame inside (x=110), leaves at
    # its 2nd frame outside (x=310)
    assert events == [(0, "zone_entered", 2), (6, "zone_entered", 1), (26, "zone_left", 1)]
    assert occupancy == [1] * 6 + [2] * 20 + [1] * 5
    assert zone.totals() == {"desk": {"entered": 2, "left": 1, "peak": 2, "occupancy": 1, "labels": {"person": 1}}}
    # track 2 disappears inside: after lost_after seconds it has left, as lost, with its dwell time
    left = []
    for i in range(31, 31 + 40):
        left += zone(_result(i, [], [])).events
    assert [(e.kind, e.fields["track_id"], e.fields["lost"]) for e in left] == [("zone_left", 2, True)]
    assert left[0].fields["dwell"] == pytest.approx(30 / 30, abs=0.01)


def test_zone_border_jitter_does_not_flicker():
    zone = ZoneCounter(["z=100,0,300,0,300,480,100,480"], min_frames=2)
    xs = [60, 70, 80, 90] + [100 + (3 if i % 2 else -3) for i in range(20)] + [90, 80]
    events = []
    for i, x in enumerate(xs):
        events += zone(_result(i, [_box_at(x)], [4])).events
    assert events == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("door", "expected [STREAM:]NAME=NUMBERS"),
        ("door=1,2,3", "expected 4 numbers"),
        ("door=1,2,x,4", "expected numbers"),
        ("door=nan,2,3,4", "expected numbers"),
        ("door=1,inf,3,4", "expected numbers"),
        ("door=5,5,5,5", "same point"),
        (":door=1,2,3,4", "empty stream or name"),
    ],
)
def test_bad_lines_are_clear_errors(text, message):
    with pytest.raises(VidpipeError) as error:
        parse_line(text)
    assert message in str(error.value)


def test_bad_zones_are_clear_errors():
    with pytest.raises(VidpipeError, match="at least 3 points"):
        parse_zone("z=1,2,3,4")
    with pytest.raises(VidpipeError, match="x,y pairs"):
        parse_zone("z=1,2,3,4,5,6,7")
    with pytest.raises(VidpipeError, match="no area"):
        parse_zone("z=0,0,10,10,20,20")
    assert parse_zone("cam:z=0,0,10,0,10,10").stream == "cam"


def test_tracker_keeps_ids_per_stream_and_never_reuses_them():
    tracker = Tracker(lost_after=0.5)
    ids = {"a": [], "b": []}
    for i in range(20):
        for stream in ids:
            boxes = [[10 + 3 * i, 10, 60 + 3 * i, 110], [300 - 3 * i, 200, 350 - 3 * i, 300]]
            result = tracker(_result(i, boxes, None, stream))
            ids[stream].append(result.detections.track_ids.tolist())
    for stream in ids:
        assert ids[stream][0] == [-1, -1]  # not confirmed in its first frame
        assert all(frame == ids[stream][1] for frame in ids[stream][1:])  # one id each, throughout
        assert sorted(ids[stream][1]) == [0, 1]  # each stream counts its own ids
    # the objects vanish for a second: their ids retire; reappearing objects get new ones
    for i in range(20, 50):
        tracker(_result(i, [], None, "a"))
    new = [tracker(_result(i, [[10 + 3 * i, 10, 60 + 3 * i, 110]], None, "a")) for i in range(50, 53)]
    assert new[-1].detections.track_ids.tolist()[0] not in (0, 1, -1)
    assert tracker.tracks == Counter({"person": 5})


def test_tracker_uses_real_time_between_detected_frames():
    # the same motion sampled every frame and every 5th frame (--detect-fps): the same single id
    for every in (1, 5):
        tracker = Tracker()
        seen = set()
        for i in range(0, 60, every):
            x = 10 + 4 * i
            seen.update(tracker(_result(i, [[x, 10, x + 30, 90]], None)).detections.track_ids.tolist())
        assert seen - {-1} == {0}, every


def test_batched_kalman_filters_match_trackers_own_filter():
    """Queued predictions and updates over many filters give what trackers' KalmanFilter gives, step by
    step, whatever the interleaving of steps and reads."""
    from trackers.utils.kalman_filter import KalmanFilter

    from vidpipe.analytics.kalman import BatchedXYXYEstimator

    rng = np.random.default_rng(7)
    estimator = BatchedXYXYEstimator.for_tracker()
    pairs = []
    for k in range(6):
        box = np.array([10.0 * k, 20.0, 10.0 * k + 40, 120.0])
        batched = estimator(box).kf
        plain = KalmanFilter(8, 4)
        plain.set_state(batched.get_state())
        pairs.append((plain, batched))
    for step in range(60):
        f = np.eye(8) + np.diag(np.full(4, rng.uniform(0.5, 3.0)), k=4)  # each frame its own time step
        q = np.diag(rng.uniform(0.001, 0.1, 8))
        for plain, batched in pairs:
            for kf in (plain, batched):
                kf.transition_mtx, kf.process_noise = f, q
                kf.predict()
            assert np.allclose(batched.state, plain.state, rtol=1e-12, atol=1e-9)  # read between steps
        for k, (plain, batched) in enumerate(pairs):
            if (step + k) % 4:  # some filters miss a frame: their prediction stays queued
                z = rng.uniform(0, 200, 4)
                plain.update(z)
                batched.update(z)
            if step % 7 == k:  # a read in the middle of the frame applies the queue there
                assert np.allclose(batched.state_covariance, plain.state_covariance, rtol=1e-9, atol=1e-9)
    for plain, batched in pairs:
        assert np.allclose(batched.state, plain.state, rtol=1e-9, atol=1e-6)
        assert np.allclose(batched.state_covariance, plain.state_covariance, rtol=1e-9, atol=1e-9)


def test_batched_kalman_filters_give_the_same_tracks_as_bytetrack_alone():
    """vidpipe's Tracker (ByteTrack on the batched filters) and ByteTrack with its own filters assign the
    same ids to 12 objects that come, cross each other, pause and go over 150 frames with noisy boxes."""
    from trackers import ByteTrackTracker

    rng = np.random.default_rng(3)
    starts = rng.uniform(0, 150, 12)
    trackers = {"vidpipe": Tracker(), "bytetrack": Tracker()}
    trackers["bytetrack"]._make = lambda **settings: ByteTrackTracker(**settings)
    ids: dict[str, list] = {name: [] for name in trackers}
    for i in range(150):
        boxes = []
        for k, start in enumerate(starts):
            if start <= i < start + 60 + 5 * k and (i + k) % 11:  # alive for a while, with gaps
                x = 20 + (k % 4) * 120 + (2.5 if k % 2 else -2.5) * (i - start)
                y = 40 + (k // 4) * 140 + rng.normal(0, 1.5)
                boxes.append([x, y, x + 50 + rng.normal(0, 2), y + 110])
        for name, tracker in trackers.items():
            ids[name].append(tracker(_result(i, boxes, None)).detections.track_ids.tolist())
    assert ids["vidpipe"] == ids["bytetrack"]
    assert len({t for frame in ids["vidpipe"] for t in frame} - {-1}) >= 12


def test_detections_to_and_from_supervision():
    sv = pytest.importorskip("supervision")
    found = _result(0, [[1, 2, 3, 4], [5, 6, 7, 8]], [3, -1]).detections
    converted = found.to_supervision()
    assert isinstance(converted, sv.Detections)
    assert converted.tracker_id.tolist() == [3, -1] and list(converted.data["class_name"]) == ["person"] * 2
    back = Detections.from_supervision(converted)
    assert torch.equal(back.boxes, found.boxes) and back.labels == found.labels
    assert torch.equal(back.track_ids, found.track_ids) and torch.allclose(back.scores, found.scores)
    plain = sv.Detections(xyxy=converted.xyxy, class_id=converted.class_id)
    assert Detections.from_supervision(plain, names={1: "car"}).labels == ["car", "car"]


# -- annotations ---------------------------------------------------------------------------------------


def test_text_is_sized_to_the_frame():
    assert sizes(288)[0] >= 11 and sizes(1080)[0] >= 28 and sizes(2160)[0] > sizes(1080)[0]


def test_labels_stay_inside_the_frame_and_off_each_other():
    taken = []
    at_top = place_label((80, 20), [0, 0, 50, 100], (640, 480), taken)
    assert at_top[1] >= 0  # above the box would be outside: inside its top instead
    at_right = place_label((80, 20), [600, 200, 640, 300], (640, 480), taken)
    assert at_right[2] <= 640
    same_box = [place_label((80, 20), [300, 300, 380, 400], (640, 480), taken) for _ in range(3)]
    for i, a in enumerate(same_box):
        for b in same_box[i + 1 :]:
            assert a[3] <= b[1] or b[3] <= a[1] or a[2] <= b[0] or b[2] <= a[0], (a, b)


def test_annotations_draw_colours_per_track_lines_zones_and_trails():
    counter = LineCounter(["door=320,0,320,480"])
    zone = ZoneCounter(["z=0,0,200,0,200,480,0,480"])
    annotator = Annotator(trails=10)
    for i in range(8):
        result = zone(counter(_result(i, [_box_at(100 + 10 * i), _box_at(500 - 10 * i)], [0, 1])))
        drawn = annotator.draw(result)
    assert drawn.shape == BLANK.shape and drawn.dtype == torch.uint8
    colours = {tuple(c) for c in drawn.reshape(-1, 3).unique(dim=0).tolist()}
    from vidpipe.sinks.draw import SHAPE_COLOR, color_for

    assert {color_for(0), color_for(1), SHAPE_COLOR} <= colours  # two tracks, two colours
    assert color_for(0) != color_for(1)
    column = drawn[:, 320]  # the line, drawn in the shape colour
    assert (column == torch.tensor(SHAPE_COLOR, dtype=torch.uint8)).all(-1).float().mean() > 0.5


# -- end to end, on footage with known truth -------------------------------------------------------------

A = scenes.walk((40, 270), (340, 270), 100)  # left to right: crosses x=192 "in"
B = scenes.walk((340, 150), (40, 150), 100)  # right to left: "out"


@pytest.fixture(scope="module")
def crossing(tmp_path_factory) -> Path:
    return scenes.scene(tmp_path_factory.mktemp("scenes") / "crossing.mp4", [A, B])


def _read(path: Path) -> tuple[list[dict], list[dict]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [x for x in lines if "event" not in x], [x for x in lines if "event" in x]


def _identity_share(ids: list[int | None]) -> float:
    detected = [i for i in ids if i is not None]
    return Counter(detected).most_common(1)[0][1] / len(detected)


def test_tracks_and_crossings_on_known_paths(crossing, tmp_path):
    jsonl, table, video = tmp_path / "c.jsonl", tmp_path / "c.csv", tmp_path / "c.mp4"
    result = vidpipe_cli(
        "detect", str(crossing), "--classes", "person", "--line", "mid=192,0,192,288",
        "--json", str(jsonl), "--csv", str(table), "--video", str(video), "--trails", "20",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    frames, events = _read(jsonl)
    schema = json.loads(SCHEMA_FILE.read_text())
    for record in frames + events:
        jsonschema.validate(record, schema)
    ids = scenes.match(frames, [A, B])
    for path_ids in ids:
        assert sum(i is not None for i in path_ids) >= 80  # the detector finds the person
        assert _identity_share(path_ids) >= 0.95
    id_a, id_b = (Counter(i for i in path_ids if i is not None).most_common(1)[0][0] for path_ids in ids)
    assert id_a != id_b and -1 not in (id_a, id_b)
    crossed = sorted((e["track_id"], e["direction"]) for e in events if e["event"] == "line_crossed")
    assert crossed == sorted([(id_a, "in"), (id_b, "out")])
    for event in events:
        if event["event"] == "line_crossed":  # reported where the crossing happened (about frame 50)
            assert 45 <= event["frame"] <= 60 and event["line"] == "mid" and event["label"] == "person"
    assert "line        mid: in 1, out 1" in result.stderr and "tracks      2 (person 2)" in result.stderr
    # the CSV has one row per detection of the JSONL, with the same track ids
    rows = list(csv.DictReader(table.open()))
    expected = [(str(f["frame"]), d["label"], str(d["track_id"])) for f in frames for d in f["detections"]]
    assert [(r["frame"], r["label"], r["track_id"]) for r in rows] == expected
    assert list(rows[0]) == ["stream", "frame", "pts", "label", "class_id", "score", "track_id", "x1", "y1", "x2", "y2"]


def test_jitter_on_the_line_counts_once_end_to_end(tmp_path):
    approach = scenes.walk((60, 270), (186, 270), 30)
    jitter = [(192 + (5 if i % 2 else -5), 270) for i in range(40)]
    onwards = scenes.walk((198, 270), (330, 270), 30)
    path = approach + jitter + onwards
    clip = scenes.scene(tmp_path / "jitter.mp4", [path])
    jsonl = tmp_path / "j.jsonl"
    result = vidpipe_cli(
        "detect", str(clip), "--classes", "person", "--line", "mid=192,0,192,288", "--json", str(jsonl)
    )
    assert result.returncode == 0, result.stderr
    frames, events = _read(jsonl)
    assert _identity_share(scenes.match(frames, [path])[0]) >= 0.95
    assert [e["direction"] for e in events if e["event"] == "line_crossed"] == ["in"]


def test_zone_counts_on_known_paths(tmp_path):
    walker = scenes.walk((40, 270), (340, 270), 100)  # in the zone while 120 < x < 260
    stander = [(190, 150)] * 100  # inside all along
    clip = scenes.scene(tmp_path / "zone.mp4", [walker, stander])
    jsonl = tmp_path / "z.jsonl"
    result = vidpipe_cli(
        "detect", str(clip), "--classes", "person", "--zone", "desk=120,120,260,120,260,288,120,288",
        "--json", str(jsonl),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    frames, events = _read(jsonl)
    schema = json.loads(SCHEMA_FILE.read_text())
    for record in frames + events:
        jsonschema.validate(record, schema)  # frame lines with "zones", zone events
    ids = scenes.match(frames, [walker, stander])
    walker_id, stander_id = (Counter(i for i in x if i is not None).most_common(1)[0][0] for x in ids)
    kinds = [(e["event"], e["track_id"]) for e in events if e["event"].startswith("zone")]
    assert kinds == [("zone_entered", stander_id), ("zone_entered", walker_id), ("zone_left", walker_id)]
    left = next(e for e in events if e["event"] == "zone_left")
    assert left["dwell"] == pytest.approx((260 - 120) / 3 / 30, abs=0.15)
    # occupancy per frame: the truth, except within 2 frames of the walker passing the border
    inside = [120 < p[0] < 260 for p in walker]
    checked = 0
    for record in frames:
        i = record["frame"]
        tracked = {ids[0][i], ids[1][i]}.isdisjoint({None, -1})
        if i < 3 or len(set(inside[i - 2 : i + 1])) > 1 or not tracked:
            continue
        assert record["zones"]["desk"] == 1 + inside[i], record
        checked += 1
    assert checked >= 70
    assert "zone        desk: entered 2, left 1, peak 2 at once" in result.stderr


def test_two_streams_are_tracked_independently_with_detect_fps(crossing, tmp_path):
    mirrored = scenes.scene(tmp_path / "mirrored.mp4", [[(384 - x, y) for x, y in A], [(384 - x, y) for x, y in B]])
    jsonl = tmp_path / "two.jsonl"
    result = vidpipe_cli(
        "detect", f"a={crossing}", f"b={mirrored}", "--classes", "person", "--detect-fps", "10",
        "--line", "mid=192,0,192,288", "--line", "a:only_a=192,0,192,288", "--json", str(jsonl),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    frames, events = _read(jsonl)
    crossings = Counter((e["stream"], e["line"], e["direction"]) for e in events if e["event"] == "line_crossed")
    assert crossings == Counter(
        {("a", "mid", "in"): 1, ("a", "mid", "out"): 1, ("a", "only_a", "in"): 1, ("a", "only_a", "out"): 1,
         ("b", "mid", "in"): 1, ("b", "mid", "out"): 1}
    )  # fmt: skip
    for stream in ("a", "b"):
        own = [f for f in frames if f["stream"] == stream]
        assert 30 <= len(own) <= 36  # every third frame of 100
        ids = {d["track_id"] for f in own for d in f["detections"]} - {-1}
        assert ids == {0, 1}  # each stream's own ids, one per person despite the 10 fps sampling


def test_bad_line_options_are_clear_errors(crossing):
    for args, message in (
        (["--line", "door=1,2,3"], "line door: expected 4 numbers"),
        (["--line", "cam9:door=1,2,3,4"], "no stream named cam9"),
        (["--zone", "z=1,2,3,4"], "at least 3 points"),
        (["--trails", "-1"], "--trails must be 0 to 10000"),
        (["--csv", "out.txt"], "use a name ending in .csv"),
    ):
        result = vidpipe_cli("detect", str(crossing), *args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, args


def test_tracker_survives_a_clock_that_restarts(recwarn):
    """A live stream that reconnects starts its pts again from 0: ids go on (none reused), no warnings."""
    tracker = Tracker()
    seen = []
    for i, pts in enumerate([0.0, 0.1, 0.2, 0.3, 0.3, 0.0, 0.1, 0.2, 0.3]):  # a repeat, then a restart
        x = 10 + 5 * i
        result = tracker(Result(Frame(BLANK, i, pts, "cam"), _result(i, [[x, 10, x + 40, 110]], None).detections))
        seen.append(result.detections.track_ids.tolist()[0])
    assert seen[0] == -1 and set(seen[1:]) == {0}  # one object, one id throughout
    assert not [w for w in recwarn if "timestamp" in str(w.message)]
