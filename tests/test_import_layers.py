"""Imports point one way: the layers ARCHITECTURE.md draws ("Layers and imports"), enforced.

Every module under pipeline/ and infra/ is parsed (ast, nothing is imported), and every import
of the project's own modules, at module level or inside a function, is an edge. An edge may
point to a lower layer or stay inside its layer; never up, never sideways to a sibling layer,
and no circle of imports anywhere. The layer table is read from ARCHITECTURE.md itself, so the
document and this test cannot drift apart.

KNOWN_CYCLES lists today's violations, each edge by name: the test fails on any edge not
listed, and also on a listed edge that is gone, so the list only shrinks. Empty it as the
cycles are broken.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "infra")
SECTION = "## Layers and imports"

# (importer, imported): upward imports that exist today. Each closes a circle of imports.
KNOWN_CYCLES: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Layer:
    rank: int
    name: str


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    path: Path  # relative to the project root
    line: int


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """{dotted module name: file} for every .py under the packages (a package is its init)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an import of `name` loads: the longest prefix that is one."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, root: Path, modules: dict[str, Path]) -> list[Edge]:
    """Every import of another project module in this module, wherever it sits."""
    path = modules[module]
    is_package = path.name == "__init__.py"
    edges = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # `from . import x` in a.b.c means a.b; in package a.b's __init__ it means a.b.
                package = module.split(".")
                package = package if is_package else package[:-1]
                base = package[: len(package) - (node.level - 1)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            # `from pkg import sub` imports the submodule when there is one.
            targets = [
                f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin
                for alias in node.names
            ]
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved and resolved != module:
                edges.append(Edge(module, resolved, path.relative_to(root), node.lineno))
    return edges


def parse_layers(architecture: str) -> list[tuple[Layer, list[str]]]:
    """The table in ARCHITECTURE.md's layers section: rows of `rank layer pattern...`."""
    if SECTION not in architecture:
        raise AssertionError(f"ARCHITECTURE.md has no section {SECTION!r}")
    section = architecture.split(SECTION, 1)[1]
    block = re.search(r"```text\n(.*?)```", section, re.S)
    if block is None:
        raise AssertionError(f"{SECTION!r} has no ```text block with the layer table")
    rows: dict[Layer, list[str]] = {}
    for line in block.group(1).splitlines():
        match = re.match(r"\s*(\d+)\s+([a-z][a-z-]*)\s+(.+)$", line)
        if match:
            layer = Layer(int(match.group(1)), match.group(2))
            rows.setdefault(layer, []).extend(match.group(3).split())
    if not rows:
        raise AssertionError(f"no `rank layer patterns...` rows in {SECTION!r}")
    names = [layer.name for layer in rows]
    if len(set(names)) != len(names):
        raise AssertionError(f"a layer name appears with two ranks: {names}")
    return list(rows.items())


def layer_of(module: str, layers: list[tuple[Layer, list[str]]]) -> Layer:
    """The layer whose matching pattern is the longest (the most specific)."""
    matches = [
        (len(pattern), layer)
        for layer, patterns in layers
        for pattern in patterns
        if fnmatch.fnmatchcase(module, pattern)
    ]
    if not matches:
        raise LookupError(f"{module} is in no layer: add it to ARCHITECTURE.md's {SECTION!r}")
    best = max(length for length, _ in matches)
    chosen = {layer for length, layer in matches if length == best}
    if len(chosen) > 1:
        raise LookupError(f"{module} matches {sorted(c.name for c in chosen)} equally well")
    return chosen.pop()


def upward(edge: Edge, layer: dict[str, Layer]) -> bool:
    """Up a layer, or across to a sibling layer of the same rank."""
    a, b = layer[edge.importer], layer[edge.imported]
    return a.rank < b.rank or (a.rank == b.rank and a.name != b.name)


def find_cycle(edges: list[Edge]) -> list[str] | None:
    """One circle of imports, as a list of modules ending where it starts, or None."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, set()).add(edge.imported)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


@dataclass
class Project:
    modules: dict[str, Path]
    layer: dict[str, Layer]
    edges: list[Edge]


def load(root: Path, architecture: str, packages: tuple[str, ...] = PACKAGES) -> Project:
    modules = module_files(root, packages)
    layers = parse_layers(architecture)
    layer = {module: layer_of(module, layers) for module in modules}
    edges = [edge for module in modules for edge in imports_of(module, root, modules)]
    return Project(modules, layer, edges)


def violations(project: Project, known: set[tuple[str, str]]) -> list[str]:
    """Upward edges not in `known`, then a circle among the remaining edges, as messages."""
    problems = []
    for edge in project.edges:
        if upward(edge, project.layer) and (edge.importer, edge.imported) not in known:
            a, b = project.layer[edge.importer], project.layer[edge.imported]
            problems.append(
                f"{edge.path}:{edge.line}: {edge.importer} ({a.name}, rank {a.rank}) "
                f"imports {edge.imported} ({b.name}, rank {b.rank})"
            )
    rest = [e for e in project.edges if (e.importer, e.imported) not in known]
    if cycle := find_cycle(rest):
        problems.append("import circle: " + " -> ".join(cycle))
    return problems


@pytest.fixture(scope="module")
def project() -> Project:
    return load(REPO, (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8"))


def test_every_module_has_one_layer(project):
    # load() raises for a module in no layer or in two; this pins that the table is not empty.
    assert {layer.name for layer in project.layer.values()} >= {"cli", "definition", "packaging"}
    assert project.layer["pipeline.cli"].rank > project.layer["pipeline.local.cli"].rank
    assert project.layer["pipeline.local.cli"].rank > project.layer["pipeline.definition"].rank
    assert project.layer["pipeline.definition"].rank > project.layer["pipeline.packaging"].rank


def test_imports_point_down_and_never_circle(project):
    problems = violations(project, KNOWN_CYCLES)
    assert not problems, "imports against ARCHITECTURE.md's layers:\n" + "\n".join(problems)


def test_known_cycles_are_still_there(project):
    # A fixed edge must leave the list, so the list only shrinks.
    upward_now = {(e.importer, e.imported) for e in project.edges if upward(e, project.layer)}
    gone = sorted(KNOWN_CYCLES - upward_now)
    assert not gone, f"no longer imported upward, remove from KNOWN_CYCLES: {gone}"


def test_lambda_sources_import_only_their_own_dir(project):
    # Lambda packages its dir alone (handler "deployer.handler"): nothing else is there.
    for edge in project.edges:
        if re.fullmatch(r"infra\.\w+_lambda(\..+)?", edge.importer):
            own = edge.importer.split(".")[:2]
            assert edge.imported.split(".")[:2] == own, (
                f"{edge.path}:{edge.line}: {edge.importer} imports {edge.imported}"
            )


def test_container_code_never_imports_pipeline_or_infra():
    # processing/ and training/ run alone in SageMaker's containers (ARCHITECTURE.md).
    for source_dir in ("processing", "training"):
        for path in sorted((REPO / source_dir).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    names = [node.module or ""]
                for name in names:
                    assert name.split(".")[0] not in PACKAGES, f"{path}:{node.lineno}: {name}"


# The `ml` extra's packages that the light install (core + `cdk`) lacks: make synth runs there.
ML_ONLY = {"torch", "torchvision", "sagemaker_training", "waitress"}


def module_level_imports(path: Path) -> list[tuple[str, int]]:
    """(name, line) of the imports that run when the module is imported: not in a function."""
    found = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and not child.level:
                found.append((child.module or "", child.lineno))
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def test_the_cdk_app_imports_no_ml_package(project):
    # From app.py and infra/ down every project import synth may run (in functions too, but
    # not the known upward ones), no module imports an ML package when it is loaded.
    graph: dict[str, set[str]] = {}
    for edge in project.edges:
        if (edge.importer, edge.imported) not in KNOWN_CYCLES:
            graph.setdefault(edge.importer, set()).add(edge.imported)
    todo = [_resolve(name, project.modules) for name, _ in module_level_imports(REPO / "app.py")]
    todo = [m for m in todo if m] + [m for m in project.modules if m.startswith("infra.")]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for name, line in module_level_imports(project.modules[module]):
            if name.split(".")[0] in ML_ONLY:
                raise AssertionError(f"{project.modules[module]}:{line}: {module} imports {name}")
        todo.extend(graph.get(module, ()))
    assert {"infra.stack", "pipeline.definition", "pipeline.packaging"} <= seen


ARCH = """# x
## Layers and imports
```text
rank  layer    modules
  3   top      app.cli
  2   mid      app.core  app.util  app.util.*
  2   side     app.side
  1   low      app  app.*
```
"""


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_upward_sideways_and_circular_imports(tmp_path):
    _tree(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/cli.py": "from app import core\n",
            "app/core.py": "def f():\n    from app.cli import main\n",  # up, inside a function
            "app/side.py": "import app.core\n",  # sideways, same rank
            "app/base.py": "",
            "app/util/__init__.py": "from . import a\n",
            "app/util/a.py": "from .b import x\n",  # relative: app.util.b, same layer
            "app/util/b.py": "from app.util import a\n",  # a circle inside one layer
        },
    )
    project = load(tmp_path, ARCH, ("app",))
    # The longest matching pattern wins: app.util.a is `mid` (app.util.*), not `low` (app.*).
    assert project.layer["app.util.a"].name == "mid"
    assert project.layer["app.base"].name == "low"
    found = {(e.importer, e.imported) for e in project.edges}
    assert {("app.util.a", "app.util.b"), ("app.util", "app.util.a")} <= found
    problems = violations(project, set())
    assert any("app.core (mid, rank 2) imports app.cli (top, rank 3)" in p for p in problems)
    assert any("app.side (side, rank 2) imports app.core (mid, rank 2)" in p for p in problems)
    assert problems[-1] == "import circle: app.cli -> app.core -> app.cli"
    # Known edges are let through; the circle inside `mid` is still reported.
    known = {("app.core", "app.cli"), ("app.side", "app.core")}
    assert violations(project, known) == ["import circle: app.util.a -> app.util.b -> app.util.a"]


def test_the_checker_refuses_a_module_in_no_layer(tmp_path):
    _tree(tmp_path, {"app/__init__.py": "", "lib/__init__.py": "", "lib/new.py": ""})
    with pytest.raises(LookupError, match=r"lib is in no layer"):
        load(tmp_path, ARCH, ("app", "lib"))
