"""Pipeline graphs: GStreamer's own ``dot`` description, written as ``.dot`` or rendered by Graphviz."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import OutputError

FORMATS = (".dot", ".png", ".svg", ".pdf")


def combine(graphs: dict[str, str]) -> str:
    """One Graphviz description holding several pipelines' graphs, each a cluster named after its stream
    (GStreamer names its nodes by object address, so they never clash)."""
    parts = ["digraph vidpipe {", "  rankdir=LR;"]
    for name, dot in graphs.items():
        body = dot[dot.index("{") + 1 : dot.rindex("}")]
        parts.append(f'  subgraph "cluster_stream_{name}" {{\n  label="stream {name}";\n{body}\n  }}')
    parts.append("}")
    return "\n".join(parts)


def write_graph(dot: str, path: str | Path) -> Path:
    """Write a Graphviz description to ``path``: ``.dot`` as text, ``.png``/``.svg``/``.pdf`` rendered
    with the ``dot`` program (Debian/Ubuntu package ``graphviz``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise OutputError(f"{path}: unknown graph format {suffix or '(none)'} (use {', '.join(FORMATS)})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".dot":
            path.write_text(dot)
            return path
        program = shutil.which("dot")
        if program is None:
            raise OutputError(f"{path}: rendering needs Graphviz's 'dot' (install the package graphviz)")
        result = subprocess.run(
            [program, f"-T{suffix[1:]}", "-o", str(path)], input=dot.encode(), capture_output=True, check=False
        )
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the graph ({exc.strerror})") from None
    if result.returncode != 0:
        raise OutputError(f"{path}: dot failed: {result.stderr.decode(errors='replace').strip()}")
    return path
