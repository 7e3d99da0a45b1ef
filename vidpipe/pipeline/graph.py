"""The picture of a whole run: each source's and each encoder's GStreamer pipeline (as GStreamer draws
it, one cluster each) joined by vidpipe's own stages (readers → batcher → model → stages → sinks), with
the run's figures on the nodes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runner import Pipeline

_NODE = re.compile(r'^\s*("[^"]+"|[A-Za-z_]\w*) \[', re.MULTILINE)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _cluster(name: str, label: str, dot: str) -> tuple[str, str | None]:
    """A GStreamer graph as a cluster, and one of its nodes (to attach edges to the cluster's border)."""
    body = dot[dot.index("{") + 1 : dot.rindex("}")]
    nodes = (m.group(1) for m in _NODE.finditer(body) if m.group(1) not in ("node", "edge", "graph"))
    # our label after GStreamer's, so that it wins
    return f"  subgraph {_quote('cluster_' + name)} {{\n{body}\n  label={_quote(label)};\n  }}", next(nodes, None)


def _edge(a: str, b: str, *, tail: str | None = None, head: str | None = None) -> str:
    attrs = []
    if tail:
        attrs.append(f"ltail={_quote(tail)}")
    if head:
        attrs.append(f"lhead={_quote(head)}")
    return f"  {a} -> {b}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";"


def flow_graph(pipeline: Pipeline, sources: dict[str, str], encoders: dict[str, str] | None = None) -> str:
    """Graphviz ``dot`` of a run. ``sources`` maps each stream to its decoding pipeline's dot,
    ``encoders`` each annotated-video file to its encoder pipeline's dot. Written after the run, the
    nodes carry its figures (frames, drops, FPS, per-stage latency)."""
    stats = pipeline.stats
    det = pipeline.detector
    lines = [
        "digraph vidpipe {",
        "  rankdir=LR; compound=true; newrank=true;",
        '  node [shape=box, style="rounded,filled", fillcolor="#e8f0fe", fontname="sans"];',
        '  label="vidpipe"; fontname="sans";',
    ]
    for name, dot in sources.items():
        cluster, anchor = _cluster(f"source_{name}", f"stream {name}: GStreamer decoding", dot)
        lines.append(cluster)
        s = stats.streams.get(name)
        figures = f"\n{s.frames} frames, {s.dropped} dropped, {s.reconnects} reconnects" if s else ""
        reader = f"reader_{_safe(name)}"
        lines.append(f"  {reader} [label={_quote(f'reader {name}{figures}')}];")
        if anchor:
            lines.append(_edge(anchor, reader, tail=f"cluster_source_{name}"))
        lines.append(_edge(reader, "batcher"))
    wait = stats.percentiles("decode wait")[0]
    batcher = f"batcher (fair across streams)\nbatch <= {pipeline.batch}, decode wait p50 {wait:.1f} ms"
    lines.append(f"  batcher [label={_quote(batcher)}];")
    inference = stats.percentiles("inference")
    model = (
        f"model {det.name}\n{det.precision} on {det.device} with {det.backend} ({det.backend_reason}), "
        f"batch {pipeline.batch}\n"
        f"inference p50/p95 {inference[0]:.1f}/{inference[1]:.1f} ms/frame\n{stats.frames} frames, {stats.fps:.1f} FPS"
    )
    lines.append(f'  model [label={_quote(model)}, fillcolor="#fde8c8"];')
    lines.append(_edge("batcher", "model"))
    previous = "model"
    for i, stage in enumerate(pipeline.analysis.describe()):
        node = f"stage_{i}"
        lines.append(f"  {node} [label={_quote(stage)}];")
        lines.append(_edge(previous, node))
        previous = node
    for i, sink in enumerate(pipeline.outputs.sinks):
        node = f"sink_{i}"
        lines.append(f'  {node} [label={_quote(_describe_sink(sink))}, fillcolor="#e6f4ea"];')
        lines.append(_edge(previous, node))
        for path, dot in (encoders or {}).items():
            if _belongs(sink, path):
                cluster, anchor = _cluster(f"encoder_{path}", f"{path}: GStreamer encoding", dot)
                lines.append(cluster)
                if anchor:
                    lines.append(_edge(node, anchor, head=f"cluster_encoder_{path}"))
    lines.append("}")
    return "\n".join(lines)


def _safe(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _describe_sink(sink: object) -> str:
    path = getattr(sink, "path", None)
    kind = type(sink).__name__
    lines = getattr(sink, "lines", None)
    written = getattr(sink, "frames_written", None)
    figures = f"\n{lines} lines" if lines is not None else (f"\n{written} frames" if written is not None else "")
    return f"{kind}\n{path}{figures}" if path else kind


def _belongs(sink: object, path: str) -> bool:
    files: Sequence[tuple[str, int]] = getattr(sink, "files", list)()
    return any(written == path for written, _ in files)
