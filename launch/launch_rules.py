"""How the package's launch files turn their arguments into processes: one set of rules.

The launch files load this module by path (``runpy.run_path``): launch/ is installed as data,
not as a Python package.  The launch and launch_ros imports sit inside the functions that
build actions, so the pure rules (argument text -> typed values, exit code -> verdict) are
testable without launch installed (test/test_launch_files.py).

* A parameter argument left empty passes nothing: the params file's value (or the node's
  default) stays.  A given one overrides the params file (it comes after it in the node's
  ``parameters`` list, and the later value wins), typed as the node's parameter table
  expects, so ``autostart:=false`` reaches the node as a boolean, ``output_scale:=1`` as 1.0.
* A node that ends on its own ends the launch.  ``ros2 launch`` exits with what
  ``LaunchService.run()`` returns, and that is 0 unless an exception reaches the launch
  service's loop: in ros2/launch launch/launch/launch_service.py, ``run_async`` sets
  ``return_code = 1`` in its ``except Exception`` branch (an exception raised by an event
  handler's task is re-raised there) and otherwise returns 0, whatever the processes' exit
  codes ("process has died ... exit code 1" is only logged).  ros2/launch_ros
  ros2launch/ros2launch/api/api.py ``launch_a_launch_file`` returns that value and
  ``ros2 launch`` exits with it.  So the exit handler raises ``ProcessFailed`` for a
  non-zero exit: the launch shuts everything down and exits 1, which a supervisor
  (systemd ``Restart=on-failure``) sees.  With ``respawn:=true`` the node is restarted
  instead (after ``RESPAWN_DELAY_S``) and no exit handler is registered.
"""

import math
import os
import shlex
from typing import Any, Dict, List, Mapping, Optional, Tuple

#: wait before a respawn, so that a node that cannot start does not restart in a tight loop
RESPAWN_DELAY_S = 2.0
#: rcutils severities accepted by ``--ros-args --log-level``
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
#: what AnyLaunchDescriptionSource can read
LAUNCH_FILE_SUFFIXES = (".py", ".xml", ".yaml", ".yml")
#: camera_link (REP 103 body: x forward, z up) -> optical frame (x right, y down, z forward)
OPTICAL_ROLL_PITCH_YAW = (-math.pi / 2, 0.0, -math.pi / 2)


class LaunchArgumentError(ValueError):
    """A launch argument whose value cannot be used; the message names it and says why."""


class ProcessFailed(RuntimeError):
    """A process ended with a non-zero code while the launch was running: the launch fails."""


def typed_value(name: str, text: str, kind: type) -> Any:
    """Convert launch-argument text to the type of the node parameter it sets."""
    text = text.strip()
    if kind is bool:
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise LaunchArgumentError(f"{name}:={text}: expected true or false")
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise LaunchArgumentError(f"{name}:={text}: expected a number") from None
    if kind is str:
        return text
    raise LaunchArgumentError(f"{name}: no rule for parameters of type {kind.__name__}")


def parameter_overrides(values: Mapping[str, str],
                        types: Mapping[str, type]) -> Dict[str, Any]:
    """Typed overrides for the parameter arguments that were given (empty ones pass nothing)."""
    return {name: typed_value(name, values.get(name, ""), kind)
            for name, kind in types.items() if values.get(name, "").strip()}


def log_level_arguments(text: str) -> List[str]:
    """``--log-level`` ROS arguments for a log_level argument; empty: none (the default)."""
    level = text.strip().lower()
    if not level:
        return []
    if level not in LOG_LEVELS:
        raise LaunchArgumentError(f"log_level:={text}: expected one of {', '.join(LOG_LEVELS)}")
    return ["--log-level", level]


def existing_file(name: str, text: str, suffixes: Tuple[str, ...] = ()) -> str:
    """Return the absolute path of an argument that names a file, or say what is wrong."""
    path = os.path.abspath(os.path.expanduser(text.strip()))
    if not os.path.isfile(path):
        raise LaunchArgumentError(f"{name}:={text}: no such file")
    if suffixes and not path.endswith(suffixes):
        raise LaunchArgumentError(f"{name}:={text}: not a launch file "
                                  f"({', '.join(suffixes)})")
    return path


def launch_argument_pairs(name: str, text: str) -> List[Tuple[str, str]]:
    """Split ``"a:=1 b:='two words'"`` into launch arguments for an included launch file."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise LaunchArgumentError(f"{name}:={text}: {exc}") from None
    pairs = []
    for word in words:
        key, sep, value = word.partition(":=")
        if not sep or not key:
            raise LaunchArgumentError(f"{name}: '{word}' is not of the form name:=value")
        pairs.append((key, value))
    return pairs


def optical_frame_arguments(camera_frame: str, optical_frame: str) -> List[str]:
    """static_transform_publisher arguments: camera_frame -> optical_frame, REP 103 rotation."""
    if not camera_frame.strip() or camera_frame.strip() == optical_frame.strip():
        raise LaunchArgumentError(f"camera_frame:={camera_frame}: give the camera body frame, "
                                  f"the parent of optical_frame:={optical_frame}")
    roll, pitch, yaw = OPTICAL_ROLL_PITCH_YAW
    return ["--x", "0", "--y", "0", "--z", "0", "--roll", repr(roll), "--pitch", repr(pitch),
            "--yaw", repr(yaw), "--frame-id", camera_frame.strip(),
            "--child-frame-id", optical_frame.strip()]


def exit_failure(name: str, returncode: Optional[int], shutting_down: bool) -> Optional[str]:
    """Why the launch fails for this exit of a process, or None (clean exit, or shutdown)."""
    if shutting_down or returncode == 0:
        return None
    return (f"{name} exited with code {returncode}: the launch ends with an error "
            "(respawn:=true restarts it instead)")


def end_launch_on_exit(action, respawn: bool) -> list:
    """Return the event handler that ends the launch when ``action``'s process ends."""
    if respawn:
        return []  # launch restarts the process itself
    from launch.actions import RegisterEventHandler, Shutdown
    from launch.event_handlers import OnProcessExit

    def on_exit(event, context):
        # ProcessExited: process_name is the process's unique name (event.name is the
        # event type's), returncode its exit code (launch/events/process/)
        reason = exit_failure(event.process_name, event.returncode, context.is_shutdown)
        if reason:
            raise ProcessFailed(reason)  # ros2 launch exits 1 (see the module docstring)
        if context.is_shutdown:
            return None
        return [Shutdown(reason=f"{event.process_name} exited")]

    return [RegisterEventHandler(OnProcessExit(target_action=action, on_exit=on_exit))]


def node_with_rules(context, *, parameter_types: Mapping[str, type], params_file: str,
                    **node_kwargs) -> list:
    """Build a launch_ros Node from the evaluated arguments, plus its exit handler.

    ``params_file`` is the name of the launch argument holding the node's parameter file;
    ``parameter_types`` maps parameter arguments to their types; ``node_kwargs`` go to Node.
    """
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    values = context.launch_configurations
    overrides = parameter_overrides(values, parameter_types)
    parameters: list = [existing_file(params_file, values[params_file])]
    if overrides:
        # ParameterValue keeps each value's type (a plain str would be re-read as YAML)
        parameters.append({name: ParameterValue(value, value_type=type(value))
                           for name, value in overrides.items()})
    respawn = typed_value("respawn", values.get("respawn", "false"), bool)
    node = Node(parameters=parameters,
                ros_arguments=log_level_arguments(values.get("log_level", "")) or None,
                respawn=respawn, respawn_delay=RESPAWN_DELAY_S if respawn else None,
                output="screen", emulate_tty=True, **node_kwargs)
    return [node] + end_launch_on_exit(node, respawn)
