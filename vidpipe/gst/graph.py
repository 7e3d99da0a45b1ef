"""Pipeline graphs: GStreamer's own ``dot`` description, written as ``.dot`` or rendered by Graphviz."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ..errors import OutputError
from ..redact import mask_secrets
from . import Gst

FORMATS = (".dot", ".png", ".svg", ".pdf")


def compact_dot(pipeline: Gst.Bin) -> str:
    """A pipeline's elements as Graphviz ``dot``: one node per element (factory and name), bins as
    clusters, an edge per link (through ghost pads); no pads or caps, so a whole run stays legible.
    ``Gst.debug_bin_to_dot_data`` gives every detail instead."""
    lines = ["digraph pipeline {"]
    edges: list[str] = []

    def node_id(element: Gst.Element) -> str:
        return '"' + element.get_path_string().replace('"', "") + '"'

    def walk(bin_: Gst.Bin, depth: int) -> None:
        for element in reversed(list(_children(bin_))):
            if isinstance(element, Gst.Bin) and list(_children(element)):
                factory = element.get_factory().get_name() if element.get_factory() else "bin"
                lines.append(f'{"  " * depth}subgraph "cluster_{element.get_path_string()}" {{')
                lines.append(f'{"  " * depth}  label="{factory}: {element.get_name()}"; style="rounded,dashed";')
                walk(element, depth + 1)
                lines.append(f"{'  ' * depth}}}")
                continue
            factory = element.get_factory().get_name() if element.get_factory() else type(element).__name__
            lines.append(f'{"  " * depth}{node_id(element)} [label="{factory}\\n{element.get_name()}"];')
            for pad in element.iterate_src_pads():
                target = _downstream(pad)
                if target is not None:
                    edges.append(f"  {node_id(element)} -> {node_id(target)};")

    walk(pipeline, 1)
    lines.extend(edges)
    lines.append("}")
    return "\n".join(lines)


def _children(bin_: Gst.Bin):
    iterator = bin_.iterate_elements()
    while True:
        result, element = iterator.next()
        if result != Gst.IteratorResult.OK:
            return
        yield element


def _downstream(pad: Gst.Pad) -> Gst.Element | None:
    """The element a source pad feeds, through the ghost pads of bins on the way."""
    peer = pad.get_peer()
    for _ in range(32):
        if peer is None:
            return None
        if isinstance(peer, Gst.GhostPad):  # into a bin
            peer = peer.get_target()
            continue
        parent = peer.get_parent()
        if isinstance(parent, Gst.GhostPad):  # the inside of a bin's source ghost pad: out of the bin
            peer = parent.get_peer()
            continue
        return peer.get_parent_element()
    return None


def write_graph(dot: str, path: str | Path) -> Path:
    """Write a Graphviz description to ``path``: ``.dot`` as text, ``.png``/``.svg``/``.pdf`` rendered
    with the ``dot`` program (Debian/Ubuntu package ``graphviz``)."""
    path = Path(path)
    dot = mask_secrets(dot)  # GStreamer draws its elements' properties: a source's password among them
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise OutputError(f"{path}: unknown graph format {suffix or '(none)'} (use {', '.join(FORMATS)})")
    scratch = path.with_name(f".{path.name}.partial")
    try:  # rendered in memory, written beside it, then renamed: the whole picture or the old file intact
        data = dot.encode() if suffix == ".dot" else _render(dot, suffix, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch.write_bytes(data)
        os.replace(scratch, path)
    except OSError as exc:  # a full disk, a folder that cannot be written
        scratch.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write the graph ({exc.strerror})") from None
    return path


def _render(dot: str, suffix: str, path: Path) -> bytes:
    """``dot`` rendered by Graphviz's ``dot`` program as ``.png``, ``.svg`` or ``.pdf``."""
    program = shutil.which("dot")
    if program is None:
        raise OutputError(f"{path}: rendering needs Graphviz's 'dot' (install the package graphviz)")
    result = subprocess.run([program, f"-T{suffix[1:]}"], input=dot.encode(), capture_output=True, check=False)
    if result.returncode != 0:
        raise OutputError(f"{path}: dot failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout
