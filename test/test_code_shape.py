"""The shape rules of issue 19 hold: short functions and a thin node.

A newcomer reads a function whole or not at all, so none in the package or the training
pipeline runs over 80 lines; and the node class stays a thin lifecycle shell (its per-camera
work lives in ros/camera_pipeline.py), under 250 lines.  Read from the source with ``ast``.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECKED = ("skd_saliency_ros", "training")
MAX_FUNCTION_LINES = 80
MAX_NODE_CLASS_LINES = 250


def _functions(path: Path):
    """Yield (qualified name, line count) of every function and method in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    stack = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    yield name, child.end_lineno - child.lineno + 1
                stack.append((child, name + "."))
            else:
                stack.append((child, prefix))


def test_no_function_over_80_lines():
    """Every function of skd_saliency_ros/ and training/ fits in 80 lines."""
    long = [f"{path.relative_to(REPO)}:{name} is {lines} lines"
            for top in CHECKED for path in sorted((REPO / top).rglob("*.py"))
            for name, lines in _functions(path) if lines > MAX_FUNCTION_LINES]
    assert not long, "split these (named parts):\n" + "\n".join(long)


def test_the_checker_sees_a_long_function(tmp_path):
    """The walk counts nested functions and methods, so the rule above can fail."""
    body = "\n".join(f"        x{i} = {i}" for i in range(90))
    source = tmp_path / "long.py"
    source.write_text(f"class A:\n    def f(self):\n{body}\n")
    assert dict(_functions(source))["A.f"] == 91


def test_saliency_node_is_thin():
    """The SaliencyNode class stays under 250 lines: lifecycle and wiring only."""
    tree = ast.parse((REPO / "skd_saliency_ros/ros/node.py").read_text(encoding="utf-8"))
    (node,) = [c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "SaliencyNode"]
    assert node.end_lineno - node.lineno + 1 < MAX_NODE_CLASS_LINES
