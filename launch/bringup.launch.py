"""Bring saliency up on a drone: `ros2 launch skd_saliency_ros bringup.launch.py`.

Starts, in this order: the Fast DDS shared-memory profile for every process of the launch
(fastdds_profile.launch.py), an optional camera driver (its launch file), an optional static
transform to the camera's optical frame, the saliency node (saliency.launch.py) and the
attention adapter attention_to_setpoint (attention.launch.py).  `--show-args` lists the
arguments below and those of the two included files (one name, one value: namespace,
use_sim_time, log_level and respawn apply to both nodes):

  camera_launch        a camera driver's launch file (.py, .xml or .yaml path); empty: none,
                       the camera runs elsewhere (give it the profile: README, "Bringup")
  camera_launch_args   its arguments, "name:=value name:=value"
  optical_frame        frame_id of the camera's images; given: camera_frame -> optical_frame
                       is published (tf2_ros static_transform_publisher) with REP 103's
                       optical rotation, so ~/target and ~/bearings can be transformed
  camera_frame         the parent of that transform, the camera body frame

A node that dies ends the launch, and ros2 launch exits 1 when it failed, unless
respawn:=true restarts it (launch_rules.py).  The transform publisher is never respawned:
it fails only on bad arguments.  The camera driver's processes follow its own launch file.
"""

import os
import runpy

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, GroupAction, IncludeLaunchDescription,
                            OpaqueFunction)
from launch.launch_description_sources import (AnyLaunchDescriptionSource,
                                               PythonLaunchDescriptionSource)

HERE = os.path.dirname(os.path.abspath(__file__))
RULES = runpy.run_path(os.path.join(HERE, "launch_rules.py"))


def _camera(context):
    """Include the camera launch file and start the optical-frame transform, when asked."""
    from launch_ros.actions import Node

    values = context.launch_configurations
    actions = []
    if values["camera_launch"].strip():
        path = RULES["existing_file"]("camera_launch", values["camera_launch"],
                                      RULES["LAUNCH_FILE_SUFFIXES"])
        arguments = RULES["launch_argument_pairs"]("camera_launch_args",
                                                   values["camera_launch_args"])
        # scoped: what the camera's launch file declares does not leak into ours
        actions.append(GroupAction([IncludeLaunchDescription(
            AnyLaunchDescriptionSource(path), launch_arguments=arguments)], scoped=True))
    if values["optical_frame"].strip():
        transform = Node(
            package="tf2_ros", executable="static_transform_publisher",
            name="optical_frame_publisher", output="screen",
            arguments=RULES["optical_frame_arguments"](values["camera_frame"],
                                                       values["optical_frame"]))
        actions += [transform] + RULES["end_launch_on_exit"](transform, respawn=False)
    return actions


def _include(name):
    """Include a launch file of this package (its arguments show in --show-args)."""
    return IncludeLaunchDescription(PythonLaunchDescriptionSource(os.path.join(HERE, name)))


def generate_launch_description():
    """Profile first, then camera, transform, saliency node and adapter."""
    return LaunchDescription([
        _include("fastdds_profile.launch.py"),
        DeclareLaunchArgument(
            "camera_launch", default_value="",
            description="Launch file of a camera driver to start (.py, .xml or .yaml path); "
                        "empty: none (the camera runs outside this launch)"),
        DeclareLaunchArgument(
            "camera_launch_args", default_value="",
            description="Arguments of camera_launch, as \"name:=value name:=value\""),
        DeclareLaunchArgument(
            "optical_frame", default_value="",
            description="frame_id of the camera's images; given: a static transform "
                        "camera_frame -> optical_frame with REP 103's optical rotation "
                        "(x right, y down, z forward); empty: no transform"),
        DeclareLaunchArgument(
            "camera_frame", default_value="camera_link",
            description="Parent frame of that transform: the camera body frame (x forward)"),
        OpaqueFunction(function=_camera),
        _include("saliency.launch.py"),
        _include("attention.launch.py"),
    ])
