"""One configuration model, one rule per option: the same bad values fed through every front door (the
CLI's flags, Python's keywords, the service's YAML and API bodies, the element's properties, the cluster's
pipeline) are refused with the same words, each front door naming the option in its own spelling."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import SAMPLE, vidpipe_cli
from pydantic import ValidationError

import vidpipe
from vidpipe import models
from vidpipe.errors import VidpipeError
from vidpipe.gst import Gst

pytestmark = pytest.mark.slow

# (option, bad value, the words every front door says); the values are as each front door takes them
CASES = {
    "detect_fps": (1e-05, "must be at least 0.0001 (one frame in 10,000 s), got 1e-05"),  # (0 frames a day)
    "max_frames": (0, "must be at least 1, got 0"),
    "batch": (0, "must be at least 1, got 0"),
    "threshold": (1.5, "must be a number from 0 to 1, got 1.5"),
    "classes": (",", "no class name given in ',' (expected e.g. person,car)"),
    "lines": ("door=1,2,3", "line door: expected 4 numbers x1,y1,x2,y2, got 3"),
    "zones": ("desk=0,0,10,0,20,0", "zone desk: its points are on one line"),
    "stream": ("front door", "invalid stream name 'front door': it holds ' '"),
}
STREAM_KEYS = ("detect_fps", "max_frames", "lines", "zones")
MODEL_KEYS = ("batch", "threshold", "classes")
FLAGS = {"detect_fps": "--detect-fps", "max_frames": "--max-frames", "batch": "--batch", "threshold": "--threshold",
         "classes": "--classes", "lines": "--line", "zones": "--zone"}  # fmt: skip


@pytest.fixture(scope="module")
def detector():
    return models.load("ssd_mobilenet_v2_coco", backend="torch", precision="fp32")


def _python_error(call) -> str:
    with pytest.raises(VidpipeError) as raised:
        call()
    return str(raised.value)


def test_the_cli_refuses_each_bad_value_with_the_rule_s_words():
    for key, (value, words) in CASES.items():
        if key == "stream":
            args = [f"{value}={SAMPLE}", "--max-frames", "2"]
        elif key == "max_frames":
            args = [str(SAMPLE), "--max-frames", str(value)]
        else:
            args = [str(SAMPLE), FLAGS[key], str(value), "--max-frames", "2"]
        result = vidpipe_cli("detect", *args)
        errors = [line for line in result.stderr.splitlines() if line.startswith("vidpipe: error")]
        assert result.returncode == 2 and len(errors) == 1 and words in errors[0], (key, result.stderr)
        assert "Traceback" not in result.stderr
        if key in FLAGS and key not in ("lines", "zones"):  # (a line's own words name it: "line door: ...")
            assert errors[0].startswith(f"vidpipe: error: {FLAGS[key]} {words}"), errors[0]


def test_python_refuses_each_bad_value_with_the_rule_s_words(detector):
    value = {key: case[0] for key, case in CASES.items()}
    pipeline = vidpipe.Pipeline(detector=detector, keep_alive=True)
    said = {
        "detect_fps": _python_error(lambda: pipeline.add_stream(str(SAMPLE), detect_fps=value["detect_fps"])),
        "max_frames": _python_error(lambda: pipeline.add_stream(str(SAMPLE), max_frames=value["max_frames"])),
        "batch": _python_error(lambda: vidpipe.Pipeline(detector=detector, keep_alive=True, batch=0)),
        "threshold": _python_error(lambda: models.load("ssd_mobilenet_v2_coco", threshold=value["threshold"])),
        "classes": _python_error(lambda: vidpipe.Pipeline(detector=detector, keep_alive=True, classes=",")),
        "lines": _python_error(lambda: pipeline.add_stream(str(SAMPLE), lines=[value["lines"]])),
        "zones": _python_error(lambda: pipeline.add_stream(str(SAMPLE), zones=[value["zones"]])),
        "stream": _python_error(lambda: pipeline.add_stream(str(SAMPLE), name=value["stream"])),
    }
    for key, (_, words) in CASES.items():
        assert words in said[key], (key, said[key])
    assert said["detect_fps"].startswith("detect_fps must be") and said["batch"].startswith("batch must be")
    # the options of every stream of a run, as Python makes them, keep the same rules
    assert CASES["detect_fps"][1] in _python_error(lambda: vidpipe.StreamOptions(detect_fps=1e-05))
    assert "must be a number above 0, got -1" in _python_error(lambda: vidpipe.StreamOptions(detect_fps=-1))
    assert CASES["max_frames"][1] in _python_error(lambda: vidpipe.StreamOptions(max_frames=0))
    assert pipeline.streams() == []  # nothing was added by a refused call


def test_the_cluster_refuses_each_bad_value_before_it_starts(detector):
    """The cluster's pipeline checks (and sends its workers) the same configuration: a bad value is
    refused here, before Ray is even started."""
    value = {key: case[0] for key, case in CASES.items()}
    name = "ssd_mobilenet_v2_coco"
    pipeline = vidpipe.Pipeline(detector=name, keep_alive=True, cluster="ray")
    said = {
        "detect_fps": _python_error(lambda: pipeline.add_stream(str(SAMPLE), detect_fps=value["detect_fps"])),
        "max_frames": _python_error(lambda: pipeline.add_stream(str(SAMPLE), max_frames=value["max_frames"])),
        "batch": _python_error(lambda: vidpipe.Pipeline(detector=name, keep_alive=True, cluster="ray", batch=0)),
        "threshold": _python_error(
            lambda: vidpipe.Pipeline(detector={"name": name, "threshold": 1.5}, keep_alive=True, cluster="ray")
        ),
        "classes": _python_error(
            lambda: vidpipe.Pipeline(detector={"name": name, "classes": ","}, keep_alive=True, cluster="ray")
        ),
        "lines": _python_error(lambda: pipeline.add_stream(str(SAMPLE), lines=[value["lines"]])),
        "zones": _python_error(lambda: pipeline.add_stream(str(SAMPLE), zones=[value["zones"]])),
        "stream": _python_error(lambda: pipeline.add_stream(str(SAMPLE), name=value["stream"])),
    }
    for key, (_, words) in CASES.items():
        assert words in said[key], (key, said[key])
    assert not pipeline.running


def test_the_service_refuses_each_bad_value_in_its_file_and_its_api(tmp_path, detector):
    from fastapi.testclient import TestClient

    from vidpipe.serve.app import create_app
    from vidpipe.serve.config import ServeConfig
    from vidpipe.serve.service import Service

    value = {key: case[0] for key, case in CASES.items()}
    streams = {key: {"uri": "testsrc://", key: [value[key]] if key in ("lines", "zones") else value[key]}
               for key in STREAM_KEYS}  # fmt: skip
    streams[value["stream"]] = {"uri": "testsrc://"}
    config = {"model": {key: value[key] for key in MODEL_KEYS}, "streams": streams, "output_dir": str(tmp_path)}
    path = tmp_path / "vidpipe.yaml"
    path.write_text(yaml.safe_dump(config))
    result = vidpipe_cli("serve", "--check", "--config", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    said = result.stderr
    for key, (_, words) in CASES.items():
        where = f"model.{key}" if key in MODEL_KEYS else f"streams.{key}.{key}" if key in STREAM_KEYS else "streams"
        line = next((x for x in said.splitlines() if words in x and where in x), None)
        assert line is not None and str(path) in line, (key, said)

    # the API's bodies: the same model, the same words (422, nothing added)
    service = Service(ServeConfig(model={"backend": "torch", "precision": "fp32"}, output_dir=str(tmp_path / "out")))
    with TestClient(create_app(service, manage_service=False), base_url="http://127.0.0.1") as client:
        for key in STREAM_KEYS:
            body = {"uri": "testsrc://", key: [value[key]] if key in ("lines", "zones") else value[key]}
            answer = client.put(f"/api/streams/{key}", json=body)
            assert answer.status_code == 422 and CASES[key][1] in json.dumps(answer.json()), (key, answer.text)
        answer = client.put(f"/api/streams/{value['stream']}", json={"uri": "testsrc://"})
        assert answer.status_code == 422 and CASES["stream"][1] in answer.text, answer.text
        assert client.get("/api/streams").json() == []
    with pytest.raises(ValidationError, match=CASES["threshold"][1]):
        ServeConfig.model_validate({"model": {"threshold": 1.5}})


def test_the_element_refuses_each_bad_property_with_the_rule_s_words():
    from vidpipe.element import register

    register()
    value = {key: case[0] for key, case in CASES.items()}
    properties = {"batch": ("batch-size", 0), "threshold": ("threshold", 1.5), "classes": ("classes", ","),
                  "lines": ("lines", value["lines"]), "zones": ("zones", value["zones"]),
                  "stream": ("stream", value["stream"])}  # fmt: skip
    for key, (prop, bad) in properties.items():
        pipeline = Gst.parse_launch("videotestsrc num-buffers=2 ! videoconvert ! vidpipe_detect name=d ! fakesink")
        pipeline.get_by_name("d").set_property(prop, bad)
        pipeline.set_state(Gst.State.PLAYING)
        try:
            ended = Gst.MessageType.ERROR | Gst.MessageType.EOS
            message = pipeline.get_bus().timed_pop_filtered(60 * Gst.SECOND, ended)
            assert message is not None and message.type == Gst.MessageType.ERROR, key
            text = message.parse_error()[0].message
        finally:
            pipeline.set_state(Gst.State.NULL)
        assert CASES[key][1] in text, (key, text)
        if key in ("batch", "threshold", "classes"):
            assert text.startswith(f"vidpipe_detect: {prop} {CASES[key][1]}"), text
