"""Motion gating: still scenes (noise, a burned-in clock, light that changes slowly) skip the detector,
objects that enter are detected in every frame they move, and line crossings and zone events are the
same with and without the gate (also for an object that stops still inside a zone)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from conftest import vidpipe_cli
from PIL import Image, ImageDraw, ImageFont
from scenes import parts, render, walk, write_video

import vidpipe
from media import X264, push_frames
from vidpipe.analytics.motion import MotionDetector, check_motion, mask_grid
from vidpipe.errors import VidpipeError
from vidpipe.options import MotionOptions, StreamOptions
from vidpipe.pipeline.config import stream_config

CLOCK = "rel:0,0,1,0,1,0.2,0,0.2"  # where the clock overlay is burned in (the top band)
ON = MotionOptions(mode="on", masks=(CLOCK,))
SCHEMA = json.loads((Path(vidpipe.__file__).parent / "detections.schema.json").read_text())


def still_scene(path: Path, frames: int = 75, fps: int = 15, noise: float = 3.0, ramp: float = 12.0) -> Path:
    """An empty scene of the bundled clip with sensor noise (``noise`` grey levels), the light rising by
    ``ramp`` levels over the clip, and a camera's clock (to the tenth of a second) burned in at the top
    left, H.264 in MP4."""
    background, _ = parts()
    rng = np.random.default_rng(3)
    height, width = background.shape[:2]
    face = ImageFont.load_default(size=36)

    def buffers():
        for i in range(frames):
            lit = background.numpy().astype(np.float32) + ramp * i / frames
            picture = Image.fromarray(np.clip(lit + rng.normal(0, noise, lit.shape), 0, 255).astype(np.uint8))
            ImageDraw.Draw(picture).text((6, 6), f"2026-12-04 23:59:{i / fps:04.1f}", fill="white", font=face)
            yield picture.tobytes(), i / fps, 1 / fps

    return push_frames(
        path,
        f"appsrc name=src format=time caps=video/x-raw,format=RGB,width={width},height={height},framerate={fps}/1 "
        f"! videoconvert ! video/x-raw,format=I420 ! {X264} bframes=0 ! h264parse "
        f"! mp4mux ! filesink location={path}",
        buffers(),
    )


@pytest.fixture(scope="module")
def still(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return still_scene(tmp_path_factory.mktemp("motion") / "still.mp4")


def gated(source: str | Path, motion: MotionOptions, **kwargs) -> list[vidpipe.Frame]:
    with vidpipe.open(source, motion=motion, **kwargs) as src:
        return [frame for frame in src]


def test_a_still_scene_with_a_masked_clock_is_gated(still):
    frames = gated(still, ON)
    assert [f.index for f in frames] == list(range(75))  # every frame, in order, none twice
    share = sum(f.gated for f in frames) / len(frames)
    assert share >= 0.9, f"only {share:.0%} of a still scene's frames were gated"
    assert not frames[0].gated  # the first frame is always detected
    # gated frames carry the last detected picture (no copy of their own)
    detected = [f for f in frames if not f.gated]
    assert all(f.tensor is detected[-1].tensor or not f.gated for f in frames if f.index > detected[-1].index)
    # without the mask, the clock's changing digits are motion at times: the mask keeps them out
    unmasked = gated(still, MotionOptions(mode="on"))
    assert sum(f.gated for f in unmasked) < sum(f.gated for f in frames)


def test_a_live_still_source_is_gated_by_default_and_files_are_not(still):
    live = gated("testsrc://colors?width=320&height=240&fps=30&frames=45&live=1", MotionOptions())
    assert [f.index for f in live] == list(range(45))
    assert sum(f.gated for f in live) >= 0.9 * 45
    assert all(f.motion is not None for f in live)
    # auto on a file: no gate, frames as without motion options (motion None)
    plain = gated(still, MotionOptions())
    assert all(f.motion is None and not f.gated for f in plain) and len(plain) == 75


def test_an_object_entering_is_detected_in_every_frame_it_moves(tmp_path):
    background, sprite = parts()
    path = [None] * 30 + walk((30, 270), (350, 270), 40) + [None] * 20  # enters at frame 30, leaves at 70
    clip = write_video(tmp_path / "enter.mp4", render(background, sprite, [path]), fps=30)
    frames = gated(clip, MotionOptions(mode="on"))
    assert len(frames) == 90
    present = [f for f in frames if path[f.index] is not None]
    assert all(not f.gated for f in present), [f.index for f in present if f.gated]
    empty = frames[1:30]
    assert sum(f.gated for f in empty) >= len(empty) - MotionOptions().hangover - 1


def _run(clip: Path, motion: MotionOptions, **kwargs) -> tuple[list, list, list]:
    events, zones, flags = [], [], []
    for result in vidpipe.detect(
        str(clip), track=True, lines=["door=150,0,150,288"], zones=["desk=220,150,384,150,384,288,220,288"],
        options=StreamOptions(detect_fps=10, motion=motion, **kwargs),
    ):  # fmt: skip
        record = result.record()
        jsonschema.validate(record, SCHEMA)
        flags.append(record.get("motion"))
        zones.append(record["zones"]["desk"])
        events += [(e.kind, e.fields.get("direction"), result.frame.index) for e in result.events]
    return events, zones, flags


def test_crossings_and_zone_events_are_the_same_with_the_gate(tmp_path):
    """An object walks in, crosses the line fast, walks into the zone and stands still there for 4 s:
    the same events and per-frame zone counts with and without the gate, and the still object stays
    counted while its frames are gated."""
    background, sprite = parts()
    path = [None] * 15 + walk((20, 240), (280, 240), 24) + walk((285, 242), (300, 260), 10) + [(300, 260)] * 120
    clip = write_video(tmp_path / "stop.mp4", render(background, sprite, [path]), fps=30)
    plain = _run(clip, MotionOptions(mode="off"))
    gate = _run(clip, MotionOptions(mode="on"))
    assert plain[0] and [k for k, *_ in plain[0]] == ["line_crossed", "zone_entered"]
    assert gate[0] == plain[0]
    assert gate[1] == plain[1] and plain[1][-1] == 1  # the still object stays counted
    assert set(plain[2]) == {None}  # no gate: no motion field
    assert gate[2].count(False) >= 25  # most of the 4 s standing still skipped the detector


def test_the_bundled_clip_gives_the_same_crossings_with_the_gate(sample):
    plain = _run(sample, MotionOptions(mode="off"), max_frames=120)
    gate = _run(sample, MotionOptions(mode="on"), max_frames=120)
    assert plain[0] and gate[0] == plain[0]
    assert gate[1] == plain[1]


def test_slow_light_is_absorbed_and_a_lights_on_change_settles():
    rng = np.random.default_rng(0)
    base = rng.integers(40, 200, (90, 160)).astype(np.float32)
    detector = MotionDetector(threshold=25, min_area=0.002)
    assert detector(base.astype(np.uint8))  # the first frame
    slow = [
        detector(np.clip(base + i * 0.5 + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)) for i in range(60)
    ]
    assert not any(slow)
    bright = np.clip(base + 80, 0, 255).astype(np.uint8)
    moves = [detector(bright) for _ in range(12)]
    assert moves[0] and not moves[-1]  # seen, then absorbed


def test_masks_cover_their_pixels():
    keep = mask_grid(("0,0,80,0,80,40,0,40", "rel:0.5,0.5,1,0.5,1,1,0.5,1"), 320, 180, 2)
    assert keep.shape == (90, 160)
    assert not keep[:20, :40].any() and keep[:20, 41:80].all()  # the first, in pixels
    assert not keep[46:, 81:].any() and keep[44, 81:].all()  # the second, in fractions
    grey = torch.zeros((90, 160), dtype=torch.uint8).numpy()
    detector = MotionDetector(25, 0.002, keep)
    detector(grey)
    changed = grey.copy()
    changed[:18, :38] = 255  # only inside the mask
    assert not detector(changed)


@pytest.mark.parametrize(
    ("masks", "words"),
    [
        (("5000,0,6000,0,6000,100",), "motion mask 5000,0,6000,0,6000,100: lies outside the frames (384x288 pixels)"),
        (("rel:0,0,1,0,1,1,0,1",), "cover the whole frame (384x288 pixels): no motion could be seen"),
    ],
)
def test_masks_that_miss_the_frames_or_cover_them_fail_the_stream_by_name(masks, words, still):
    """A mask wholly outside the frame hid nothing, and masks over the whole frame gated every frame,
    both without a word (the size is known only at the first frame, in GStreamer's thread)."""
    frames = []
    with (
        pytest.raises(VidpipeError, match=re.escape(words)) as raised,
        vidpipe.open(still, motion=MotionOptions(mode="on", masks=masks)) as source,
    ):
        frames.extend(source)
    assert str(raised.value).startswith(str(still))
    assert frames == []  # (not even the frame whose size showed it)
    result = vidpipe_cli("detect", str(still), "--motion", "on", *(f"--motion-mask={mask}" for mask in masks))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert words in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (MotionOptions(mode="sometimes"), "motion mode must be one of auto, on, off, got 'sometimes'"),
        (MotionOptions(threshold=0), "motion threshold must be grey levels from 1 to 255, got 0"),
        (MotionOptions(min_area=1.5), "motion min_area must be a fraction of the frame above 0 and at most 1"),
        (MotionOptions(hangover=-1), "motion hangover must be a whole number of frames"),
        (MotionOptions(masks=("1,2,3",)), "motion mask: expected x,y pairs of at least 3 points, got 3 numbers"),
        (MotionOptions(masks=("rel:0,0,2,0,2,2",)), "motion mask: rel: coordinates are fractions of the frame"),
        (MotionOptions(masks=("a,b,c,d,e,f",)), "motion mask: expected numbers separated by commas"),
    ],
)
def test_bad_motion_options_are_one_clear_line(options, message):
    with pytest.raises(VidpipeError) as caught:
        check_motion(options)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_cli_and_the_service_say_what_is_wrong(tmp_path, sample):

    from vidpipe.serve.config import ConfigError, load_config

    done = vidpipe_cli("detect", str(sample), "--motion-threshold", "0", "--max-frames", "2")
    assert done.returncode != 0
    assert "error: --motion-threshold must be grey levels from 1 to 255, got 0" in done.stderr
    with pytest.raises(VidpipeError, match=r"^motion\.threshold must be grey levels from 1 to 255, got 0"):
        stream_config(motion=MotionOptions(threshold=0))  # (Python: the option's path)
    assert "Traceback" not in done.stderr
    config = tmp_path / "serve.yaml"
    config.write_text("streams:\n  cam:\n    uri: x.mp4\n    motion: {min_area: 0, masks: ['1,2']}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    problems = caught.value.problems
    assert any("motion.min_area: must be a fraction" in line for line in problems), problems
    assert any("motion.masks: '1,2': expected x,y pairs" in line for line in problems), problems
    from vidpipe.serve.config import StreamConfig

    spec = StreamConfig(uri="x.mp4", motion={"mode": "on", "threshold": 30, "masks": [CLOCK]})
    assert spec.motion.options() == MotionOptions("on", 30, MotionOptions().min_area, (CLOCK,))
    assert StreamConfig(uri="x.mp4").motion is None  # (the run's: auto)
    assert StreamConfig(uri="x.mp4").options(StreamOptions()).motion == MotionOptions()


def test_motion_options_cross_to_a_cluster_worker():
    import dataclasses

    from vidpipe.cluster.worker import stream_options

    options = StreamOptions(detect_fps=5, motion=MotionOptions(mode="on", masks=(CLOCK,)))
    assert stream_options(dataclasses.asdict(options)) == options


def test_gated_frames_are_counted_in_the_figures_and_the_metrics():
    from vidpipe.pipeline.stats import Stats
    from vidpipe.serve.metrics import Metrics
    from vidpipe.types import Detections, Frame, Result

    stats = Stats()
    picture = torch.zeros((4, 4, 3), dtype=torch.uint8)
    for i, motion in enumerate([True, False, False, None]):
        stats.count(Result(Frame(picture, i, i / 5, "cam", motion=motion), Detections.empty()))
    assert stats.streams["cam"].gated == 2 and stats.snapshot()["streams"]["cam"]["gated"] == 2
    assert "motion      2 of 4 frames gated" in stats.summary()
    text = Metrics(stats.snapshot, lambda: None).text().decode()
    assert 'vidpipe_frames_gated_total{stream="cam"} 2.0' in text


def test_a_gated_frame_of_a_stream_never_detected_is_detected(sample):
    """When a live stream's detected frames were all dropped (late, at start-up), its first gated frame
    (whose picture is the last one decoded) goes to the detector: nothing to carry yet."""
    import threading

    from scenes import PERSON_FRAME

    from vidpipe import models
    from vidpipe.pipeline.batcher import Batcher, End
    from vidpipe.pipeline.engine import Engine
    from vidpipe.pipeline.stats import Stats
    from vidpipe.types import Frame

    with vidpipe.open(sample) as src:
        picture = next(f.tensor for f in src if f.index == PERSON_FRAME)
    stats = Stats()
    batcher = Batcher(4, 0.05, threading.Event())
    batcher.add_stream(stats.stream("cam"))
    for i in range(3):
        batcher.put("cam", Frame(picture, i, i / 5, "cam", motion=False))
    batcher.put("cam", End("cam"))
    results = [r for r in Engine(models.load("ssd_mobilenet_v2_coco"), 1, stats).run(batcher) if not isinstance(r, End)]
    assert [r.frame.motion for r in results] == [True, False, False]
    assert "person" in results[0].detections.labels
    assert all(r.detections is results[0].detections for r in results[1:])  # carried


def test_a_mask_grid_and_a_zone_share_one_inside_rule():
    """The motion mask's grid (numpy, every pixel of the small frame at once) and a zone's point test
    (one point) are one even-odd rule: they agree on every pixel of a concave polygon, edges included."""
    from vidpipe.analytics.geometry import inside

    polygon = "10,10,150,10,150,80,80,30,10,80"  # a V cut into a rectangle (concave)
    grid = mask_grid((polygon,), 160, 90, 1)
    points = [(float(x), float(y)) for x, y in [(10, 10), (150, 10), (150, 80), (80, 30), (10, 80)]]
    expected = [[not inside(points, (float(x), float(y))) for x in range(160)] for y in range(90)]
    assert grid.tolist() == expected
    assert not grid[20, 80] and grid[60, 80] and grid[5, 5]  # in the band above the V; in its notch; outside
