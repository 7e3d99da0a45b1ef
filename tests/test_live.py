"""A pipeline that lives: streams added and removed while it runs, outputs opened and closed per stream,
sinks that fail alone, analytics per stream, bounded state, results and errors that travel."""

from __future__ import annotations

import inspect
import itertools
import json
import pickle
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import start_server, vidpipe_cli

import vidpipe
from media import first_frames
from vidpipe import errors, models
from vidpipe.analytics.plan import Analysis
from vidpipe.errors import VidpipeError
from vidpipe.pipeline import StreamsFailedError
from vidpipe.pipeline.stats import EVENTS_KEPT, Stats
from vidpipe.sinks import BaseSink, JsonlSink, VideoSink
from vidpipe.types import Detections, Event, Frame, Result

LIVE = "testsrc://ball?width=320&height=240&fps=30&frames=1000000&live=1"


@pytest.fixture(scope="module")
def detector():
    return models.load("ssd_mobilenet_v2_coco")


@pytest.fixture(scope="module")
def clip(sample, tmp_path_factory) -> Path:
    return first_frames(sample, tmp_path_factory.mktemp("live") / "clip.mp4", 45)


def _frames(path: Path) -> int:
    with vidpipe.open(path) as src:
        return sum(1 for _ in src)


def _until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- 1, 2: streams at run time, outputs per stream ------------------------------------------------------------


def test_streams_come_and_go_while_the_others_run(detector, clip, tmp_path):
    server, url = start_server()
    events: list[Event] = []
    results: list[Result] = []
    lock = threading.Lock()

    def on_result(result: Result) -> None:
        with lock:
            results.append(result)

    pipeline = vidpipe.Pipeline(
        detector=detector,
        keep_alive=True,
        sinks=[JsonlSink(tmp_path / "all.jsonl"), VideoSink(tmp_path / "{stream}.mp4")],
        on_result=[on_result],
        on_event=[events.append],
    )
    pipeline.start()
    time.sleep(0.3)  # idles with no stream
    assert pipeline.streams() == []
    assert pipeline.add_stream(LIVE, "steady") == "steady"
    assert pipeline.add_stream(f"rtsp={url}") == "rtsp"  # NAME=URI names it
    assert pipeline.add_stream(str(clip)) == "0"  # unnamed: the lowest free number
    _until(lambda: {"steady", "rtsp", "0"} <= {r.frame.stream for r in list(results)})
    pipeline.remove_stream("rtsp")  # returns once its video is finalised
    assert _frames(tmp_path / "rtsp.mp4") > 0  # plays while the pipeline goes on
    assert "rtsp" not in {s["name"] for s in pipeline.streams()}
    pipeline.add_stream(f"rtsp={url}")  # the same name again: a new file, the finished one untouched
    before = (tmp_path / "rtsp.mp4").read_bytes()
    _until(lambda: sum(1 for r in list(results) if r.frame.stream == "rtsp") > 40)
    pipeline.remove_stream("rtsp")
    assert (tmp_path / "rtsp.mp4").read_bytes() == before and _frames(tmp_path / "rtsp-2.mp4") > 0
    steady = [r.frame.wall for r in results if r.frame.stream == "steady"]
    pipeline.stop()
    stats = pipeline.wait(60)
    server.kill()
    server.wait(10)
    kinds = [(e.stream, e.kind) for e in events]
    assert kinds.count(("rtsp", "removed")) == 2 and ("0", "ended") in kinds
    assert "rtsp" not in stats.streams  # a removed stream's figures go with it
    lines = _lines(tmp_path / "all.jsonl")
    assert [x["event"] for x in lines if x.get("stream") == "rtsp" and "event" in x].count("removed") == 2
    assert _frames(tmp_path / "steady.mp4") == stats.streams["steady"].frames
    gaps = [b - a for a, b in itertools.pairwise(steady)]
    assert max(gaps) < 1.0  # the other streams never paused


def test_without_keep_alive_it_ends_with_its_last_stream(detector, clip):
    pipeline = vidpipe.Pipeline(detector=detector, sources=[str(clip)])
    pipeline.start()
    added = pipeline.add_stream(str(clip), "second", max_frames=5)
    stats = pipeline.wait(120)
    assert stats.streams["0"].frames == _frames(clip) and stats.streams[added].frames == 5
    with pytest.raises(VidpipeError, match="has stopped"):
        pipeline.add_stream(str(clip))


def test_remove_unknown_and_duplicate_names(detector, clip):
    pipeline = vidpipe.Pipeline(detector=detector, keep_alive=True)
    pipeline.add_stream(str(clip), "a")
    with pytest.raises(VidpipeError, match="in use"):
        pipeline.add_stream(str(clip), "a")
    with pytest.raises(VidpipeError, match="invalid stream name"):
        pipeline.add_stream(str(clip), "../x")
    with pytest.raises(KeyError):
        pipeline.remove_stream("nope")
    pipeline.remove_stream("a")  # before start: dropped at once
    assert pipeline.streams() == []
    pipeline.start()
    pipeline.stop()
    pipeline.wait(30)


def test_per_stream_options(detector, clip):
    seen: list[Result] = []
    pipeline = vidpipe.Pipeline(detector=detector, keep_alive=True, on_result=[seen.append])
    pipeline.start()
    pipeline.add_stream(str(clip), "slow", detect_fps=10, lines=["door=100,0,100,288"])
    pipeline.add_stream(str(clip), "full")
    _until(lambda: {s["state"] for s in pipeline.streams()} == {"ended"})
    pipeline.stop()
    stats = pipeline.wait(60)
    total = _frames(clip)
    assert stats.streams["full"].frames == total
    # at most 10 of each second of stream time: one frame per 100 ms slot of the clip's own span (its
    # cut end's timestamps are uneven, so not simply a third of the frames)
    pts = [r.frame.pts for r in seen if r.frame.stream == "full"]
    assert abs(stats.streams["slow"].frames - ((max(pts) - min(pts)) * 10 + 1)) <= 1, (stats.streams["slow"], pts)
    assert pipeline.chain("slow").lines is not None and pipeline.chain("full").lines is None
    with pytest.raises(VidpipeError, match="detect_fps"):
        pipeline.add_stream(str(clip), detect_fps=float("nan"))


# -- 3: a sink that fails alone ------------------------------------------------------------------------------


class Exploding(BaseSink):
    """Raises at its 20th result."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, result: Result) -> None:
        self.count += 1
        if self.count == 20:
            raise RuntimeError("broker gone")


def test_a_failing_sink_is_isolated_and_the_others_complete(detector, clip, tmp_path):
    events: list[Event] = []
    jsonl = tmp_path / "o.jsonl"
    pipeline = vidpipe.Pipeline(
        detector=detector,
        sources=[("a", str(clip)), ("b", str(clip)), ("c", str(clip))],
        sinks=[Exploding(), JsonlSink(jsonl), VideoSink(tmp_path / "{stream}.mp4")],
        on_event=[events.append],
        sink_errors="isolate",
    )
    stats = pipeline.run()
    frames = [x for x in _lines(jsonl) if "event" not in x]
    total = _frames(clip)
    assert len(frames) == 3 * total and all(_frames(tmp_path / f"{n}.mp4") == total for n in "abc")
    assert stats.sink_errors == {"Exploding": 1}
    assert [e.kind for e in events].count("sink_failed") == 1
    assert "sink_failed" in [x.get("event") for x in _lines(jsonl)]


def test_a_failing_sink_stops_the_run_by_default(detector, clip, tmp_path):
    pipeline = vidpipe.Pipeline(
        detector=detector, sources=[str(clip)], sinks=[Exploding(), VideoSink(tmp_path / "v.mp4")]
    )
    with pytest.raises(errors.OutputError, match="Exploding: RuntimeError: broker gone"):
        pipeline.run()
    assert 0 < _frames(tmp_path / "v.mp4") < _frames(clip)  # stopped at once, the video still finalised


# -- 4: lines and zones counted per stream -------------------------------------------------------------------


def _tracked(stream: str, index: int, x: float) -> Result:
    frame = Frame(torch.zeros(240, 320, 3, dtype=torch.uint8), index, index / 10, stream)
    found = Detections(
        torch.tensor([[x - 10, 100.0, x + 10, 150.0]]), torch.tensor([0.9]), torch.tensor([1]), ["person"]
    ).with_track_ids(torch.tensor([7]))
    return Result(frame, found)


def test_a_line_without_stream_counts_each_stream_apart():
    analysis = Analysis(lines=["door=100,0,100,240"], track=True)
    chains = {name: analysis.chain(name) for name in ("a", "b")}
    for name, chain in chains.items():
        for i, x in enumerate((150, 140, 130, 90, 80, 70, 60)):  # track 7 in both streams crosses once
            chain.lines(_tracked(name, i, x))
    assert chains["a"].lines.totals() == {"door": {"in": 0, "out": 1}}
    assert chains["b"].lines.totals() == {"door": {"in": 0, "out": 1}}
    caption = chains["b"].lines(_tracked("b", 9, 50)).shapes[-1].caption
    assert caption == "door  in 0  out 1"
    from vidpipe.analytics.plan import summary

    assert "line        door (all 2 streams): in 0, out 2" in summary(chains)


# -- 5, 6: bounded state, results and errors that travel ----------------------------------------------------


def test_event_history_is_bounded():
    stats = Stats()
    for _i in range(EVENTS_KEPT + 500):
        stats.note_event(Event("a", "frames_missing", "x", fields={"missing": 1}))
    assert len(stats.events) == EVENTS_KEPT and stats.missing["frames"] == EVENTS_KEPT + 500
    snapshot = stats.snapshot()
    json.dumps(snapshot)  # plain data
    assert snapshot["missing"]["places"] == EVENTS_KEPT + 500


def test_result_record_is_pixel_free_and_json_ready(detector, clip):
    result = next(iter(vidpipe.detect(str(clip), detector, max_frames=1)))
    record = result.record()
    assert json.loads(json.dumps(record)) == record
    assert set(record) == {"stream", "frame", "pts", "wall", "width", "height", "detections"}
    assert len(pickle.dumps(record)) < 4000  # no pixels


def _exception_classes() -> list[type]:
    found = [errors.VidpipeError, StreamsFailedError]
    found += [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.VidpipeError)]
    return sorted(set(found), key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", _exception_classes(), ids=lambda c: c.__name__)
def test_every_exception_survives_pickle(cls):
    if cls is StreamsFailedError:
        error = cls({"a": errors.SourceNotFoundError("a.mp4: no such file")})
    elif cls is errors.MissingDecoderError:
        error = cls("no decoder", codec="H.265", package="gstreamer1.0-libav")
    elif cls is errors.TruncatedSourceError:
        error = cls("cut", frames_decoded=12)
    elif cls is errors.DamagedSourceError:
        error = cls("damaged", gaps=(1, 2))
    else:
        error = cls("rtsp://admin:secret@cam/s: unreachable")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is cls and str(again) == str(error) and repr(vars(again)) == repr(vars(error))
    assert "secret" not in str(again)


# -- 7, 8: the front doors agree -------------------------------------------------------------------------------


def test_python_and_cli_default_to_the_same_precision(clip, tmp_path):
    from vidpipe.models.base import choose_precision

    signature = inspect.signature(vidpipe.detect)
    assert signature.parameters["precision"].default == "auto"
    expected, _ = choose_precision("auto", torch.device("cpu"))
    result = vidpipe_cli("detect", str(clip), "--max-frames", "2", "--json", str(tmp_path / "o.jsonl"))
    assert f"{expected} on cpu" in result.stderr
    python = [r.record()["detections"] for r in vidpipe.detect(str(clip), max_frames=2)]
    cli = [x["detections"] for x in _lines(tmp_path / "o.jsonl") if "event" not in x]
    assert python == cli


# -- push-style ---------------------------------------------------------------------------------------------


def test_frames_pushed_by_the_caller_go_through_their_streams_chain(detector, clip):
    pipeline = vidpipe.Pipeline(detector=detector, keep_alive=True, track=True)
    with vidpipe.open(clip) as src:
        frames = [f for f in src][:6]
    pushed = []
    for i in range(0, 6, 3):
        pushed += pipeline.process("cam", frames[i : i + 3])
    expected = detector([f.tensor for f in frames])
    assert [len(r.detections) for r in pushed] == [len(d) for d in expected]
    assert all(r.detections.track_ids is not None for r in pushed)
    assert pipeline.stats.frames == 6 and pipeline.chain("cam").tracker is not None
