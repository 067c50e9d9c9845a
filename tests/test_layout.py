"""The package's file map: runtime modules never import test support, and module imports form no cycle.

The import graph is read from the source (every ``import``, module level or inside a function), so a
lazy import cannot hide a cycle or a dependency on ``granite_nar.testing``.
"""

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import granite_nar

PACKAGE_DIR = Path(granite_nar.__file__).parent
TESTING = "granite_nar.testing"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The ``granite_nar`` modules a file imports, resolved to module names (``from .x import y`` → ``…x``
    or ``…x.y`` when ``y`` is itself a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            for alias in node.names:
                if (
                    (PACKAGE_DIR.parent / (target + "." + alias.name).replace(".", "/"))
                    .with_suffix(".py")
                    .exists()
                ):
                    found.add(f"{target}.{alias.name}")
                elif (
                    PACKAGE_DIR.parent / (target + "." + alias.name).replace(".", "/") / "__init__.py"
                ).exists():
                    found.add(f"{target}.{alias.name}")
    return {m for m in found if m == "granite_nar" or m.startswith("granite_nar.")}


GRAPH = {module_name(p): imports_of(p) for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def test_every_module_is_in_the_graph_and_imports():
    names = {m.name for m in pkgutil.walk_packages(granite_nar.__path__, "granite_nar.")}
    assert names | {"granite_nar"} == set(GRAPH)
    for name in sorted(names - {"granite_nar.__main__"}):
        importlib.import_module(name)


def test_runtime_modules_never_import_test_support():
    offenders = {
        module: sorted(m for m in deps if m == TESTING or m.startswith(TESTING + "."))
        for module, deps in GRAPH.items()
        if not (module == TESTING or module.startswith(TESTING + "."))
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def test_module_imports_have_no_cycle():
    """Depth-first search over module → imported module edges; a package's ``__init__`` re-exporting its
    own modules is an edge like any other, so only real module cycles are reported."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(module: str):
        state[module] = 1
        stack.append(module)
        for dep in sorted(GRAPH.get(module, ())):
            if dep not in GRAPH or dep == module:
                continue
            if dep == "granite_nar" or (module.startswith(dep + ".") and dep.count(".") < module.count(".")):
                continue  # a module importing its own package's __init__ (e.g. ``from . import x``)
            if state.get(dep) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(dep) :] + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


@pytest.mark.parametrize(
    "module, forbidden",
    [
        # The file layer does not depend on the feature layer, and the layout tables on no model code.
        ("granite_nar.audio.io", "granite_nar.audio.feature_extraction_granite_speech_nar"),
        ("granite_nar.audio.waveform", "granite_nar.audio.io"),
        ("granite_nar.checkpoints.original_layout", "granite_nar.model"),
        ("granite_nar.checkpoints.loading", "granite_nar.model.modeling_granite_speech_nar"),
        ("granite_nar.model.modeling_granite_speech_ar", "granite_nar.model.modeling_granite_speech_nar"),
        # The server sits on top; importing the package must not need the serve extra.
        ("granite_nar", "granite_nar.serving"),
        ("granite_nar.transcription.transcribe", "granite_nar.serving"),
    ],
)
def test_layers_point_one_way(module, forbidden):
    assert not any(dep == forbidden or dep.startswith(forbidden + ".") for dep in GRAPH[module])


def test_the_graph_sees_imports_inside_functions():
    """The CLI imports the transcription module inside a function (to start fast); the graph must see it,
    or a lazy import could hide a cycle or a dependency on test support."""
    assert "granite_nar.transcription.transcribe" in GRAPH["granite_nar.cli"]
    assert "granite_nar.testing" in GRAPH["granite_nar.testing.demo"]  # ``from . import tiny_config``
