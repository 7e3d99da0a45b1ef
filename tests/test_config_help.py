"""Config help (issue 34): "did you mean" for unknown keys, the mapping a place expects, and
``vidpipe serve --check`` that validates a file and exits without starting anything."""

from __future__ import annotations

import pytest
from conftest import vidpipe_cli

from vidpipe.serve.config import ConfigError, load_config


def _problems(tmp_path, text: str) -> list[str]:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_unknown_keys_get_did_you_mean(tmp_path):
    lines = _problems(
        tmp_path,
        "cameras: {shop: {uri: x}}\n"
        "streams: {cam: {uri: x, tracks: true, detect_fsp: 5}}\n"
        "mqtt: {host: localhost, topic_prefix: shop}\n"
        "modle: {name: x}\n",
    )
    text = "\n".join(lines)
    assert "cameras: Extra inputs are not permitted; did you mean 'streams'?" in text, lines
    assert "streams.cam.tracks: Extra inputs are not permitted; did you mean 'track'?" in text, lines
    assert "streams.cam.detect_fsp: Extra inputs are not permitted; did you mean 'detect_fps'?" in text, lines
    assert "mqtt.topic_prefix: Extra inputs are not permitted; did you mean 'prefix'?" in text, lines
    assert "modle: Extra inputs are not permitted; did you mean 'model'?" in text, lines
    assert len(lines) == 5  # still one line per problem


def test_a_key_with_nothing_near_lists_the_known_keys(tmp_path):
    (line,) = _problems(tmp_path, "web: {zzz: 1}\n")
    assert line.endswith("known keys here: fps, height, hosts, max_viewers, quality"), line


def test_a_scalar_where_a_mapping_goes_says_which_mapping(tmp_path):
    (line,) = _problems(tmp_path, "streams: {cam: {uri: x, record: true}}\n")
    expected = "expected a mapping such as {json: true, csv: true, video: true, annotated: true}"
    assert "streams.cam.record:" in line and expected in line


def test_check_validates_and_exits_without_starting(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("streams:\n  cam: {uri: testsrc://ball, track: true, zones: ['desk=0,0,10,0,10,10']}\n")
    result = vidpipe_cli("serve", "--check", "--config", str(good), "--port", "1")  # port 1: never listened on
    assert result.returncode == 0, result.stderr
    assert f"{good}: valid (1 stream(s))" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: {}\nmqtt: {host: h, topic_prefix: x}\nstreams: {cam: {uri: x, record: true}}\n")
    result = vidpipe_cli("serve", "--check", "--config", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith(f"vidpipe: error: {bad}: ") for line in lines), lines
    assert "Traceback" not in result.stderr and result.stdout == ""
    state = tmp_path / "good.state.json"  # the API's state file beside it is checked too
    state.write_text("{not json")
    result = vidpipe_cli("serve", "--check", "--config", str(good))
    assert result.returncode == 2 and "unusable state file" in result.stderr
    state.write_text('{"streams": {"cam": ' + "[" * 100_000 + "]" * 100_000 + "}}")  # deeper than Python recurses
    result = vidpipe_cli("serve", "--check", "--config", str(good))
    assert result.returncode == 2 and "unusable state file" in result.stderr and "Traceback" not in result.stderr
    state.unlink()
    taken = tmp_path / "taken"
    taken.write_text("a file where the output folder should be")
    good.write_text(f"output_dir: {taken}\nstreams:\n  cam: {{uri: testsrc://ball}}\n")
    result = vidpipe_cli("serve", "--check", "--config", str(good))
    assert result.returncode == 2 and f"output_dir: {taken}: cannot be used (not a folder)" in result.stderr
