"""Package-level checks a ROS 2 Python package is expected to pass.

* flake8 with pep257 docstrings (what ament_flake8 / ament_pep257 run), from PyPI;
* package.xml valid against the format-3 schema (vendored in test/xsd: no network in tests);
* package.xml, setup.py, setup.cfg and resource/ agree on name, version and install paths;
* the launch files agree with setup.py, the nodes and config/: test_launch_files.py;
* config/saliency.yaml and config/attention.yaml list exactly the parameters their node
  declares, with their defaults;
* `colcon build` installs a saliency_node that starts (and stops cleanly on a bad model),
  the model files with their card, and every launch and config file.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lxml import etree

from skd_saliency_ros import __version__
from skd_saliency_ros.ros import params
from skd_saliency_ros.ros.attention_node import ATTENTION_PARAMS

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "skd_saliency_ros"
XSD = Path(__file__).resolve().parent / "xsd" / "package_format3.xsd"


def _setup_call() -> dict:
    """Keyword arguments of the setup() call in setup.py, as literal Python values."""
    tree = ast.parse((REPO / "setup.py").read_text())
    consts = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            consts[node.targets[0].id] = node.value.value
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, "id", "") == "setup")

    def value(expr):
        if isinstance(expr, ast.Name):
            return consts[expr.id]
        if isinstance(expr, ast.JoinedStr):
            return "".join(str(value(v.value)) if isinstance(v, ast.FormattedValue)
                           else v.value for v in expr.values)
        if isinstance(expr, ast.Call) and getattr(expr.func, "id", "") == "glob":
            return ("glob", value(expr.args[0]))
        if isinstance(expr, (ast.List, ast.Tuple)):
            return [value(e) for e in expr.elts]
        if isinstance(expr, ast.Dict):
            return {value(k): value(v) for k, v in zip(expr.keys, expr.values)}
        return ast.literal_eval(expr)

    return {kw.arg: value(kw.value) for kw in call.keywords}


def test_flake8_pep257():
    """flake8 + flake8-docstrings (pep257 convention from setup.cfg) over the whole package."""
    version = subprocess.run([sys.executable, "-m", "flake8", "--version"],
                             capture_output=True, text=True, cwd=REPO)
    assert "flake8-docstrings" in version.stdout, "pep257 checks (flake8-docstrings) missing"
    result = subprocess.run([sys.executable, "-m", "flake8", "."], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0, f"flake8 found problems:\n{result.stdout}{result.stderr}"


def test_package_xml_is_valid_format3():
    """xmllint-style validation of package.xml against the REP 149 schema."""
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    doc = etree.parse(str(REPO / "package.xml"))
    assert schema.validate(doc), "\n".join(str(e) for e in schema.error_log)
    # The schema really checks: the same manifest without a licence is rejected.
    broken = etree.parse(str(REPO / "package.xml"))
    root = broken.getroot()
    root.remove(root.find("license"))
    assert not schema.validate(broken)


def test_package_metadata_agrees():
    """Name, version, dependencies and install paths agree across the package files."""
    root = etree.parse(str(REPO / "package.xml")).getroot()
    setup = _setup_call()
    assert root.findtext("name") == setup["name"] == PACKAGE
    assert root.findtext("version") == setup["version"] == __version__
    assert root.findtext("export/build_type") == "ament_python"
    depends = {e.text for e in root if e.tag in ("depend", "exec_depend")}
    assert {"rclpy", "sensor_msgs", "geometry_msgs", "std_msgs", "diagnostic_msgs",
            "python3-numpy", "python3-opencv"} <= depends
    assert (REPO / "resource" / PACKAGE).is_file()
    data_files = dict((dest, src) for dest, src in setup["data_files"])
    assert data_files["share/ament_index/resource_index/packages"] == [f"resource/{PACKAGE}"]
    assert data_files[f"share/{PACKAGE}"] == ["package.xml"]
    # every layer is installed (colcon build puts only the listed packages in install/)
    layers = sorted(p.parent.name for p in (REPO / PACKAGE).glob("*/__init__.py"))
    assert sorted(setup["packages"]) == sorted([PACKAGE] + [f"{PACKAGE}.{n}" for n in layers])
    assert data_files[f"share/{PACKAGE}/launch"] == ("glob", "launch/*.py")
    assert data_files[f"share/{PACKAGE}/config"] == ("glob", "config/*.*")
    assert data_files[f"share/{PACKAGE}/config/teachers"] == ("glob", "config/teachers/*.yaml")
    assert data_files[f"share/{PACKAGE}/config/datasets"] == ("glob", "config/datasets/*.yaml")
    assert setup["package_data"] == {
        PACKAGE: ["weights/*.pt", "weights/*.onnx", "weights/*.md", "weights/*.json"]}
    cfg = (REPO / "setup.cfg").read_text()
    assert f"script_dir=$base/lib/{PACKAGE}" in cfg
    assert f"install_scripts=$base/lib/{PACKAGE}" in cfg
    scripts = dict(s.split(" = ") for s in setup["entry_points"]["console_scripts"])
    assert scripts["saliency_node"] == "skd_saliency_ros.ros.node:main"
    assert {"saliency_replay", "attention_to_setpoint"} <= set(scripts)


def test_fastdds_profile_is_shared_memory():
    """The shipped profile declares an SHM transport with 32 MiB segments and uses it."""
    root = etree.parse(str(REPO / "config" / "fastdds_shm.xml")).getroot()
    ns = {"d": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    shm = [t for t in root.iterfind(".//d:transport_descriptor", ns)
           if t.findtext("d:type", namespaces=ns) == "SHM"]
    assert len(shm) == 1
    assert int(shm[0].findtext("d:segment_size", namespaces=ns)) == 32 * 1024 * 1024
    shm_id = shm[0].findtext("d:transport_id", namespaces=ns)
    participant = root.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"
    used = [e.text for e in participant.iterfind(".//d:userTransports/d:transport_id", ns)]
    assert used[0] == shm_id
    assert participant.findtext(".//d:useBuiltinTransports", namespaces=ns) == "false"


def test_yaml_lists_exactly_the_declared_parameters():
    """config/saliency.yaml: every declared parameter, nothing else, defaults and comments."""
    text = (REPO / "config" / "saliency.yaml").read_text()
    doc = yaml.safe_load(text)
    assert list(doc) == ["/**"]
    values = doc["/**"]["ros__parameters"]
    assert set(values) == set(params.PARAM_NAMES)
    for spec in params.PARAMS:
        assert values[spec.name] == spec.default, f"{spec.name}: YAML differs from default"
    assert params.validate(values) is None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^    (\w+):", line)
        if match:
            assert lines[i - 1].strip().startswith("#"), f"{match.group(1)} has no comment"
    for spec in params.PARAMS:
        desc = spec.descriptor()
        assert desc.description and desc.read_only == spec.read_only
        if spec.range is not None:
            assert desc.integer_range or desc.floating_point_range, spec.name


def test_attention_yaml_lists_exactly_the_declared_parameters():
    """config/attention.yaml: every parameter of attention_to_setpoint, its default and type."""
    text = (REPO / "config" / "attention.yaml").read_text()
    doc = yaml.safe_load(text)
    assert list(doc) == ["/**"]
    values = doc["/**"]["ros__parameters"]
    assert set(values) == set(ATTENTION_PARAMS.names)
    for spec in ATTENTION_PARAMS.specs:
        value = values[spec.name]
        assert value == spec.default and type(value) is type(spec.default), spec.name
    assert ATTENTION_PARAMS.validate(values) is None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^    (\w+):", line)
        if match:
            assert lines[i - 1].strip().startswith("#"), f"{match.group(1)} has no comment"


def _shipped_files(*folders: str):
    """Every file under the given folders of the checkout (relative paths), no caches."""
    return sorted(str(p.relative_to(REPO)) for folder in folders
                  for p in (REPO / folder).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def _copy_package(dest: Path) -> None:
    """Copy what the package consists of (no venv, no data) into a workspace src folder."""
    dest.mkdir(parents=True)
    for name in ("package.xml", "setup.py", "setup.cfg"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("resource", "launch", "config", PACKAGE):
        shutil.copytree(REPO / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def test_colcon_build_installs_a_working_node(tmp_path, ros_env):
    """`colcon build` installs saliency_node to lib/<pkg>; it starts and checks its model."""
    colcon = Path(sys.executable).with_name("colcon")
    if not colcon.exists():
        pytest.fail(f"colcon is not installed next to {sys.executable} (make venv)")
    ws = tmp_path / "ws"
    _copy_package(ws / "src" / PACKAGE)
    env = dict(ros_env)
    env.pop("PYTHONPATH", None)  # the installed package, not the checkout
    build = subprocess.run([str(colcon), "build", "--event-handlers", "console_direct-"],
                           cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    install = ws / "install" / PACKAGE
    exe = install / "lib" / PACKAGE / "saliency_node"
    assert exe.is_file() and os.access(exe, os.X_OK)
    share = install / "share" / PACKAGE
    assert (share / "package.xml").is_file()
    # every launch file (and the rules they load) and every config file, at the same place
    shipped = _shipped_files("launch", "config")
    assert {"launch/bringup.launch.py", "launch/launch_rules.py", "config/attention.yaml",
            "config/fastdds_shm.xml"} <= set(shipped)
    missing = [rel for rel in shipped if not (share / rel).is_file()]
    assert not missing, f"not installed under {share}: {missing}"
    assert (install / "share/ament_index/resource_index/packages" / PACKAGE).is_file()
    site = next((install / "lib").glob("python3*/site-packages"))
    # the checkpoint, its pre-exported ONNX and its card (the research-use terms travel along)
    for pattern in ("*.pt", "*.onnx", "*.md", "*.json"):
        weights = sorted(p.name for p in (REPO / PACKAGE / "weights").glob(pattern))
        assert weights and sorted(
            p.name for p in (site / PACKAGE / "weights").glob(pattern)) == weights
    for card in ("skd_default_r64.md", "skd_default_r64.json"):
        assert (site / PACKAGE / "weights" / card).is_file(), card

    # Start the installed executable (from a clean directory, only the install on the path)
    # with a model that does not exist: it must come up far enough to say so and exit 1.
    env["PYTHONPATH"] = str(site)
    missing = tmp_path / "missing.pt"
    run = subprocess.run([str(exe), "--ros-args", "--params-file",
                          str(share / "config/saliency.yaml"), "-p", f"model_path:={missing}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert f"{missing}: no such checkpoint file" in out and "Traceback" not in out
    assert str(site) in subprocess.run(
        [sys.executable, "-c", "import skd_saliency_ros; print(skd_saliency_ros.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True).stdout


def test_readme_documents_every_parameter_and_topic():
    """The README's tables name every parameter and every topic of the node."""
    text = (REPO / "README.md").read_text()
    for name in params.PARAM_NAMES:
        assert f"| `{name}` |" in text, f"README does not document parameter {name}"
    for topic in ("`image`", "`camera_info`", "`~/saliency`", "`~/peaks`", "`~/bearings`",
                  "`~/overlay`", "`/diagnostics`", "`~/target`", "`~/camera_info`",
                  "`~/enable`"):
        assert f"| {topic} |" in text, f"README does not document topic {topic}"
    assert "make demo" in text and "make test" in text
