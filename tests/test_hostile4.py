"""The fourth hostile round: inputs that earlier rounds missed. Each test reproduces one that printed a
traceback, named the wrong cause, overwrote an input or leaked a password, and checks the one line asked
for instead (real GStreamer, real files; nothing mocked)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_on_small_disk, vidpipe_cli

import vidpipe
from vidpipe import models
from vidpipe.errors import ModelError, SourceNotFoundError, UnsupportedSourceError, VidpipeError, WeightsError
from vidpipe.gst.uri import parse_source
from vidpipe.redact import mask_secrets
from vidpipe.serve.app import origin_refused


def _one_line(proc, *needles: str) -> str:
    """The one error line of a failed run, holding each of ``needles`` (and no traceback)."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- sources ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["", "  "])
def test_an_empty_source_is_not_the_current_folder(source):
    with pytest.raises(SourceNotFoundError, match="an empty source"):
        vidpipe.open(source)


def test_an_empty_source_after_a_stream_name_is_one_line():
    _one_line(vidpipe_cli("detect", "door=", "-q"), "an empty source")


def test_a_terminal_escape_in_a_name_is_shown_not_obeyed(tmp_path):
    """A file name holding ESC[2J (clear the screen) went to the terminal as it is."""
    name = str(tmp_path / "cam\x1b[2J\r.mp4")
    line = _one_line(vidpipe_cli("probe", name), "no such file")
    assert "\x1b" not in line and "\r" not in line
    assert "cam\\x1b[2J\\r.mp4: no such file" in line


def test_a_newline_in_a_name_keeps_the_error_and_the_summary_one_line_each(tmp_path, sample):
    """A file name holding a newline gave a two-line error (and a summary whose outputs spanned lines); a
    configuration's problems are still one a line, each prefixed."""
    line = _one_line(vidpipe_cli("probe", str(tmp_path / "cam\nx.mp4")), "no such file")
    assert "cam\\nx.mp4: no such file" in line
    (tmp_path / "in\nput.mp4").symlink_to(sample)
    out = tmp_path / "o\nut.jsonl"
    proc = vidpipe_cli("detect", str(tmp_path / "in\nput.mp4"), "--max-frames", "2", "--json", str(out))
    assert proc.returncode == 0 and out.exists(), proc.stderr
    assert any(row.startswith("outputs ") and "o\\nut.jsonl (" in row for row in proc.stderr.splitlines()), proc.stderr
    proc = vidpipe_cli("detect", str(sample), "--threshold", "2", "--batch", "0")
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 2 and all(row.startswith("vidpipe: error: ") for row in errors), proc.stderr


@pytest.mark.parametrize("url", ["rtsp://", "http://", "https://?x=1", "rtsp://admin:secret@/x"])
def test_a_network_url_without_a_host(url):
    with pytest.raises(UnsupportedSourceError, match="no host in the URL") as caught:
        vidpipe.open(url)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("command", ["probe", "detect"])
def test_a_malformed_url_is_one_line_without_its_password(command):
    proc = vidpipe_cli(command, "cam=rtsp://admin:secret@[::1/x" if command == "detect" else "rtsp://[::1/x")
    line = _one_line(proc, "not a valid URL")
    assert "secret" not in proc.stderr + proc.stdout, line


@pytest.mark.parametrize("size", ["0x0", "-1x5", "100000x100000"])
def test_a_size_gstreamer_cannot_scale_to_is_named_as_the_size(size, sample):
    """It said 'sample.mp4: cannot build the pipeline (could not link scale to sink ...)'."""
    _one_line(vidpipe_cli("decode", str(sample), f"--size={size}"), "--size", "each 1 to 8192 pixels", size)
    with pytest.raises(VidpipeError, match="size must be WIDTHxHEIGHT"):
        vidpipe.open(sample, size=tuple(int(v) for v in size.split("x")))


def test_an_origin_header_that_is_not_a_url_is_refused_not_a_crash():
    assert "cross-origin request refused" in origin_refused({"origin": "http://[x"}, "127.0.0.1:8080")


# -- passwords --------------------------------------------------------------------------------------


def test_a_password_with_an_apostrophe_is_masked():
    url = "rtsp://o'brien:it's3cret@127.0.0.1:1/x"  # RFC 3986 allows the apostrophe in userinfo
    assert mask_secrets(url) == "rtsp://o'brien:***@127.0.0.1:1/x"
    proc = vidpipe_cli("probe", url)
    assert proc.returncode != 0
    assert "3cret" not in proc.stderr + proc.stdout, proc.stderr


def test_a_percent_encoded_password_is_masked_where_it_is_shown_decoded():
    parse_source("rtsp://admin:my%20pa55@127.0.0.1:1/x")  # (seen whole, as a source is)
    shown = mask_secrets("cannot open rtsp://admin:my pa55@127.0.0.1:1/x (decoded by a library)")
    assert "pa55" not in shown and "rtsp://admin:***@127.0.0.1:1/x" in shown


@pytest.mark.parametrize("password", ["my s3cret", 'a"s3cret', "a<s3cret>", "a\\s3cret"])
def test_a_password_with_a_character_that_ends_a_url_is_masked(password):
    """A space, a double quote, angle brackets or a backslash end a URL for the masking rules: the rest of
    the password was shown. Once the source has been seen whole, its password is masked anywhere."""
    url = f"rtsp://admin:{password}@127.0.0.1:1/x"
    proc = vidpipe_cli("probe", url)
    assert proc.returncode != 0
    assert "s3cret" not in proc.stderr + proc.stdout, proc.stderr
    _one_line(proc, "rtsp://admin:***@127.0.0.1:1/x")
    parse_source(url)  # (this process sees it whole too)
    assert "s3cret" not in mask_secrets(json.dumps({"uri": url, "in": f"{url}: cannot connect"}))


# -- model files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["folder", "empty"])
@pytest.mark.parametrize(
    ("name", "weights", "error"),
    [("model.onnx", False, ModelError), ("model.pt", False, ModelError), ("ssd_mobilenet_v2_coco", True, WeightsError)],
)
def test_model_and_weights_files_that_are_folders_or_empty(kind, name, weights, error, tmp_path):
    path = tmp_path / (name if not weights else "weights.pth")
    if kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"")
    expected = "is a folder, not a file" if kind == "folder" else r"is empty \(0 bytes\)"
    with pytest.raises(error, match=expected):
        models.load(name if weights else str(path), weights=str(path) if weights else None)


def test_a_model_or_weights_given_as_a_pathlib_path(sample, tmp_path):
    """models.load(Path) was an AttributeError ('PosixPath' has no 'lower'); detect(model=Path) a pydantic line."""
    with pytest.raises(ModelError, match="no such ONNX file"):
        models.load(tmp_path / "nowhere.onnx")
    with pytest.raises(ModelError, match="no such ONNX file"):
        next(vidpipe.detect(sample, model=tmp_path / "nowhere.onnx"))
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightsError, match="empty"):
        next(vidpipe.detect(sample, model="ssd300", weights=tmp_path / "empty.pth"))
    with pytest.raises(ModelError, match="model must be a name"):
        models.load(None)


@pytest.mark.parametrize("content", [b"", b"\x80\x02not a pickle" * 500])
def test_a_damaged_cached_torchvision_checkpoint_is_a_weights_error(content, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # torch.hub's folder, read at each call
    cached = tmp_path / "hub" / "checkpoints" / "ssdlite320_mobilenet_v3_large_coco-a79551df.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(content)  # a download cut off, a disk error
    with pytest.raises(WeightsError, match="cannot load the cached ssdlite320_mobilenet_v3_large weights"):
        models.load("torchvision:ssdlite320_mobilenet_v3_large")


def test_a_torchscript_file_that_is_not_one_is_one_line(tmp_path):
    garbage = tmp_path / "model.pt"
    garbage.write_bytes(b"\x00\x01not a zip archive" * 100)
    _one_line(vidpipe_cli("detect", "testsrc://", "--model", str(garbage)), "not a loadable TorchScript file")


def test_a_names_file_that_is_not_yaml_is_one_line(tmp_path):
    """PyYAML's message spans six lines, with a drawing of where; the error is one line naming the file."""
    from vidpipe.models.onnx import read_names

    names = tmp_path / "names.yaml"
    names.write_text("names: [person, car\n")
    with pytest.raises(ModelError) as caught:
        read_names(names)
    assert "\n" not in str(caught.value)
    assert f"--names {names}: not valid YAML at line 2" in str(caught.value)


def test_export_never_writes_over_its_own_weights(tmp_path):
    weights = tmp_path / "weights.onnx"
    weights.write_bytes(b"the only copy of a week of training")
    _one_line(vidpipe_cli("export", str(weights), "--weights", str(weights)), "is the input")
    assert weights.read_bytes() == b"the only copy of a week of training"


def test_a_graph_on_a_full_disk_says_so_and_leaves_no_part(tmp_path):
    """It said 'dot failed: Error: gvwrite_no_z problem 8192' and left an empty picture."""
    disk = tmp_path / "disk"
    cli = f"{shlex.quote(sys.executable)} -m vidpipe decode 'testsrc://?frames=2' -q --graph {disk}/graph.png"
    result = run_on_small_disk(disk, "1m", f"head -c 1000000 /dev/zero > {disk}/fill; {cli}; echo rc=$?; ls -A {disk}")
    assert "graph.png: cannot write the graph (No space left on device)" in result.stderr, result.stderr
    assert "rc=2" in result.stdout
    assert result.stdout.split("rc=2", 1)[1].split() == ["fill"]  # no picture, no part of one


# -- standard streams -------------------------------------------------------------------------------


def _sh(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120)


def test_a_closed_stderr_loses_no_result(sample, tmp_path):
    """With ``2>&-`` detect died at its progress bar (sys.stderr None): exit 1 and no JSONL at all."""
    out = tmp_path / "d.jsonl"
    cli = f"{shlex.quote(sys.executable)} -m vidpipe"
    result = _sh(f"exec 2>&-; {cli} detect {sample} --max-frames 3 --json {out}; echo rc=$?")
    assert result.stdout.strip().endswith("rc=0"), result.stdout
    assert sum('"detections"' in line for line in out.read_text().splitlines()) == 3


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["probe", "{sample}"], ["probe", "--json", "{sample}"], ["models"]])
def test_standard_output_on_a_full_disk_is_one_line(args, sample):
    """``vidpipe probe clip.mp4 > full/disk/info.txt`` was an OSError traceback."""
    cli = " ".join([shlex.quote(sys.executable), "-m", "vidpipe", *(a.format(sample=sample) for a in args)])
    result = _sh(f"{cli} > /dev/full")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == "vidpipe: error: standard output: cannot write (No space left on device)"


# -- privacy --------------------------------------------------------------------------------------


def test_a_misspelt_label_to_blur_is_refused_not_silently_left_in_the_clear(sample):
    """``--blur persn`` ran, exit 0, blurring nothing (``--classes persn`` was already refused)."""
    _one_line(vidpipe_cli("detect", str(sample), "-q", "--max-frames", "1", "--blur", "persn"),
              "unknown class(es) to blur: persn")  # fmt: skip
    with pytest.raises(VidpipeError, match="to blur: persn"):
        vidpipe.Pipeline(str(sample), models.load(), blur=["person", "persn"])


# -- the service ----------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["-1", "70000"])
def test_a_port_out_of_range_is_one_line(port):
    """It was an OverflowError traceback from bind()."""
    _one_line(vidpipe_cli("serve", "--port", port), f"--port must be 0 to 65535, got {port}")


def test_decode_never_draws_its_graph_over_the_input(tmp_path):
    """A picture is a source too: ``decode photo.png --graph photo.png`` replaced the photo by the graph."""
    photo = tmp_path / "photo.png"
    subprocess.run(["gst-launch-1.0", "-q", "videotestsrc", "num-buffers=1", "!", "pngenc", "!", "filesink",
                    f"location={photo}"], check=True)  # fmt: skip
    before = photo.read_bytes()
    _one_line(vidpipe_cli("decode", str(photo), "-q", "--graph", str(photo)), "is the input")
    assert photo.read_bytes() == before


@pytest.mark.parametrize("option", ["--csv", "--summary"])
def test_detect_never_writes_over_its_sources_file(option, sample, tmp_path):
    """``--sources cams.csv --csv cams.csv`` replaced the list of cameras (their passwords too) by boxes."""
    cams = tmp_path / ("cams.csv" if option == "--csv" else "cams.json")
    cams.write_text(f"door={sample}\n")
    _one_line(vidpipe_cli("detect", "--sources", str(cams), "-q", "--max-frames", "1", option, str(cams)),
              f"{option} {cams}: is the input")  # fmt: skip
    assert cams.read_text() == f"door={sample}\n"


# -- the event store and its command ----------------------------------------------------------------


def test_a_configuration_that_is_not_utf8_is_one_line(tmp_path):
    config = tmp_path / "vidpipe.yaml"
    config.write_bytes(b"\xff\xfeoutput_dir: out\n")
    _one_line(vidpipe_cli("events", "--config", str(config)), str(config), "not UTF-8")


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--since", "nonsense"], "--since: 'nonsense'"), (["--until", "nan"], "--until: 'nan' is not a time"),
     (["--limit", "0"], "--limit must be at least 1, got 0"), (["--limit", "-5"], "--limit must be at least 1")],
)  # fmt: skip
def test_events_options_name_themselves(args, needle, tmp_path):
    _one_line(vidpipe_cli("events", "--db", str(tmp_path / "events.db"), *args), needle)


def test_evidence_at_a_file_says_so_in_one_line(sample, tmp_path):
    taken = tmp_path / "evidence"
    taken.write_text("a file, not a folder")
    _one_line(vidpipe_cli("detect", str(sample), "-q", "--evidence", str(taken)), "is a file, not a folder")


# -- snapshot ---------------------------------------------------------------------------------------


def test_evidence_on_a_full_disk_is_an_error_at_the_end(sample, tmp_path):
    """The camera recording stopped (one log line saying 'it resumes by itself') and the run exited 0."""
    disk, kept = tmp_path / "disk", tmp_path / "d.jsonl"
    cli = f"{shlex.quote(sys.executable)} -m vidpipe detect {sample} -q --max-frames 60 --json {kept}"
    result = run_on_small_disk(disk, "1m", f"head -c 900000 /dev/zero > {disk}/fill; {cli} --evidence {disk}/ev")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("vidpipe: error:")]
    assert len(errors) == 1 and "--evidence" in errors[0] and "clips may be missing" in errors[0], result.stderr
    assert sum('"detections"' in line for line in kept.read_text().splitlines()) == 60  # the other outputs whole


@pytest.mark.parametrize("at", ["nan", "inf", "-5"])
def test_snapshot_at_must_be_a_time_in_the_file(at, sample, tmp_path):
    proc = vidpipe_cli("snapshot", str(sample), str(tmp_path / "s.png"), "--at", at)
    _one_line(proc, f"--at must be a number of seconds of 0 or more, got {at}")
    assert not (tmp_path / "s.png").exists()
