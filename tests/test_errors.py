"""Bad input: a specific exception in the API, one clear line and exit code 2 in the CLI."""

from __future__ import annotations

import pytest
from conftest import vidpipe_cli

import vidpipe
from media import reference_decode
from vidpipe import errors

CASES = [
    ("missing", errors.SourceNotFoundError, "no such file"),
    ("directory", errors.SourceNotFoundError, "is a directory"),
    ("empty", errors.NotAVideoError, "empty"),
    ("text", errors.NotAVideoError, "not a video file"),
    ("audio", errors.NoVideoStreamError, "no video stream"),
    ("no_moov", errors.TruncatedSourceError, "moov"),
    ("scheme", errors.UnsupportedSourceError, "unsupported source scheme"),
]


def _input(case, bad_files, tmp_path):
    if case == "missing":
        return str(tmp_path / "missing.mp4")
    if case == "directory":
        return str(tmp_path)
    if case == "scheme":
        return "gopher://example/clip.mp4"
    return str(bad_files[case])


@pytest.mark.parametrize(("case", "exc", "cause"), CASES)
def test_api_raises_specific_error(case, exc, cause, bad_files, tmp_path):
    source = _input(case, bad_files, tmp_path)
    with pytest.raises(exc, match=cause) as info, vidpipe.open(source) as src:
        list(src)
    assert source in str(info.value)
    assert isinstance(info.value, vidpipe.VidpipeError)


@pytest.mark.parametrize(("case", "exc", "cause"), CASES)
def test_cli_prints_one_line(case, exc, cause, bad_files, tmp_path):
    source = _input(case, bad_files, tmp_path)
    result = vidpipe_cli("decode", "--quiet", source)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert source in lines[0] and cause in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_decoder_names_element_and_package(sample):
    # Lower the H.264 decoders' rank for this process only: decodebin then finds no decoder.
    env = {"GST_PLUGIN_FEATURE_RANK": "avdec_h264:NONE,openh264dec:NONE"}
    result = vidpipe_cli("probe", str(sample), env=env)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert str(sample) in line and "H.264" in line and "gstreamer1.0-libav" in line


def test_truncated_mp4_delivers_frames_then_reports(bad_files):
    path = bad_files["truncated"]
    decodable = reference_decode(path, 320, 240).shape[0]
    assert 0 < decodable < 90
    got = []
    with pytest.raises(errors.TruncatedSourceError, match="truncated") as info, vidpipe.open(path) as src:
        assert src.info.frames == 90
        got.extend(src)
    assert len(got) == decodable == info.value.frames_decoded


def test_truncated_mp4_cli_exit_code(bad_files):
    result = vidpipe_cli("decode", "--quiet", str(bad_files["truncated"]))
    assert result.returncode == 2
    assert "frames missing" in result.stderr and "truncated" in result.stderr and "Traceback" not in result.stderr


def test_unknown_test_pattern():
    with pytest.raises(errors.UnsupportedSourceError, match="unknown test pattern"):
        vidpipe.open("testsrc://nosuchpattern")
