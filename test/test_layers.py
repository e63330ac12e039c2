"""The layers hold: core <- ros <- bags <- demo; training and bench sit beside, never below.

Read from the source (every ``import``, also the ones inside functions), so a lazy import
cannot hide a dependency that runs the wrong way.  Then every module is really imported, so
a layer that only looks right on paper fails here too.
"""

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "skd_saliency_ros"
ROS_MODULES = ("rclpy", "sensor_msgs", "geometry_msgs", "std_msgs", "diagnostic_msgs",
               "rcl_interfaces", "builtin_interfaces", "rosgraph_msgs", "lifecycle_msgs",
               "std_srvs", "ament_index_python", "rosbags", "launch", "launch_ros")
# what each layer may never import (prefix match on dotted module names).  bench/ is the top:
# it imports training and the package, and nothing imports it (test/ aside).
NEVER = {
    PACKAGE: ("training", "bench"),
    f"{PACKAGE}.core": ROS_MODULES + (f"{PACKAGE}.ros", f"{PACKAGE}.bags", f"{PACKAGE}.demo",
                                      "training", "bench"),
    f"{PACKAGE}.ros": (f"{PACKAGE}.bags", f"{PACKAGE}.demo", "training", "bench"),
    f"{PACKAGE}.bags": (f"{PACKAGE}.demo", "training", "bench"),
    f"{PACKAGE}.demo": ("training", "bench"),
    "training": (f"{PACKAGE}.ros", f"{PACKAGE}.bags", f"{PACKAGE}.demo", "bench"),
}


def module_name(path: Path) -> str:
    """Return the dotted module name of a source file of the repository."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def sources():
    """Return the modules of the package, the training pipeline and the benchmarks."""
    return [p for top in (PACKAGE, "training", "bench")
            for p in sorted((REPO / top).rglob("*.py"))]


def imports_of(path: Path):
    """Return every module ``path`` imports (absolute names; relative ones resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{alias.name}" for alias in node.names)
    return found


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(name: str, imported) -> list:
    """Return the imports of module ``name`` that break a layer rule."""
    rules = [never for layer, never in NEVER.items() if _matches(name, layer)]
    return sorted({m for m in imported for never in rules for p in never if _matches(m, p)})


def test_layer_rules_hold():
    """No module imports from a layer it must not see (e.g. rclpy under core/)."""
    broken = [f"{path.relative_to(REPO)} imports {m}" for path in sources()
              for m in violations(module_name(path), imports_of(path))]
    assert not broken, "layer rules broken:\n" + "\n".join(broken)


def test_the_rules_catch_violations():
    """The checker is not blind: each kind of wrong-way import is reported, right ones not."""
    assert violations(f"{PACKAGE}.core.engine", {"rclpy.node"}) == ["rclpy.node"]
    assert violations(f"{PACKAGE}.core.engine", {f"{PACKAGE}.ros.params"})
    assert violations(f"{PACKAGE}.ros.node", {f"{PACKAGE}.bags.replay"})
    assert violations("training.evaluate", {f"{PACKAGE}.ros.image_io"})
    assert violations("training.teach", {"bench.report"}) == ["bench.report"]
    assert violations(PACKAGE, {"bench"}) == ["bench"]
    assert violations(f"{PACKAGE}.core.frames", {"bench.models"}) == ["bench.models"]
    assert violations("bench.models", {"training.teachers", f"{PACKAGE}.core.engine"}) == []
    assert violations(f"{PACKAGE}.bags.replay", {f"{PACKAGE}.ros.params", "rclpy"}) == []


def test_no_import_cycles():
    """The import graph between the repository's own modules has no circle."""
    modules = {module_name(p): p for p in sources()}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for imported in imports_of(path):
            # the longest own module the import names (an attribute import names its module)
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not _matches(name, imported):
                deps.add(imported)
        graph[name] = deps
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("path", [p for p in sources() if p.name != "__main__.py"],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_every_module_imports(path):
    """Each module imports (``__main__`` files run their program on import: left out)."""
    importlib.import_module(module_name(path))


def test_every_error_class_has_the_one_root():
    """Each ``*Error`` class of the repository is an SkdError (one line, exit 2 in every CLI)."""
    from skd_saliency_ros.core.errors import SkdError, is_user_error

    found = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                cls = getattr(importlib.import_module(module_name(path)), node.name)
                found.append(cls)
                assert issubclass(cls, SkdError), f"{module_name(path)}.{node.name}"
    assert len(found) >= 15
    assert is_user_error(FileNotFoundError("x")) and not is_user_error(KeyError("x"))
