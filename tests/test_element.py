"""The ``vidpipe_detect`` GStreamer element: through GStreamer's Python plugin loader in real
``gst-launch-1.0`` pipelines (``eval "$(vidpipe gst-env)"``), and registered in-process for
``Gst.parse_launch`` pipelines read by pad probes; compared with ``vidpipe detect`` on the same clip."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import SAMPLE, vidpipe_cli
from scenes import scene, walk

import vidpipe
from media import first_frames
from vidpipe.gst import GLib, Gst, GstVideo

pytestmark = pytest.mark.slow

VIDPIPE = str(Path(sys.executable).with_name("vidpipe"))
EXACT = "backend=torch precision=fp32"  # the reference path: equal to the CLI's to 1e-3 / 1e-4
ROI_API = GstVideo.VideoRegionOfInterestMeta.get_info().api


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """The first 150 frames of the bundled clip (a person walks in)."""
    return first_frames(SAMPLE, tmp_path_factory.mktemp("element") / "clip.mp4", 150)


@pytest.fixture(scope="module")
def want(clip, tmp_path_factory) -> list[dict]:
    """``vidpipe detect`` on ``clip`` (torch, fp32): the reference several tests hold the element to."""
    return cli_detect(clip, tmp_path_factory.mktemp("cli") / "cli.jsonl")


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    """A registry of this test run's own, so the element is found as it is now."""
    return tmp_path_factory.mktemp("registry") / "registry.bin"


def gst_env(registry: Path) -> dict[str, str]:
    """A bare environment for GStreamer tools, with the vidpipe under test first on Python's path (so
    ``vidpipe gst-env`` points GStreamer at this checkout's element, not another installed copy)."""
    checkout = str(Path(vidpipe.__file__).resolve().parent.parent)
    return {
        "GST_REGISTRY": str(registry),
        "PATH": "/usr/bin:/bin",
        "HOME": str(registry.parent),
        "PYTHONPATH": checkout,
        **{key: value for key, value in os.environ.items() if key.startswith("OMP_")},  # (make test's)
    }


def gst_launch(description: str, registry: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``gst-launch-1.0 DESCRIPTION`` in a shell that ran ``eval "$(vidpipe gst-env)"`` first."""
    script = f'eval "$({shlex.quote(VIDPIPE)} gst-env)" && exec gst-launch-1.0 -q {description}'
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=timeout, env=gst_env(registry)
    )


def frames_of(path: Path) -> list[dict]:
    return [line for line in map(json.loads, path.read_text().splitlines()) if "detections" in line]


def events_of(path: Path) -> list[dict]:
    return [line for line in map(json.loads, path.read_text().splitlines()) if "event" in line]


def cli_detect(clip: Path, out: Path, *args: str) -> list[dict]:
    """``vidpipe detect`` as a user runs it (the model's input is made one way, whatever the outputs)."""
    result = vidpipe_cli("detect", str(clip), "--json", str(out), "--backend", "torch", "--precision", "fp32", *args)
    assert result.returncode == 0, result.stderr
    return frames_of(out)


def assert_same_detections(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert [d["label"] for d in a["detections"]] == [d["label"] for d in b["detections"]], a["frame"]
        for da, db in zip(a["detections"], b["detections"], strict=True):
            assert max(abs(x - y) for x, y in zip(da["box"], db["box"], strict=True)) <= 1e-3 + 0.005  # 2 decimals
            assert abs(da["score"] - db["score"]) <= 1e-4


def test_gst_env_and_inspect_list_every_property(registry):
    env = vidpipe_cli("gst-env")
    assert env.returncode == 0 and "export GST_PLUGIN_PATH=" in env.stdout and "export PYTHONPATH=" in env.stdout
    script = f'eval "$({shlex.quote(VIDPIPE)} gst-env)" && gst-inspect-1.0 vidpipe_detect'
    inspect = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300, env=gst_env(registry))
    assert inspect.returncode == 0, inspect.stderr
    for prop, default in (
        ("model", '"ssd_mobilenet_v2_coco"'), ("backend", '"auto"'), ("device", '"cpu"'), ("precision", '"auto"'),
        ("threshold", "-1"), ("classes", '""'), ("interval", "1"), ("track", "false"), ("lines", '""'),
        ("zones", '""'), ("draw", "false"), ("batch-size", "1"), ("max-latency", "0.1"),
        ("post-messages", "false"), ("json", '""'), ("motion", '"auto"'), ("motion-threshold", "25"),
        ("motion-min-area", "0.002"), ("motion-masks", '""'),
    ):  # fmt: skip
        block = re.search(rf"\n  {re.escape(prop)} +:(.*?)(?=\n  [a-z]|\Z)", inspect.stdout, re.S)
        assert block is not None, prop
        assert re.search(r"Default: +(\S+)", block.group(1)).group(1) == default, (prop, block.group(1))
    assert "video/x-raw" in inspect.stdout and "BGRx" in inspect.stdout


def test_gst_launch_json_equals_vidpipe_detect(clip, want, registry, tmp_path):
    out = tmp_path / "element.jsonl"
    result = gst_launch(
        f"filesrc location={clip} ! decodebin ! videoconvert ! vidpipe_detect {EXACT} json={out} ! fakesink",
        registry,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    got = frames_of(out)
    assert [f["frame"] for f in got] == list(range(len(want)))
    assert_same_detections(got, want)
    assert sum(len(f["detections"]) for f in got) > 20


def _run(description: str, on_buffer=None, probe_element: str = "sink") -> list:
    """Run a Gst.parse_launch pipeline to its end with the element registered in this process; call
    ``on_buffer(buf)`` for every buffer reaching the sink pad of ``probe_element``."""
    from vidpipe.element import register

    register()
    pipeline = Gst.parse_launch(description)
    if on_buffer is not None:
        pad = pipeline.get_by_name(probe_element).get_static_pad("sink")

        def probe(_pad, info):
            on_buffer(info.get_buffer())
            return Gst.PadProbeReturn.OK

        pad.add_probe(Gst.PadProbeType.BUFFER, probe)
    messages = []
    pipeline.set_state(Gst.State.PLAYING)
    bus = pipeline.get_bus()
    try:
        while True:
            msg = bus.timed_pop_filtered(
                120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR | Gst.MessageType.ELEMENT
            )
            assert msg is not None, "the pipeline did not end"
            if msg.type == Gst.MessageType.ELEMENT:
                messages.append(msg.get_structure().copy())
                continue
            if msg.type == Gst.MessageType.ERROR:
                error, _debug = msg.parse_error()
                raise RuntimeError(error.message)
            return messages
    finally:
        pipeline.set_state(Gst.State.NULL)


def _rois(buf: Gst.Buffer) -> list[dict]:
    rois = []
    for number in range(buf.get_n_meta(ROI_API)):
        meta = GstVideo.buffer_get_video_region_of_interest_meta_id(buf, number)
        params = meta.get_param("detection")
        rois.append({
            "label": GLib.quark_to_string(meta.roi_type),
            "xywh": (meta.x, meta.y, meta.w, meta.h),
            "score": params.get_value("score"),
            "class_id": params.get_value("class-id"),
            "track_id": params.get_value("track-id"),
            "box": json.loads(params.get_value("box")),
        })  # fmt: skip
    return rois


def test_roi_metas_read_downstream_equal_the_cli_and_messages_are_posted(clip, want, tmp_path):
    seen: list[list[dict]] = []
    messages = _run(
        f"filesrc location={clip} ! decodebin ! videoconvert ! video/x-raw,format=BGRx ! "
        f"vidpipe_detect {EXACT} post-messages=true ! fakesink name=sink",
        lambda buf: seen.append(_rois(buf)),
    )
    assert len(seen) == len(want) == len(messages)
    for rois, frame, message in zip(seen, want, messages, strict=True):
        assert [r["label"] for r in rois] == [d["label"] for d in frame["detections"]]
        for roi, d in zip(rois, frame["detections"], strict=True):
            assert max(abs(a - b) for a, b in zip(roi["box"], d["box"], strict=True)) <= 1e-3 + 0.005
            assert abs(roi["score"] - d["score"]) <= 1e-4 and roi["class_id"] == d["class_id"]
            assert abs(roi["xywh"][0] - d["box"][0]) <= 0.51 and roi["track_id"] == -1  # (rounded to pixels)
        assert message.get_name() == "vidpipe-detect" and message.get_value("frame") == frame["frame"]
        assert json.loads(message.get_value("detections")) == frame["detections"]


def test_interval_detects_one_frame_in_three(clip, want, tmp_path):
    out = tmp_path / "interval.jsonl"
    _run(
        f"filesrc location={clip} ! decodebin ! videoconvert ! vidpipe_detect {EXACT} interval=3 json={out} ! fakesink"
    )
    got = frames_of(out)
    assert len(got) == len(want)
    assert_same_detections([got[i] for i in range(0, len(got), 3)], [want[i] for i in range(0, len(want), 3)])
    for i, frame in enumerate(got):  # the frames between carry the last detection's results
        assert frame["detections"] == got[i - i % 3]["detections"]
    moved = sum(1 for i in range(1, len(want)) if i % 3 and want[i]["detections"] != want[i - i % 3]["detections"])
    assert moved > 10  # (so the carried results are not what detection would have given)


def _pixels(buf: Gst.Buffer, width: int, height: int) -> torch.Tensor:
    with buf.map(Gst.MapFlags.READ) as mapping:
        return torch.frombuffer(bytearray(mapping.data), dtype=torch.uint8)[: width * height * 3].view(height, width, 3)


def test_draw_writes_boxes_into_the_frames_and_a_tee_branch_keeps_its_pixels(clip, tmp_path):
    out = tmp_path / "tee.jsonl"
    drawn: list[torch.Tensor] = []
    plain: list[torch.Tensor] = []
    from vidpipe.element import register

    register()
    pipeline = Gst.parse_launch(
        f"filesrc location={clip} ! decodebin ! videoconvert ! video/x-raw,format=RGB ! tee name=t "
        f"t. ! queue ! vidpipe_detect {EXACT} draw=true json={out} ! fakesink name=drawn "
        "t. ! queue ! fakesink name=plain"
    )
    for name, into in (("drawn", drawn), ("plain", plain)):

        def probe(_pad, info, into=into):
            into.append(_pixels(info.get_buffer(), 384, 288))
            return Gst.PadProbeReturn.OK

        pipeline.get_by_name(name).get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, probe)
    pipeline.set_state(Gst.State.PLAYING)
    msg = pipeline.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    assert msg is not None and msg.type == Gst.MessageType.EOS
    frames = frames_of(out)
    assert len(drawn) == len(plain) == len(frames) > 100
    index = next(i for i, f in enumerate(frames) if f["detections"])
    x1, y1, _x2, y2 = (round(v) for v in frames[index]["detections"][0]["box"])
    edge = (drawn[index][y1 + 2 : y2 - 2, x1].float() - plain[index][y1 + 2 : y2 - 2, x1].float()).abs().mean()
    assert edge > 40  # the box's left edge is drawn
    quiet = next((i for i, f in enumerate(frames) if not f["detections"]), None)
    if quiet is not None:  # a frame without detections is left as it was
        assert torch.equal(drawn[quiet], plain[quiet])
    # the other branch of the tee kept its pixels: the same as a decode of the clip
    with vidpipe.open(clip) as source:
        decoded = [frame.tensor for frame in source]
    assert torch.equal(plain[index], decoded[index])


def test_drawn_frames_encode_and_decode(clip, registry, tmp_path):
    video = tmp_path / "drawn.mp4"
    result = gst_launch(
        f"filesrc location={clip} ! decodebin ! videoconvert ! vidpipe_detect draw=true ! videoconvert ! x264enc "
        f"speed-preset=ultrafast ! mp4mux ! filesink location={video}",
        registry,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    with vidpipe.open(video) as source:
        assert sum(1 for _ in source) >= 140


def test_tracking_and_line_events_equal_the_cli(tmp_path):
    line = "door=192,40,192,288"
    longer = first_frames(SAMPLE, tmp_path / "longer.mp4", 300)  # two crossings of the door
    out = tmp_path / "element.jsonl"
    _run(
        f"filesrc location={longer} ! decodebin ! videoconvert ! vidpipe_detect {EXACT} track=true lines={line} "
        f"json={out} ! fakesink"
    )
    cli = tmp_path / "cli.jsonl"
    want = cli_detect(longer, cli, "--line", line)
    got = frames_of(out)
    assert len(got) == len(want)
    tracks = lambda frames: [[d.get("track_id") for d in f["detections"]] for f in frames]  # noqa: E731
    assert tracks(got) == tracks(want)
    crossings = lambda path: [  # noqa: E731
        (e["frame"], e["track_id"], e["direction"]) for e in events_of(path) if e["event"] == "line_crossed"
    ]
    assert crossings(out) == crossings(cli) and len(crossings(cli)) >= 2


def test_batches_are_released_within_max_latency(tmp_path):
    """A live source at 5 fps and batch-size 4: without the latency bound the first frame of a batch
    would wait 600 ms for three more."""
    arrived: dict[int, float] = {}
    left: dict[int, float] = {}
    from vidpipe.element import register

    register()
    pipeline = Gst.parse_launch(
        "videotestsrc is-live=true num-buffers=12 ! video/x-raw,width=320,height=240,framerate=5/1 ! videoconvert "
        f"! vidpipe_detect name=detect {EXACT} batch-size=4 max-latency=0.1 ! fakesink"
    )
    element = pipeline.get_by_name("detect")

    def stamp(into):
        def probe(_pad, info):
            into[info.get_buffer().pts] = time.monotonic()
            return Gst.PadProbeReturn.OK

        return probe

    element.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, stamp(arrived))
    element.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, stamp(left))
    pipeline.set_state(Gst.State.PLAYING)
    msg = pipeline.get_bus().timed_pop_filtered(60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    assert msg is not None and msg.type == Gst.MessageType.EOS
    assert len(left) == 12
    # Without the bound, a batch's first frame leaves only after three more arrived (600 ms); with it, at
    # most the one or two that arrive while a detection runs on a busy machine (counted, not timed)
    overtaken = [sum(arrived[pts] < t < left[pts] for t in arrived.values()) for pts in arrived]
    assert max(overtaken) <= 2, [round(left[pts] - arrived[pts], 3) for pts in arrived]


def test_bad_properties_and_a_missing_model_fail_at_start_with_one_message(registry, tmp_path):
    for props, expected in (
        ("model=/no/such/model.onnx", "model.onnx"),
        ("backend=fast", "backend"),
        ("lines=door=1,2", "door"),
        ("classes=personn", "personn"),
    ):
        result = gst_launch(f"videotestsrc num-buffers=3 ! videoconvert ! vidpipe_detect {props} ! fakesink", registry)
        assert result.returncode != 0, props
        text = result.stdout + result.stderr
        assert "ERROR" in text and expected in text, (props, text)
        assert "Traceback" not in text, text


def test_eos_and_errors_propagate_through_the_element(tmp_path):
    messages = _run("videotestsrc num-buffers=5 ! videoconvert ! vidpipe_detect ! fakesink")
    assert messages == []  # ended with EOS, no message without post-messages
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(SAMPLE.read_bytes()[:20000])
    with pytest.raises(RuntimeError):
        _run(f"filesrc location={broken} ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! vidpipe_detect ! fakesink")


def test_batched_frames_leave_in_order_with_the_same_detections(clip, want, tmp_path):
    """At batch-size 4 (a long max-latency), frames pass in order, none is lost (those held at the end
    leave at EOS), and each has the detections of batch-size 1 (ROI metas and JSON Lines)."""
    seen: list[tuple] = []
    out = tmp_path / "batched.jsonl"
    _run(
        f"filesrc location={clip} ! decodebin ! videoconvert ! vidpipe_detect {EXACT} batch-size=4 max-latency=5 "
        f"json={out} ! fakesink name=sink",
        lambda buf: seen.append((buf.pts, [r["label"] for r in _rois(buf)])),
    )
    assert len(seen) == len(want) > 100 and [pts for pts, _ in seen] == sorted(pts for pts, _ in seen)
    assert [labels for _, labels in seen] == [[d["label"] for d in f["detections"]] for f in want]
    assert_same_detections(frames_of(out), want)


def test_frames_in_every_format_give_the_same_detections(tmp_path):
    clip = first_frames(SAMPLE, tmp_path / "short.mp4", 60)
    results = {}
    for fmt in ("RGB", "RGBx", "BGRx", "RGBA", "BGRA"):
        rois: list = []
        _run(
            f"filesrc location={clip} ! decodebin ! videoconvert ! video/x-raw,format={fmt} ! "
            f"vidpipe_detect {EXACT} threshold=0.3 ! fakesink name=sink",
            lambda buf, rois=rois: rois.append([(r["label"], tuple(r["box"])) for r in _rois(buf)]),
        )
        results[fmt] = rois
    assert all(value == results["RGB"] for value in results.values())
    assert sum(len(r) for r in results["RGB"]) >= 3


@pytest.fixture(scope="module")
def walk_and_stop(tmp_path_factory) -> Path:
    """Someone walks in, crosses the line ``door``, walks into the zone ``desk`` and stands still there
    for 4 s (30 fps, as in test_motion.py)."""
    path = [None] * 15 + walk((20, 240), (280, 240), 24) + walk((285, 242), (300, 260), 10) + [(300, 260)] * 120
    return scene(tmp_path_factory.mktemp("element-motion") / "stop.mp4", [path])


COUNTING = "track=true lines=door=150,0,150,288 zones=desk=220,150,384,150,384,288,220,288"


def _counted(clip: Path, out: Path, props: str) -> tuple[list[dict], list[dict]]:
    """The element's frame records and events (without their wall-clock time) on ``clip``."""
    _run(f"filesrc location={clip} ! decodebin ! videoconvert ! vidpipe_detect {EXACT} {COUNTING} {props} json={out} "
         "! fakesink")  # fmt: skip
    return frames_of(out), [{k: v for k, v in e.items() if k != "wall"} for e in events_of(out)]


def test_motion_gating_gives_the_same_crossings_and_zone_events(walk_and_stop, tmp_path):
    """motion=on and motion=off: the same line crossing and zone events and per-frame zone counts (the
    still person stays counted), and most of the 4 s standing still skip the detector; batched, the gated
    frames are the same."""
    plain, plain_events = _counted(walk_and_stop, tmp_path / "off.jsonl", "motion=off")
    gated, gated_events = _counted(walk_and_stop, tmp_path / "on.jsonl", "motion=on")
    assert [e["event"] for e in plain_events] == ["line_crossed", "zone_entered"]
    assert gated_events == plain_events
    assert len(gated) == len(plain) >= 160
    assert [f["zones"]["desk"] for f in gated] == [f["zones"]["desk"] for f in plain] and plain[-1]["zones"][
        "desk"
    ] == 1
    assert all("motion" not in f for f in plain)  # not gated: no motion field, as before
    flags = [f["motion"] for f in gated]
    assert flags[0] is True and flags.count(False) >= 100, flags
    for f in gated:  # a gated frame carries the last detected frame's detections (its track ids too)
        if f["motion"] is False:
            assert f["detections"] == gated[f["frame"] - 1]["detections"]
    batched, batched_events = _counted(
        walk_and_stop, tmp_path / "batched.jsonl", "motion=on batch-size=4 max-latency=5"
    )
    assert [f["motion"] for f in batched] == flags and batched_events == gated_events
    assert [f["detections"] for f in batched] == [f["detections"] for f in gated]


def test_a_live_pipeline_is_gated_by_default_and_a_file_is_not(walk_and_stop, tmp_path):
    live = tmp_path / "live.jsonl"
    messages = _run(
        "videotestsrc is-live=true pattern=colors num-buffers=30 ! video/x-raw,width=320,height=240,framerate=30/1 "
        f"! videoconvert ! vidpipe_detect {EXACT} post-messages=true json={live} ! fakesink"
    )
    flags = [f["motion"] for f in frames_of(live)]
    assert len(flags) == 30 and flags[0] is True and flags.count(False) >= 25, flags
    assert [m.get_value("motion") for m in messages] == flags
    still = tmp_path / "still.jsonl"  # the same still source, not live: not gated unless motion=on
    _run(f"videotestsrc pattern=colors num-buffers=30 ! videoconvert ! vidpipe_detect {EXACT} json={still} ! fakesink")
    assert all("motion" not in f for f in frames_of(still))
    plain = tmp_path / "file.jsonl"
    _run(
        f"filesrc location={walk_and_stop} ! decodebin ! videoconvert ! vidpipe_detect {EXACT} json={plain} ! fakesink"
    )
    assert len(frames_of(plain)) >= 160 and all("motion" not in f for f in frames_of(plain))


def test_bad_motion_properties_fail_at_start_with_the_rule_s_words():
    for prop, bad, words in (
        ("motion-threshold", 0.0, "must be grey levels from 1 to 255, got 0"),
        ("motion-min-area", 1.5, "must be a fraction of the frame above 0 and at most 1, got 1.5"),
        ("motion-masks", "0,0,10,0,10,10;1,2,3", "'1,2,3': expected x,y pairs of at least 3 points, got 3 numbers"),
        ("motion", "sometimes", "'auto', 'on' or 'off'"),
    ):
        with pytest.raises(RuntimeError) as raised:
            _run(f'videotestsrc num-buffers=2 ! videoconvert ! vidpipe_detect {prop}="{bad}" ! fakesink')
        assert str(raised.value).startswith(f"vidpipe_detect: {prop} ") and words in str(raised.value), raised.value
