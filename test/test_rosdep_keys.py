"""package.xml declares, as rosdep keys, exactly what the installed package imports at run time.

``rosdep install`` followed by ``colcon build`` only gives a node that starts if every module
imported under ``skd_saliency_ros/`` and ``launch/`` (at module level or inside a function)
resolves to an ``<exec_depend>`` key.  This test reads those files with ``ast`` (pure parsing,
nothing is imported), maps each top-level module to its key through ``ROSDEP_KEYS`` and checks:

(a) every imported module is in the table (or is a listed module without a key);
(b) every key is declared in package.xml as ``<exec_depend>`` (or ``<depend>``);
(c) no declared ``<exec_depend>`` is unused.

training/, bench/, tools/ and test/ are not installed and are not scanned.

Where the keys were verified (the search index's stored copies of ros/rosdistro):

* ROS packages: ros/rosdistro kilted/distribution.yaml at
  0013c554954f97bbdfe86b3b9f97acc47eea6d66 (released packages of ament_index, common_interfaces,
  launch, launch_ros, rcl_interfaces and rclpy).  px4_msgs is listed there with a source entry
  only (no release), so rosdep cannot resolve it.
* python3-* keys: rosdep/python.yaml of a recent ros/rosdistro fork (747309172a-cpu/rosdistro at
  e2c2ca1619484ae9db414eb2e18c6f14625cd1db; the copy of ros/rosdistro itself in the index
  predates these keys): python3-numpy, python3-opencv, python3-yaml, python3-tqdm,
  python3-torch, python3-onnxruntime-pip (added by ros/rosdistro#32307) and python3-rosbags-pip
  (added by ros/rosdistro#37795).  There is no onnx key: no python3-onnx or python3-onnx-pip in
  that python.yaml, and no onnx entry in rosdep/base.yaml (loongros2/rosdistro at
  037d0f47371a626a41ed8c070ba5ad14921868a0).
"""

from __future__ import annotations

import ast
import re
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Mapping, Set, Tuple

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "skd_saliency_ros"
#: What the package installs as Python code (setup.py packages and launch files).
SCANNED = ("skd_saliency_ros", "launch")

#: Top-level import name -> rosdep key.
ROSDEP_KEYS: Dict[str, str] = {
    # ROS 2 packages are their own keys (kilted/distribution.yaml)
    "ament_index_python": "ament_index_python",
    "builtin_interfaces": "builtin_interfaces",
    "diagnostic_msgs": "diagnostic_msgs",
    "geometry_msgs": "geometry_msgs",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "lifecycle_msgs": "lifecycle_msgs",
    "rcl_interfaces": "rcl_interfaces",
    "rclpy": "rclpy",
    "rosgraph_msgs": "rosgraph_msgs",
    "sensor_msgs": "sensor_msgs",
    "std_msgs": "std_msgs",
    "std_srvs": "std_srvs",
    # Python libraries (rosdep/python.yaml)
    "cv2": "python3-opencv",
    "numpy": "python3-numpy",
    "onnxruntime": "python3-onnxruntime-pip",
    "rosbags": "python3-rosbags-pip",
    "torch": "python3-torch",
    "tqdm": "python3-tqdm",
    "yaml": "python3-yaml",
}

#: Dotted import -> keys it needs besides its top-level module's (rclpy.lifecycle runs on
#: lifecycle_msgs' messages and services, whether or not the node imports them itself).
SUBMODULE_KEYS: Dict[str, Tuple[str, ...]] = {
    "rclpy.lifecycle": ("lifecycle_msgs",),
}

#: Imported modules that have no rosdep key -> text that a package.xml comment must contain
#: (so that whoever runs rosdep is told how to install them).
NO_ROSDEP_KEY: Dict[str, str] = {
    "onnx": "pip install onnx",
    "px4_msgs": "px4_msgs",
}

#: Declared keys that no scanned import needs yet -> why they are declared anyway.
# declared keys no module imports, with the reason each is needed anyway
DECLARED_AHEAD: Dict[str, str] = {
    "tf2_ros": "bringup.launch.py runs its static_transform_publisher executable (no import)",
}


def scanned_files(root: Path = REPO) -> List[Path]:
    """Return every .py file the package installs."""
    return sorted(p for d in SCANNED for p in (root / d).rglob("*.py"))


def imported_names(files: List[Path], root: Path = REPO) -> Dict[str, List[str]]:
    """Map each absolute import (dotted, plus ``module.name`` for ``from`` imports) to its places.

    Imports inside functions, classes and ``try`` blocks count: ``ast.walk`` visits them all.
    Relative imports are the package's own and are skipped.
    """
    found: Dict[str, List[str]] = {}
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        for node in ast.walk(tree):
            names: List[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                found.setdefault(name, []).append(f"{where}:{node.lineno}")
    return found


def third_party(imports: Mapping[str, List[str]]) -> Dict[str, List[str]]:
    """Top-level modules of ``imports`` that are neither the standard library nor the package."""
    modules: Dict[str, List[str]] = {}
    for name, places in imports.items():
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top == PACKAGE:
            continue
        modules.setdefault(top, [])
        modules[top].extend(p for p in places if p not in modules[top])
    return modules


def declared_keys(xml_text: str) -> Set[str]:
    """Keys of ``<exec_depend>`` and ``<depend>`` (which implies exec_depend) in package.xml."""
    root = ET.fromstring(xml_text)
    return {e.text.strip() for tag in ("exec_depend", "depend") for e in root.iter(tag)
            if e.text}


def xml_comments(xml_text: str) -> str:
    """All the comments of package.xml, joined."""
    return "\n".join(re.findall(r"<!--(.*?)-->", xml_text, flags=re.DOTALL))


def check(xml_text: str, imports: Mapping[str, List[str]]) -> Dict[str, List[str]]:
    """Compare package.xml with the imports; return the problems found, by kind."""
    modules = third_party(imports)
    declared = declared_keys(xml_text)
    comments = xml_comments(xml_text)
    problems: Dict[str, List[str]] = {"unknown": [], "undeclared": [], "unused": []}
    needed: Dict[str, List[str]] = {}  # key -> places that need it
    for module, places in sorted(modules.items()):
        at = ", ".join(places[:3]) + (" ..." if len(places) > 3 else "")
        if module in NO_ROSDEP_KEY:
            if NO_ROSDEP_KEY[module] not in comments:
                problems["undeclared"].append(
                    f"{module} (imported at {at}) has no rosdep key: package.xml must keep a "
                    f"comment saying how to install it ('{NO_ROSDEP_KEY[module]}')")
            continue
        if module not in ROSDEP_KEYS:
            problems["unknown"].append(
                f"add {module} to the table with its rosdep key (ROSDEP_KEYS in "
                f"test/test_rosdep_keys.py; imported at {at})")
            continue
        needed.setdefault(ROSDEP_KEYS[module], []).extend(places)
    for name, keys in SUBMODULE_KEYS.items():
        if name in imports:
            for key in keys:
                needed.setdefault(key, []).extend(imports[name])
    for key, places in sorted(needed.items()):
        if key not in declared:
            problems["undeclared"].append(
                f"<exec_depend>{key}</exec_depend> is missing from package.xml "
                f"(needed by the import at {places[0]})")
    for key in sorted(declared - set(needed)):
        if key in DECLARED_AHEAD:
            continue
        problems["unused"].append(
            f"<exec_depend>{key}</exec_depend> is declared but nothing under "
            f"{' or '.join(d + '/' for d in SCANNED)} imports a module that needs it: remove it, "
            f"or list it in DECLARED_AHEAD with the reason")
    return problems


def _package_xml() -> str:
    return (REPO / "package.xml").read_text(encoding="utf-8")


def _repo_imports() -> Dict[str, List[str]]:
    return imported_names(scanned_files())


def test_scan_covers_the_installed_code():
    """The scan reads the nodes, the bag tools and the launch file, imports in functions too."""
    modules = third_party(_repo_imports())
    for module in ("rclpy", "launch_ros", "cv2", "torch"):
        assert module in modules, f"the scan of {SCANNED} found no import of {module}"
    # imported only inside functions (the replay's bag I/O, the onnxruntime backend)
    assert "rosbags" in modules and "onnxruntime" in modules
    assert not any(p.startswith(("training", "bench", "tools", "test"))
                   for places in modules.values() for p in places)


def test_every_import_is_in_the_table():
    """(a) each third-party module imported at run time maps to a rosdep key (or a listed none)."""
    problems = check(_package_xml(), _repo_imports())["unknown"]
    assert not problems, "\n".join(problems)


def test_every_key_is_declared():
    """(b) each needed key is an <exec_depend> of package.xml."""
    problems = check(_package_xml(), _repo_imports())["undeclared"]
    assert not problems, "\n".join(problems)


def test_no_exec_depend_is_unused():
    """(c) package.xml declares nothing that the installed code does not import."""
    imports = _repo_imports()
    problems = check(_package_xml(), imports)["unused"]
    assert not problems, "\n".join(problems)
    needed = {ROSDEP_KEYS.get(m) for m in third_party(imports)}
    needed.update(k for name, keys in SUBMODULE_KEYS.items() if name in imports for k in keys)
    stale = sorted(k for k in DECLARED_AHEAD if k in needed)
    if stale:
        warnings.warn(f"{stale} are imported now: drop them from DECLARED_AHEAD", stacklevel=1)


def test_check_fails_on_a_missing_or_extra_dependency(tmp_path):
    """The same check reports a removed key, a removed no-key comment, new and unused modules."""
    xml_text = _package_xml()
    imports = _repo_imports()
    assert not any(check(xml_text, imports).values())

    without_rosbags = xml_text.replace("<exec_depend>python3-rosbags-pip</exec_depend>", "")
    assert without_rosbags != xml_text
    undeclared = check(without_rosbags, imports)["undeclared"]
    assert len(undeclared) == 1 and "python3-rosbags-pip" in undeclared[0]
    assert "skd_saliency_ros/bags/bag_io.py" in undeclared[0]

    without_onnx_hint = xml_text.replace("pip install onnx", "pip install it")
    assert any(p.startswith("onnx ") for p in check(without_onnx_hint, imports)["undeclared"])

    extra = xml_text.replace("</package>", "  <exec_depend>python3-scipy</exec_depend>\n"
                                           "</package>")
    assert any("python3-scipy" in p for p in check(extra, imports)["unused"])

    module = tmp_path / "late.py"
    module.write_text("def run():\n    import shapely.geometry\n    import json\n")
    more = dict(imports)
    for name, places in imported_names([module], root=tmp_path).items():
        more.setdefault(name, []).extend(places)
    unknown = check(xml_text, more)["unknown"]
    assert len(unknown) == 1 and unknown[0].startswith("add shapely to the table")
    assert "late.py:2" in unknown[0]


def test_lifecycle_submodule_needs_lifecycle_msgs():
    """Importing rclpy.lifecycle requires lifecycle_msgs even without importing it directly."""
    xml_text = _package_xml().replace("<exec_depend>lifecycle_msgs</exec_depend>", "")
    imports = {"rclpy": ["n.py:1"], "rclpy.lifecycle": ["n.py:1"]}
    assert any("lifecycle_msgs" in p for p in check(xml_text, imports)["undeclared"])
