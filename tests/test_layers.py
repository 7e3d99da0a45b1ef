"""The layout shows the architecture: every import inside ``vidpipe/`` runs down the layers of
docs/architecture.md, and no module imports itself back through others (no circles)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "vidpipe"
# lowest first; a module may import its own layer's modules and those of the layers below it
LAYERS = [
    {"types", "errors", "rules", "options", "redact", "memory", "unwinder"},
    {"gst", "models", "analytics"},
    {"sinks"},
    {"pipeline"},
    {"cluster"},
    {"api"},
    {"element", "serve", "cli", "__main__"},
]
MAX_LINES = 450  # a file that passes this does more than one job


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Each vidpipe module and the vidpipe modules it imports (lazy imports inside functions too)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = _module(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [f"{target}.{alias.name}" for alias in node.names]
                found.update(n if _is_module(n) else target for n in names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        found &= {m for m in found if m == "vidpipe" or m.startswith("vidpipe.")}
        found.discard(module)
    return graph


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def layer(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else None
    return next((i for i, names in enumerate(LAYERS) if top in names), None)


def test_every_import_runs_down_the_layers():
    upwards = []
    for module, targets in sorted(imports().items()):
        for target in sorted(targets):
            here, there = layer(module), layer(target)
            if here is not None and there is not None and there > here:
                upwards.append(f"{module} -> {target}")
    assert not upwards, "imports up a layer:\n" + "\n".join(upwards)


def test_no_import_circles():
    graph = imports()
    circles = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for target in graph.get(node, ()):
                if target == start and len(path) > 1 and not _package_and_member(path):
                    circles.append(" -> ".join([*path, start]))
                elif target not in seen and target in graph:
                    seen.add(target)
                    stack.append((target, [*path, target]))
    assert not circles, "import circles:\n" + "\n".join(sorted(set(circles))[:20])


def _package_and_member(path: list[str]) -> bool:
    """A package's ``__init__`` re-exporting its own modules, which import siblings: not a circle of jobs."""
    return all(m.startswith(path[0] + ".") or path[0].startswith(m + ".") or m == path[0] for m in path)


def test_no_file_does_too_many_jobs():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}  # fmt: skip
    assert not long, f"files over {MAX_LINES} lines: {long}"
