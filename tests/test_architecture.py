"""The architecture, held by tests: no import cycles (imports inside functions and
``lazy("module:attribute")`` references count too), the core never imports a plugin,
plugins don't import each other, and listing the CLI imports no torch."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT

PACKAGES = {"facefix": PROJECT / "facefix", "facefix_plugins": PROJECT / "plugins"}
LAZY_REFERENCE = re.compile(r"^((?:facefix|facefix_plugins)(?:\.\w+)*):\w+$")


def project_modules() -> dict[str, Path]:
    modules = {}
    for package, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its source: at the top, inside
    functions, or through a lazy ``"module:attribute"`` reference."""
    modules = project_modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = LAZY_REFERENCE.match(node.value)
                targets = [match.group(1)] if match else []
            for target in targets:
                found = owner(target)
                if found is not None and found != name:
                    graph[name].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_sees_imports_inside_functions_and_lazy_references(tmp_path):
    """The graph is only as good as what it reads: a function-level import and a lazy
    reference each make an edge."""
    graph = import_graph()
    assert "facefix.networks" in graph["facefix.plugins"]  # imported inside a factory
    assert "facefix_plugins.compact.arch" in graph["facefix_plugins.compact"]  # lazy("...arch:build")
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_core_imports_no_plugin():
    offending = {module: sorted(target for target in targets if target.startswith("facefix_plugins"))
                 for module, targets in import_graph().items() if module.split(".")[0] == "facefix"}
    assert {module: targets for module, targets in offending.items() if targets} == {}


def test_plugins_do_not_import_each_other():
    """Each built-in plugin stands alone, as a third-party one would: it uses the core only."""
    def plugin_of(module: str) -> str:
        return ".".join(module.split(".")[:2])

    crossing = {module: sorted(target for target in targets
                               if target.startswith("facefix_plugins.") and plugin_of(target) != plugin_of(module))
                for module, targets in import_graph().items() if module.startswith("facefix_plugins.")}
    assert {module: targets for module, targets in crossing.items() if targets} == {}


HEAVY = ("torch", "torchvision", "onnxruntime", "facexlib")
LOADED_MODULES = """
import runpy, sys
sys.argv = ["facefix", "--help"]
try:
    runpy.run_module("facefix", run_name="__main__")
except SystemExit:
    pass
print("\\n".join(sorted(sys.modules)), file=sys.stderr)
"""


def test_listing_the_cli_imports_no_torch():
    """`facefix --help` loads every plugin (they may add commands) and still imports no
    torch: cards name their networks lazily."""
    result = subprocess.run([sys.executable, "-c", LOADED_MODULES], capture_output=True, text=True, timeout=120,
                            check=True)
    loaded = set(result.stderr.split())
    assert {"facefix_plugins.gfpgan", "facefix_plugins.psfrgan", "facefix.cli"} <= loaded  # it really looked
    assert sorted(name for name in loaded if name.split(".")[0] in HEAVY) == []
    assert "Commands:" in result.stdout and "restore" in result.stdout
    # the issue's own check, as a user would run it
    timed = subprocess.run([sys.executable, "-X", "importtime", "-m", "facefix", "--help"], capture_output=True,
                           text=True, timeout=120, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in timed.stderr.splitlines() if line.startswith("import time")}
    assert "facefix.cli" in imported and sorted(name for name in imported if name.split(".")[0] in HEAVY) == []
