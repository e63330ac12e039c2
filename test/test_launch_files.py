"""The launch files, read without launch: arguments, node parameters, includes and the docs.

launch, launch_ros and the ``ros2`` CLI do not install from PyPI and faking them would test
nothing, so the launch files are read with ``ast``: every DeclareLaunchArgument (name,
default, description, choices), the parameter arguments against the nodes' parameter tables,
the executables against setup.py, the includes (bringup sets the Fast DDS profile before
anything else starts).  launch/launch_rules.py keeps its launch imports inside the functions
that build actions, so its pure rules (argument text -> typed values, exit code -> verdict)
run here for real.  Last, every ``name:=value`` on a ``ros2 launch`` command line of
README.md and docs/*.md must be an argument of the launch file named on that line (launch
ignores an undeclared name silently: docs/PX4.md's ``camera:=`` left the node on ``/image``).
"""

from __future__ import annotations

import ast
import math
import re
import runpy
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest

from skd_saliency_ros.ros import attention_node, node, params

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
PACKAGE = "skd_saliency_ros"
RULES = runpy.run_path(str(LAUNCH / "launch_rules.py"))
#: the arguments users change at launch (issue 20), each overriding the params file
SALIENCY_PARAMETER_ARGUMENTS = {"model_path", "device", "backend", "output_scale",
                                "transport", "autostart", "use_sim_time"}
#: what saliency.launch.py and attention.launch.py both declare: one value for both nodes
SHARED = {"namespace", "use_sim_time", "log_level", "respawn"}
#: rclpy declares it on every node; not in the nodes' own tables
RCLPY_PARAMETERS = {"use_sim_time": bool}


@dataclass
class Argument:
    """One DeclareLaunchArgument: default (None when computed, e.g. a share path)."""

    name: str
    default: Optional[str]
    description: str
    choices: Optional[List[str]]


@dataclass
class LaunchFile:
    """What a launch file declares and uses, read from its source."""

    path: Path
    tree: ast.Module
    arguments: Dict[str, Argument] = field(default_factory=dict)
    declared_twice: List[str] = field(default_factory=list)
    used: set = field(default_factory=set)  # LaunchConfiguration(...) and values[...] names
    includes: List[str] = field(default_factory=list)  # sibling launch files, in order

    def calls(self, name: str) -> List[ast.Call]:
        """Every call of a plain name (DeclareLaunchArgument, ...), in source order."""
        return [n for n in ast.walk(self.tree) if isinstance(n, ast.Call)
                and isinstance(n.func, ast.Name) and n.func.id == name]

    def constant(self, name: str):
        """Value of a module-level NAME = <literal> (dicts of types as type names)."""
        for stmt in self.tree.body:
            target = stmt.target if isinstance(stmt, ast.AnnAssign) else (
                stmt.targets[0] if isinstance(stmt, ast.Assign) else None)
            if isinstance(target, ast.Name) and target.id == name:
                if isinstance(stmt.value, ast.Dict):
                    return {ast.literal_eval(k): v.id
                            for k, v in zip(stmt.value.keys, stmt.value.values)}
                return ast.literal_eval(stmt.value)
        raise AssertionError(f"{self.path.name} defines no {name}")

    def rules_call(self, rule: str) -> ast.Call:
        """Return the one call of RULES["<rule>"](...) in the file."""
        (call,) = [n for n in ast.walk(self.tree) if isinstance(n, ast.Call)
                   and isinstance(n.func, ast.Subscript)
                   and getattr(n.func.value, "id", None) == "RULES"
                   and ast.literal_eval(n.func.slice) == rule]
        return call


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def read_launch_file(path: Path) -> LaunchFile:
    """Parse one launch file: its arguments, the configurations it reads, its includes."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lf = LaunchFile(path, tree)
    for call in lf.calls("DeclareLaunchArgument"):
        name = ast.literal_eval(call.args[0])
        default = _kw(call, "default_value")
        description = _kw(call, "description")
        choices = _kw(call, "choices")
        assert isinstance(description, ast.Constant), f"{path.name}: {name}: no description"
        if name in lf.arguments:
            lf.declared_twice.append(name)
        lf.arguments[name] = Argument(
            name, default.value if isinstance(default, ast.Constant) else None,
            description.value, ast.literal_eval(choices) if choices is not None else None)
    for call in lf.calls("LaunchConfiguration"):
        lf.used.add(ast.literal_eval(call.args[0]))
    for sub in ast.walk(tree):  # values["x"], values = context.launch_configurations
        if (isinstance(sub, ast.Subscript) and getattr(sub.value, "id", None) == "values"
                and isinstance(sub.slice, ast.Constant)):
            lf.used.add(sub.slice.value)
    names = sorted((n.lineno, n.col_offset, n.value) for n in ast.walk(tree)
                   if isinstance(n, ast.Constant) and isinstance(n.value, str)
                   and n.value.endswith(".launch.py") and (LAUNCH / n.value).is_file()
                   and n.value != path.name)
    lf.includes = [value for _, _, value in names]
    return lf


def launch_files() -> Dict[str, LaunchFile]:
    """Every launch file of the package, by file name."""
    return {p.name: read_launch_file(p) for p in sorted(LAUNCH.glob("*.launch.py"))}


def all_arguments(name: str, files: Dict[str, LaunchFile]) -> Dict[str, Argument]:
    """Arguments of a launch file and of the files it includes (what --show-args lists)."""
    found: Dict[str, Argument] = {}
    for include in files[name].includes:
        for arg_name, arg in all_arguments(include, files).items():
            found.setdefault(arg_name, arg)
    return {**found, **files[name].arguments}


def _scripts() -> Dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, "id", "") == "setup")
    entry_points = ast.literal_eval(_kw(call, "entry_points"))
    return dict(s.split(" = ") for s in entry_points["console_scripts"])


# ------------------------------------------------------------------------------- arguments
def test_the_package_has_its_launch_files():
    """Saliency alone, the adapter alone, the bringup of both, the profile on its own."""
    assert set(launch_files()) == {"saliency.launch.py", "attention.launch.py",
                                   "bringup.launch.py", "fastdds_profile.launch.py"}


@pytest.mark.parametrize("name", sorted(p.name for p in LAUNCH.glob("*.launch.py")))
def test_arguments_are_declared_once_and_described(name):
    """Each argument once, with a description and a default among its choices; none unused."""
    lf = launch_files()[name]
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"
               for n in lf.tree.body)
    assert not lf.declared_twice, lf.declared_twice
    for arg in lf.arguments.values():
        assert len(arg.description) > 15, f"{name}: {arg.name}: say what it does"
        if arg.choices is not None:
            assert arg.default in arg.choices, f"{name}: {arg.name}"
    assert lf.used <= set(lf.arguments), f"{name}: undeclared {lf.used - set(lf.arguments)}"


def test_node_launch_files_declare_what_the_rules_read():
    """node_with_rules reads respawn, log_level, the params file and each parameter argument."""
    files = launch_files()
    for name in ("saliency.launch.py", "attention.launch.py"):
        lf = files[name]
        call = lf.rules_call("node_with_rules")
        params_file = ast.literal_eval(_kw(call, "params_file"))
        table = lf.constant("NODE_PARAMETERS")
        assert {"respawn", "log_level", params_file} | set(table) <= set(lf.arguments), name
        assert _kw(call, "parameter_types").id == "NODE_PARAMETERS"
        for arg_name in table:
            assert lf.arguments[arg_name].default == "", f"{arg_name}: empty = keep the file's"


def test_saliency_parameter_arguments_match_the_node_table():
    """Each parameter argument is a node parameter, of its type, with the node's choices."""
    lf = launch_files()["saliency.launch.py"]
    table = lf.constant("NODE_PARAMETERS")
    assert set(table) == SALIENCY_PARAMETER_ARGUMENTS
    for arg_name, type_name in table.items():
        expected = (RCLPY_PARAMETERS[arg_name] if arg_name in RCLPY_PARAMETERS
                    else type(params.SPECS[arg_name].default))
        assert type_name == expected.__name__, arg_name
        choices = lf.arguments[arg_name].choices
        spec = params.SPECS.get(arg_name)
        if expected is bool:
            assert choices == ["", "true", "false"], arg_name
        elif spec is not None and spec.choices:
            assert choices == [""] + list(spec.choices), arg_name
        else:
            assert choices is None, arg_name
        if spec is not None:  # the description names the default it falls back to
            default = str(spec.default).lower() if expected is bool else str(spec.default)
            assert default in lf.arguments[arg_name].description or arg_name == "model_path"


def test_attention_parameter_arguments_match_the_node_table():
    """The adapter's parameter arguments are its parameters (or rclpy's), of their types."""
    table = launch_files()["attention.launch.py"].constant("NODE_PARAMETERS")
    specs = attention_node.ATTENTION_PARAMS.by_name
    for arg_name, type_name in table.items():
        expected = (RCLPY_PARAMETERS[arg_name] if arg_name in RCLPY_PARAMETERS
                    else type(specs[arg_name].default))
        assert type_name == expected.__name__, arg_name


def test_shared_arguments_agree_and_the_rest_are_unique():
    """Bringup includes both node files: a shared name must mean the same in both."""
    files = launch_files()
    saliency = files["saliency.launch.py"].arguments
    attention = files["attention.launch.py"].arguments
    bringup = files["bringup.launch.py"].arguments
    assert set(saliency) & set(attention) == SHARED
    for name in SHARED:
        assert saliency[name] == attention[name], name
    assert not set(bringup) & (set(saliency) | set(attention))


@pytest.mark.parametrize("launch_name,module,script", [
    ("saliency.launch.py", node, "saliency_node"),
    ("attention.launch.py", attention_node, "attention_to_setpoint")])
def test_nodes_run_the_installed_executables(launch_name, module, script):
    """Package, executable (setup.py console script), node name and remapped input names."""
    lf = launch_files()[launch_name]
    call = lf.rules_call("node_with_rules")
    assert _kw(call, "package").id == "PACKAGE" and lf.constant("PACKAGE") == PACKAGE
    assert ast.literal_eval(_kw(call, "executable")) == script
    assert _scripts()[script] == f"{module.__name__}:main"
    assert ast.literal_eval(_kw(call, "name")) == module.NODE_NAME
    assert _kw(call, "namespace").args[0].value == "namespace"
    remaps = {ast.literal_eval(t.elts[0]): t.elts[1].args[0].value
              for t in _kw(call, "remappings").elts}
    if module is node:
        (default_camera,) = params.SPECS["cameras"].default
        assert remaps == {default_camera: "image_topic",
                          params.camera_info_topic(default_camera): "camera_info_topic"}
    else:
        source = ast.parse(Path(module.__file__).read_text())
        subscribed = {ast.literal_eval(c.args[1]) for c in ast.walk(source)
                      if isinstance(c, ast.Call) and getattr(c.func, "attr", "")
                      == "create_subscription" and isinstance(c.args[1], ast.Constant)}
        assert set(remaps) <= subscribed and remaps == {
            "bearings": "bearings_topic", "gimbal_attitude_in": "gimbal_attitude_topic"}


@pytest.mark.parametrize("launch_name,params_arg,config", [
    ("saliency.launch.py", "params_file", "saliency.yaml"),
    ("attention.launch.py", "attention_params_file", "attention.yaml")])
def test_params_file_defaults_to_the_installed_config(launch_name, params_arg, config):
    """The default params file is config/<node>.yaml of the package's share directory."""
    lf = launch_files()[launch_name]
    default = next(_kw(c, "default_value") for c in lf.calls("DeclareLaunchArgument")
                   if ast.literal_eval(c.args[0]) == params_arg)
    var = next(n.value for n in ast.walk(lf.tree) if isinstance(n, ast.Assign)
               and getattr(n.targets[0], "id", None) == default.id)
    assert [a.value for a in var.args if isinstance(a, ast.Constant)] == ["config", config]
    assert (REPO / "config" / config).is_file()


# --------------------------------------------------------------------------- includes, profile
def test_the_profile_comes_before_every_process():
    """bringup: the profile is its first entity; saliency.launch.py: before its node."""
    files = launch_files()
    assert files["bringup.launch.py"].includes == [
        "fastdds_profile.launch.py", "saliency.launch.py", "attention.launch.py"]
    (description,) = files["bringup.launch.py"].calls("LaunchDescription")
    first = description.args[0].elts[0]
    assert first.func.id == "_include" and first.args[0].value == "fastdds_profile.launch.py"
    (description,) = files["saliency.launch.py"].calls("LaunchDescription")
    kinds = [e.func.id for e in description.args[0].elts]
    assert kinds.index("IncludeLaunchDescription") < kinds.index("OpaqueFunction")
    assert files["saliency.launch.py"].includes == ["fastdds_profile.launch.py"]


def test_profile_sets_both_fast_dds_variables():
    """Fast DDS 3 and 2 each read their own variable: the user's value first, else ours."""
    lf = launch_files()["fastdds_profile.launch.py"]
    variables = lf.constant("PROFILE_VARIABLES")
    assert variables == ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
    setenvs = lf.calls("SetEnvironmentVariable")
    assert [c.args[0].id for c in setenvs] == ["fastdds", "fastrtps"]
    for call in setenvs:  # each keeps its own value when the environment has one
        assert call.args[1].func.id == "EnvironmentVariable"
        assert call.args[1].args[0].id == call.args[0].id
    fallback = _kw(setenvs[0].args[1], "default_value")
    assert fallback.args[0].id == "fastrtps" and _kw(fallback, "default_value").id == "shipped"
    shipped = next(n.value for n in ast.walk(lf.tree) if isinstance(n, ast.Assign)
                   and getattr(n.targets[0], "id", None) == "shipped")
    assert [a.value for a in shipped.args if isinstance(a, ast.Constant)] == [
        "config", "fastdds_shm.xml"]
    assert (REPO / "config" / "fastdds_shm.xml").is_file()


def test_respawn_delay_in_the_descriptions_is_the_rule():
    """The '(2 s later)' of the respawn descriptions is launch_rules.RESPAWN_DELAY_S."""
    delay = RULES["RESPAWN_DELAY_S"]
    for name in ("saliency.launch.py", "attention.launch.py"):
        assert f"({delay:g} s later)" in launch_files()[name].arguments["respawn"].description


# ------------------------------------------------------------------------------ the rules
def test_typed_values_keep_the_parameter_types():
    """A boolean stays a boolean, a float a float, a path a string; bad text is one error."""
    typed = RULES["typed_value"]
    assert typed("autostart", "false", bool) is False
    assert typed("autostart", "True", bool) is True
    value = typed("output_scale", "1", float)
    assert value == 1.0 and isinstance(value, float)
    assert typed("model_path", " runs/123 ", str) == "runs/123"
    for kind, text in ((bool, "yes"), (bool, "1"), (float, "abc"), (int, "3")):
        with pytest.raises(RULES["LaunchArgumentError"], match="x"):
            typed("x", text, kind)


def test_empty_parameter_arguments_pass_nothing():
    """Only the given parameter arguments override the params file."""
    overrides = RULES["parameter_overrides"](
        {"model_path": "", "output_scale": "0.5", "autostart": "false", "device": "  "},
        {"model_path": str, "output_scale": float, "autostart": bool, "device": str,
         "backend": str})
    assert overrides == {"output_scale": 0.5, "autostart": False}


def test_log_level_and_camera_arguments():
    """--log-level from log_level; camera_launch_args split like a shell; a real file."""
    assert RULES["log_level_arguments"]("") == []
    assert RULES["log_level_arguments"]("DEBUG") == ["--log-level", "debug"]
    with pytest.raises(RULES["LaunchArgumentError"], match="log_level"):
        RULES["log_level_arguments"]("verbose")
    pairs = RULES["launch_argument_pairs"]
    assert pairs("a", "video_device:=/dev/video0 name:='front cam'") == [
        ("video_device", "/dev/video0"), ("name", "front cam")]
    assert pairs("a", "") == []
    with pytest.raises(RULES["LaunchArgumentError"], match="name:=value"):
        pairs("camera_launch_args", "video_device=/dev/video0")
    existing = RULES["existing_file"]
    assert existing("camera_launch", str(LAUNCH / "saliency.launch.py"),
                    RULES["LAUNCH_FILE_SUFFIXES"]) == str(LAUNCH / "saliency.launch.py")
    with pytest.raises(RULES["LaunchArgumentError"], match="no such file"):
        existing("camera_launch", str(LAUNCH / "missing.launch.py"))
    with pytest.raises(RULES["LaunchArgumentError"], match="not a launch file"):
        existing("camera_launch", str(REPO / "setup.cfg"), RULES["LAUNCH_FILE_SUFFIXES"])


def _rotation(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(yaw) Ry(pitch) Rx(roll), the convention of tf2's fixed-axis RPY."""
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch),
                              math.sin(pitch), math.cos(yaw), math.sin(yaw))
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    return rz @ ry @ rx


def test_optical_frame_transform_is_rep_103():
    """Optical z (forward) is camera x, optical x (right) camera -y, optical y (down) -z."""
    args = RULES["optical_frame_arguments"]("camera_link", "camera_optical_frame")
    values = dict(zip(args[::2], args[1::2]))
    assert values["--frame-id"] == "camera_link"
    assert values["--child-frame-id"] == "camera_optical_frame"
    rotation = _rotation(*(float(values[k]) for k in ("--roll", "--pitch", "--yaw")))
    np.testing.assert_allclose(rotation @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(rotation @ [1, 0, 0], [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(rotation @ [0, 1, 0], [0, 0, -1], atol=1e-12)
    with pytest.raises(RULES["LaunchArgumentError"], match="camera_frame"):
        RULES["optical_frame_arguments"]("camera_optical_frame", "camera_optical_frame")


def test_a_failed_node_fails_the_launch():
    """Non-zero exit while running: a reason (-> exit 1); clean exit or shutdown: none."""
    failure = RULES["exit_failure"]
    assert "saliency_node exited with code 1" in failure("saliency_node", 1, False)
    assert "code -11" in failure("saliency_node", -11, False)
    assert failure("saliency_node", 0, False) is None
    assert failure("saliency_node", -15, True) is None  # Ctrl-C: launch stopped it
    assert RULES["end_launch_on_exit"](object(), respawn=True) == []  # launch restarts it


# ------------------------------------------------------------------------------------ docs
LAUNCH_LINE = re.compile(r"ros2 launch\s+(\S+)\s+(\S+\.launch\.py)(.*)")


def launch_commands(text: str) -> List[Tuple[int, str, str, List[str]]]:
    """(line, package, launch file, argument names) of each ``ros2 launch`` command in text.

    Backslash continuations are joined; a command ends at a backtick (inline code), a shell
    comment or ``;``, ``&&``, ``|``.  Options (``--show-args``) are not arguments.  Inside
    ``bash -c "..."`` the closing quote ends the command.
    """
    commands = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start, line = i + 1, lines[i]
        while line.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i]
        i += 1
        for match in LAUNCH_LINE.finditer(line):
            rest = match.group(3).split("`")[0]
            lexer = shlex.shlex(rest, posix=True, punctuation_chars=";&|")
            lexer.whitespace_split, lexer.commenters = True, "#"
            try:
                words = list(lexer)
            except ValueError:  # a quote opened before ros2 launch (bash -c "... ros2 launch")
                words = rest.replace('"', " ").replace("'", " ").split()
            names = []
            for word in words:
                if word and set(word) <= set(";&|"):
                    break
                if ":=" in word and not word.startswith("-"):
                    names.append(word.split(":=")[0])
            commands.append((start, match.group(1), match.group(2).split("/")[-1], names))
    return commands


def undeclared(path_name: str, text: str) -> List[str]:
    """Return the launch arguments of text's ``ros2 launch`` lines that their launch file lacks."""
    files = launch_files()
    problems = []
    for line, package, launch_file, names in launch_commands(text):
        if package != PACKAGE:
            continue  # another package's launch file (a camera driver)
        if launch_file not in files:
            problems.append(f"{path_name}:{line}: no launch file {launch_file}")
            continue
        declared = all_arguments(launch_file, files)
        problems += [f"{path_name}:{line}: {launch_file} declares no argument '{n}'"
                     for n in names if n not in declared]
    return problems


def _docs() -> List[Path]:
    return [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))


def test_docs_use_only_declared_launch_arguments():
    """Every name:=value on a ros2 launch line of README and docs/ is declared."""
    problems = [p for doc in _docs() for p in undeclared(doc.name, doc.read_text())]
    assert not problems, "\n".join(problems)
    # the docs do show launch commands (else this test would check nothing)
    lines = [c for doc in _docs() for c in launch_commands(doc.read_text())]
    assert {c[2] for c in lines} >= {"saliency.launch.py", "bringup.launch.py"}


def test_the_docs_check_finds_an_undeclared_argument():
    """The old docs/PX4.md line (camera:=) is caught, across a continuation and in `code`."""
    text = ("1. `ros2 launch skd_saliency_ros saliency.launch.py camera:=/camera/image_raw`\n"
            "```bash\nros2 launch skd_saliency_ros bringup.launch.py \\\n"
            "    model_path:=/m.onnx camera_launch_args:=\"a:=1 b:=2\" \\\n"
            "    use_sim_time:=true fps:=30 # rate:=5\n"
            "ros2 launch skd_saliency_ros nothere.launch.py x:=1; echo y:=2\n"
            "ros2 launch v4l2_camera camera.launch.py video_device:=/dev/video0\n"
            "ExecStart=/bin/bash -c \"exec ros2 launch skd_saliency_ros attention.launch.py "
            "bearings_topic:=/b image:=/i\"\n```\n")
    assert undeclared("X.md", text) == [
        "X.md:1: saliency.launch.py declares no argument 'camera'",
        "X.md:3: bringup.launch.py declares no argument 'fps'",
        "X.md:6: no launch file nothere.launch.py",
        "X.md:8: attention.launch.py declares no argument 'image'"]


def test_readme_documents_every_launch_argument():
    """The README's launch and bringup sections name every argument of every launch file."""
    text = (REPO / "README.md").read_text()
    files = launch_files()
    missing = sorted({n for name in files for n in files[name].arguments
                      if f"`{n}`" not in text})
    assert not missing, f"README does not mention launch arguments {missing}"
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" in text and "FASTDDS_DEFAULT_PROFILES_FILE" in text
