"""The probe and decode subcommands."""

from __future__ import annotations

import json

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
    """With stderr on a terminal the bar shows frames, FPS and ETA; with --quiet it does not."""
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
    assert "/600" not in outputs[True] and "decoded 600 frames" in outputs[True]
