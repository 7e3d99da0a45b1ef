"""The probe and decode subcommands."""

from __future__ import annotations

import json

import pytest
from conftest import vidpipe_cli


def test_probe_json(sample):
    result = vidpipe_cli("probe", "--json", str(sample))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert {"width", "height", "fps", "duration", "frames", "codec"} <= info.keys()
    assert (info["width"], info["height"], info["frames"]) == (384, 288, 1552)


def test_probe_text(sample):
    result = vidpipe_cli("probe", str(sample))
    assert result.returncode == 0
    for word in ("container", "codec", "384x288", "30.000", "51.734", "1552"):
        assert word in result.stdout


def test_decode_prints_summary_and_writes_graphs(sample, tmp_path):
    for suffix in (".dot", ".png", ".svg"):
        graph = tmp_path / f"pipeline{suffix}"
        result = vidpipe_cli("decode", str(sample), "--max-frames", "20", "--graph", str(graph))
        assert result.returncode == 0, result.stderr
        assert "decoded 20 frames" in result.stderr and "FPS" in result.stderr
        assert graph.stat().st_size > 1000
    assert (tmp_path / "pipeline.png").read_bytes()[:4] == b"\x89PNG"
    assert "GstAppSink" in (tmp_path / "pipeline.dot").read_text()


def test_decode_bad_graph_format(sample, tmp_path):
    result = vidpipe_cli("decode", str(sample), "--max-frames", "2", "--graph", str(tmp_path / "g.gif"))
    assert result.returncode == 2 and "unknown graph format" in result.stderr


def test_progress_bar_on_a_terminal(sample):
    """With stderr on a terminal the bar shows frames, FPS and ETA; with --quiet nothing is printed."""
    import os
    import pty
    import subprocess
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).with_name("vidpipe"))
    outputs = {}
    for quiet in (False, True):
        master, slave = pty.openpty()
        args = [exe, "decode", str(sample), "--max-frames", "600"] + (["--quiet"] if quiet else [])
        proc = subprocess.Popen(args, stdout=slave, stderr=slave, env=dict(os.environ, COLUMNS="120"))
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(60)
        os.close(master)
        outputs[quiet] = b"".join(chunks).decode(errors="replace")
    assert "decode" in outputs[False] and "/600" in outputs[False] and "FPS" in outputs[False]
    assert "decoded 600 frames" in outputs[False]
    assert outputs[True].strip() == ""  # --quiet: errors only


# -- a command line that explains itself ------------------------------------------------------------------


def _help(*args: str) -> str:
    result = vidpipe_cli(*args, "--help", env={"COLUMNS": "100"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_help_has_no_markup_and_shows_defaults():
    top = _help()
    assert "``" not in top and "probe" in top and "detect" in top
    detect = _help("detect")
    assert "``" not in detect and ":class:" not in detect
    for needle in (
        "(default: ssd_mobilenet_v2_coco)",
        "(default: 4 on the CPU, 32 on CUDA)",  # --batch
        "(default: auto)",  # --precision
        "0.5 for ssd_mobilenet_v2_coco",  # --threshold
        "(default: cpu)",
        ".webm (VP8)",
        ".mkv",
        ".pdf",
        "{stream}",
        "examples:",
        "vidpipe detect clip.mp4 --json",
    ):
        assert needle in " ".join(detect.split()), needle
    from vidpipe.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for name, command in commands.items():  # every argument and option of every command has a help text
        for action in command._actions:
            assert action.help, f"vidpipe {name} {action.option_strings or action.dest} has no help"
    for command in ("probe", "decode", "models"):
        assert "examples:" in _help(command)


def test_verbose_anywhere_and_version(sample):
    after = vidpipe_cli("probe", str(sample), "-v")
    assert after.returncode == 0, after.stderr
    for args in (["decode", str(sample)], ["decode", str(sample), "-v"]):
        result = vidpipe_cli(*args, "--max-frames", "3")
        assert result.returncode == 0 and "decoded 3 frames" in result.stderr, result.stderr
    version = vidpipe_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("vidpipe ")


@pytest.mark.parametrize(
    ("option", "name", "needle"),
    [("--json", "out.csv", ".jsonl"), ("--video", "out.gif", ".mp4"), ("--graph", "g.gif", ".svg")],
)
def test_mismatched_output_extension_is_refused_up_front(option, name, needle, sample, tmp_path):
    result = vidpipe_cli("detect", str(sample), option, str(tmp_path / name))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and needle in lines[0]
    assert not (tmp_path / name).exists()


def test_summary_lists_outputs_and_graph_shows_the_whole_run(sample, tmp_path):
    jsonl, graph = tmp_path / "d.jsonl", tmp_path / "run.dot"
    video = tmp_path / "{stream}.mp4"
    result = vidpipe_cli(
        "detect", f"a={sample}", f"b={sample}", "--max-frames", "12", "--json", str(jsonl), "--video", str(video),
        "--graph", str(graph), "--classes", "person,tv",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    outputs = result.stderr.split("outputs", 1)[1]
    assert f"{jsonl} (" in outputs and "lines" in outputs
    for name in "ab":
        assert f"{tmp_path / name}.mp4 (12 frames" in outputs
    assert f"{graph} (" in outputs
    dot = graph.read_text()
    for needle in ("cluster_source_a", "cluster_source_b", "reader a", "reader b", "batcher", "ssd_mobilenet_v2_coco",
                   "class filter", "JsonlSink", "VideoSink", "GstAppSink", "GstAppSrc", "24 frames"):  # fmt: skip
        assert needle in dot, needle
    rendered = tmp_path / "run.png"
    again = vidpipe_cli("detect", str(sample), "--max-frames", "4", "--graph", str(rendered))
    assert again.returncode == 0 and rendered.read_bytes()[:4] == b"\x89PNG"


def test_default_batch_follows_the_device():
    from vidpipe.options import DEFAULT_BATCH, DEFAULT_GPU_BATCH, default_batch

    assert default_batch("cpu") == DEFAULT_BATCH == 4
    assert default_batch("cuda") == default_batch("cuda:1") == DEFAULT_GPU_BATCH == 32
