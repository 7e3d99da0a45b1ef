"""Counting people can set up and read: the summary as a file, every event in Python, --iou for every
model, grouped help and suggestions for mistyped options."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import vidpipe_cli

import vidpipe
from media import first_frames
from vidpipe import models
from vidpipe.errors import ModelError


@pytest.fixture(scope="module")
def clip(sample, tmp_path_factory):
    return first_frames(sample, tmp_path_factory.mktemp("usability") / "clip.mp4", 60)


def test_summary_file_holds_figures_counts_and_outputs(clip, tmp_path):
    summary, jsonl = tmp_path / "run.json", tmp_path / "o.jsonl"
    result = vidpipe_cli(
        "detect", f"a={clip}", f"b={clip}", "--line", "door=192,40,192,288", "--zone", "desk=0,150,150,150,150,288",
        "--json", str(jsonl), "--summary", str(summary),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(summary.read_text())
    with vidpipe.open(clip) as src:
        total = sum(1 for _ in src)
    assert record["model"]["name"] == "ssd_mobilenet_v2_coco" and record["frames"] == 2 * total
    assert set(record["streams"]) == {"a", "b"}
    for stream in record["streams"].values():
        assert stream["frames"] == total and stream["detections"] == sum(stream["labels"].values())
        assert set(stream["counts"]["lines"]["door"]) == {"in", "out"}
        assert set(stream["counts"]["zones"]["desk"]) == {"entered", "left", "peak", "occupancy", "labels"}
        assert stream["latency_ms"] is not None
    assert {"path": str(jsonl), "lines": len(jsonl.read_text().splitlines())} in record["outputs"]
    assert "latency_ms" in record and record["latency_ms"]["inference"]["p50"] > 0
    assert f"{summary} (" in result.stderr  # listed with the outputs
    bad = vidpipe_cli("detect", str(clip), "--summary", str(tmp_path / "x.txt"))
    assert bad.returncode == 2 and "--summary" in bad.stderr and ".json" in bad.stderr


def test_every_event_reaches_on_event(clip):
    seen = []
    pipeline = vidpipe.Pipeline(
        str(clip), models.load("ssd_mobilenet_v2_coco", threshold=0.3), lines=["door=0,200,384,200"],
        zones=["all=0,0,384,0,384,288,0,288"], on_event=[seen.append],
    )  # fmt: skip
    stats = pipeline.run()
    kinds = {event.kind for event in seen}
    assert {"zone_entered", "ended"} <= kinds
    counts = stats.streams["0"].counts
    assert counts["zones"]["all"]["entered"] == sum(1 for e in seen if e.kind == "zone_entered")
    assert stats.snapshot()["streams"]["0"]["counts"] == counts


def test_iou_for_every_model(clip):
    with vidpipe.open(clip) as src:
        frames = [f.tensor for f in src][:4]
    loose = models.load("ssd_mobilenet_v2_coco", threshold=0.05, iou=0.95)
    tight = models.load("ssd_mobilenet_v2_coco", threshold=0.05, iou=0.2)
    assert (loose.iou, tight.iou) == (0.95, 0.2)
    assert sum(map(len, loose(frames))) > sum(map(len, tight(frames)))  # fewer boxes suppress each other
    openvino = models.load("ssd_mobilenet_v2_coco", backend="auto", iou=0.3)
    assert openvino.iou == 0.3
    torch.manual_seed(0)
    from vidpipe.models.torchvision_models import TorchvisionStyleDetector

    net = torch.nn.Module()
    detector = TorchvisionStyleDetector(net, name="plain")
    with pytest.raises(ModelError, match="its NMS IoU cannot be set"):
        detector.set_iou(0.5)


def test_iou_on_the_command_line(clip):
    result = vidpipe_cli("detect", str(clip), "--iou", "0.3", "--max-frames", "2")
    assert result.returncode == 0, result.stderr
    result = vidpipe_cli("detect", str(clip), "--iou", "1.5")
    assert result.returncode == 2 and "--iou must be" in result.stderr


def test_a_mistyped_option_gets_a_suggestion():
    result = vidpipe_cli("detect", "x.mp4", "--treshold", "0.5")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown option --treshold (did you mean --threshold?); see vidpipe detect --help" in result.stderr
    assert "did you mean" not in vidpipe_cli("detect", "x.mp4", "--zzzzzzzz").stderr


def test_detect_help_is_grouped():
    text = vidpipe_cli("detect", "--help").stdout
    groups = ["input:", "model:", "tracking and counting:", "outputs:", "live streams:", "performance:"]
    positions = [text.index(f"\n{group}\n") for group in groups]
    assert positions == sorted(positions)
    model, outputs = text.index("\nmodel:\n"), text.index("\noutputs:\n")
    assert text.index("  --threshold", model) < outputs < text.index("  --summary", outputs)


def test_summary_on_a_full_disk_leaves_no_partial_file(clip, tmp_path):
    from conftest import run_on_small_disk

    small = tmp_path / "small"
    exe = Path(sys.executable).with_name("vidpipe")
    command = (
        f"dd if=/dev/zero of={small}/fill bs=1k count=64 2>/dev/null; "
        f"{exe} detect {clip} --max-frames 3 --summary {small}/s.json -q; rc=$?; ls -A {small}; exit $rc"
    )
    result = run_on_small_disk(small, "16k", command)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "--summary" in result.stderr and "No space left" in result.stderr
    assert result.stdout.split() == ["fill"]  # neither the summary nor a partial file


def test_models_table_fits_100_columns():
    listing = vidpipe_cli("models").stdout
    assert max(len(line) for line in listing.splitlines()) <= 100
    assert "torchvision:fasterrcnn_resnet50_fpn" in listing and "FILE.onnx" in listing


def test_snapshot_of_a_file_with_lines_zones_and_grid(clip, tmp_path):
    from PIL import Image

    out, plain = tmp_path / "check.png", tmp_path / "plain.png"
    result = vidpipe_cli(
        "snapshot", str(clip), str(out), "--frame", "30", "--grid",
        "--line", "door=192,40,192,288", "--zone", "desk=0,150,150,150,150,288,0,288",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "frame       384x288 pixels" in result.stdout
    assert "line        door: (192,40)-(192,288), in = moving +x (right)" in result.stdout
    assert "zone        desk: 0,150,150,150,150,288,0,288" in result.stdout and "frame 30" in result.stderr
    assert vidpipe_cli("snapshot", str(clip), str(plain), "--frame", "30").returncode == 0
    drawn, bare = (torch.from_numpy(np.asarray(Image.open(p))).int() for p in (out, plain))
    assert drawn.shape == bare.shape == (288, 384, 3)
    # the arrow: three quarters down the line, on its "in" side (right of x=192)
    assert (drawn[220:235, 196:219] - bare[220:235, 196:219]).abs().sum() > 1000
    assert (drawn[220:235, 169:188] - bare[220:235, 169:188]).abs().sum() < (drawn - bare).abs().sum() / 50
    outside = vidpipe_cli("snapshot", str(clip), str(tmp_path / "o.png"), "--line", "far=1000,2000,3000,2000")
    assert outside.returncode == 0 and "OUTSIDE THE FRAME" in outside.stdout
    assert vidpipe_cli("snapshot", str(clip), str(tmp_path / "x.jpg")).returncode == 2


def test_snapshot_of_a_live_source(tmp_path):
    live = "testsrc://ball?width=320&height=240&fps=30&frames=100000&live=1"
    result = vidpipe_cli("snapshot", live, str(tmp_path / "live.png"), "--grid")
    assert result.returncode == 0 and "320x240" in result.stdout, result.stderr


@pytest.mark.parametrize(
    ("option", "expected"),
    [("--line=far=1000,2000,3000,2000", "line far: (1000,2000)-(3000,2000) lies outside the frames of stream 0"),
     ("--zone=z=500,500,600,500,600,600", "zone z: lies outside the frames of stream 0")],
)  # fmt: skip
def test_lines_and_zones_outside_the_frame_are_refused(option, expected, clip):
    result = vidpipe_cli("detect", str(clip), option, "--max-frames", "3")
    assert result.returncode == 2 and expected in result.stderr and "(384x288 pixels)" in result.stderr
    assert "Traceback" not in result.stderr


def test_captions_are_kept_clear_of_boxes():
    from vidpipe.sinks.draw import _overlaps, place_caption

    person = (100.0, 120.0, 180.0, 280.0)  # a box over the zone's caption anchor
    rect = place_caption((60, 16), (140, 200), (384, 288), [person])
    assert not _overlaps(rect, person) and rect[0] >= 0 and rect[2] <= 384 and rect[1] >= 0 and rect[3] <= 288
    assert place_caption((60, 16), (300, 40), (384, 288), [person]) == (270.0, 32.0, 330.0, 48.0)  # clear: centred


def test_in_and_out_agree_with_supervisions_line_zone():
    """The same tracks through vidpipe's LineCounter and supervision's LineZone (the library people switch
    from): the same in and out counts, for lines in four directions."""
    sv = pytest.importorskip("supervision")
    from vidpipe.analytics import LineCounter
    from vidpipe.types import Detections, Frame, Result

    paths = {  # track id: anchor positions (bottom centre), one per frame
        1: [(40 + 12 * i, 200) for i in range(30)],  # left to right
        2: [(380 - 12 * i, 100) for i in range(30)],  # right to left
        3: [(200, 20 + 9 * i) for i in range(30)],  # top to bottom
        4: [(60 + 10 * i, 270 - 8 * i) for i in range(30)],  # diagonally up and right
    }
    for start, end in [((192, 0), (192, 288)), ((192, 288), (192, 0)), ((0, 144), (384, 144)), ((384, 144), (0, 144))]:
        ours = LineCounter([f"l={start[0]},{start[1]},{end[0]},{end[1]}"])
        theirs = sv.LineZone(start=sv.Point(*start), end=sv.Point(*end), triggering_anchors=[sv.Position.BOTTOM_CENTER])
        for i in range(30):
            boxes = torch.tensor([[p[i][0] - 10, p[i][1] - 40, p[i][0] + 10, p[i][1]] for p in paths.values()])
            ids = torch.tensor(list(paths))
            found = Detections(boxes.float(), torch.full((4,), 0.9), torch.ones(4, dtype=torch.int64), ["person"] * 4)
            frame = Frame(torch.zeros(288, 384, 3, dtype=torch.uint8), i, i / 10)
            ours(Result(frame, found.with_track_ids(ids)))
            theirs.trigger(sv.Detections(xyxy=boxes.numpy().astype(float), confidence=found.scores.numpy(),
                                         class_id=found.class_ids.numpy(), tracker_id=ids.numpy()))  # fmt: skip
        counts = ours.totals()["l"]
        assert (counts["in"], counts["out"]) == (theirs.in_count, theirs.out_count), (start, end)
        assert counts["in"] + counts["out"] >= 2


def test_events_and_frames_are_in_time_order(tmp_path):
    jsonl = tmp_path / "o.jsonl"
    live = "testsrc://ball?width=320&height=240&fps=30&frames=100000&live=1"
    result = vidpipe_cli("detect", f"cam={live}", "--json", str(jsonl), "--max-frames", "10")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert lines[0]["event"] == "connected"
    walls = [x["wall"] for x in lines if x.get("event") != "ended"]
    assert walls[0] <= walls[1]  # connected, then the first frame
    ended = lines[-1]  # --max-frames counts frames read from the stream, and says so
    assert ended["event"] == "ended" and ended["message"] == "cam: ended after 10 frames read"
    assert ended["frames_read"] == 10


def test_relative_coordinates_are_fractions_of_each_streams_frame(clip, tmp_path):
    from vidpipe.analytics import parse_line, parse_zone

    line = parse_line("door=rel:0.5,0,0.5,1")
    assert (
        line.relative
        and line.resolved(384, 288).start == (192.0, 0.0)
        and line.resolved(384, 288).end
        == (
            192.0,
            288.0,
        )
    )
    assert parse_zone("z=rel:0,0,0.5,0,0.5,0.5").resolved(100, 50).points == ((0, 0), (50, 0), (50, 25))
    bad = vidpipe_cli("detect", str(clip), "--line", "door=rel:0.5,0,1.5,1")
    assert bad.returncode == 2 and "fractions of the frame, 0 to 1" in bad.stderr
    pixels, fractions = tmp_path / "p.jsonl", tmp_path / "f.jsonl"
    for option, out in (("door=192,0,192,288", pixels), ("door=rel:0.5,0,0.5,1", fractions)):
        result = vidpipe_cli("detect", str(clip), "--line", option, "--json", str(out))
        assert result.returncode == 0, result.stderr
    events = [[x for x in map(json.loads, p.read_text().splitlines()) if x.get("event") == "line_crossed"]
              for p in (pixels, fractions)]  # fmt: skip
    assert [(e["frame"], e["direction"]) for e in events[0]] == [(e["frame"], e["direction"]) for e in events[1]]
    shot = vidpipe_cli("snapshot", str(clip), str(tmp_path / "s.png"), "--line", "door=rel:0.5,0,0.5,1")
    assert "line        door: (192,0)-(192,288)" in shot.stdout


def test_events_as_csv_rows(clip, tmp_path):
    import csv

    jsonl, table = tmp_path / "o.jsonl", tmp_path / "events.csv"
    result = vidpipe_cli(
        "detect", str(clip), "--line", "door=rel:0.5,0,0.5,1", "--zone", "left=0,0,192,0,192,288,0,288",
        "--json", str(jsonl), "--events-csv", str(table),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(table.open()))
    events = [x for x in map(json.loads, jsonl.read_text().splitlines()) if "event" in x]
    assert [r["event"] for r in rows] == [e["event"] for e in events] and len(rows) >= 2
    for row, event in zip(rows, events, strict=True):
        assert row["stream"] == event["stream"] and row["message"] == event["message"]
        assert row["direction"] == event.get("direction", "") and row["track_id"] == str(event.get("track_id", ""))
    assert f"{table} ({len(rows)} rows" in result.stderr


def test_csv_cells_never_start_a_spreadsheet_formula(tmp_path):
    """Names come from configs, the API and cameras' operators: one starting with = + - @ is written with a
    leading ' (text in a spreadsheet, not a formula that runs); numbers, negative ones too, stay as they are."""
    import csv

    from vidpipe.sinks import EventsCsvSink
    from vidpipe.types import Event

    table = tmp_path / "events.csv"
    sink = EventsCsvSink(table)
    fields = {"line": '=HYPERLINK("http://x","y")', "direction": "-in", "track_id": -1, "dwell": -2.5}
    sink.event(Event("@SUM(1+1)", "line_crossed", "+cmd|' /C calc'!A0", 1.0, fields))
    sink.close()
    (row,) = list(csv.DictReader(table.open()))
    assert row["stream"] == "'@SUM(1+1)" and row["line"] == '\'=HYPERLINK("http://x","y")'
    assert row["message"] == "'+cmd|' /C calc'!A0" and row["direction"] == "'-in"
    assert row["track_id"] == "-1" and row["dwell"] == "-2.5"


def test_quiet_prints_errors_only(clip, tmp_path):
    ok = vidpipe_cli("detect", str(clip), "--max-frames", "3", "--json", str(tmp_path / "o.jsonl"), "-q")
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr
    assert vidpipe_cli("decode", str(clip), "-q").stderr == ""
    failed = vidpipe_cli("detect", str(tmp_path / "missing.mp4"), "-q")
    assert failed.returncode == 2 and failed.stderr.strip().splitlines() == [
        f"vidpipe: error: {tmp_path / 'missing.mp4'}: no such file"
    ]
    loud = vidpipe_cli("detect", str(clip), "--max-frames", "3")
    assert "frames      3" in loud.stderr and "model       " in loud.stderr


def test_help_examples_keep_their_line_continuations():
    for command in ("probe", "decode", "snapshot", "detect", "models", "export"):
        text = vidpipe_cli(command, "--help").stdout
        examples = text.split("examples:", 1)[1].split("\n\n", 1)[0].splitlines()
        for line, following in itertools.pairwise(examples):
            if line.rstrip().endswith("\\"):
                assert following.startswith("      "), (command, line)  # the continued command, indented
        assert all(len(line) < 130 for line in examples), command  # no two lines run together


def test_the_readme_leads_and_links_every_doc():
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for doc in sorted((root / "docs").glob("*.md")):
        assert f"(docs/{doc.name})" in readme, doc.name
        assert "[← README](../README.md)" in doc.read_text()
    for section in (
        "## Two commands",
        "## Cameras in one minute",
        "## Counting in five lines",
        "## Python in ten lines",
    ):
        assert section in readme
    assert (root / "CHANGELOG.md").exists()
