"""Launch the attention adapter alone: `ros2 launch skd_saliency_ros attention.launch.py`.

`attention_to_setpoint` turns the saliency node's strongest bearing into gimbal angles and a
yaw-rate command (docs/PX4.md).  Arguments (`--show-args`):

  bearings_topic          the saliency node's ~/bearings (relative: in the namespace)
  gimbal_attitude_topic   a gimbal driver's QuaternionStamped (attitude_source: topic)
  namespace               namespace of the node, the same as the saliency node's
  attention_params_file   parameter file, default: the package's config/attention.yaml
  use_sim_time            true: the node's clock follows /clock; empty: the params file's
  log_level, respawn      as in saliency.launch.py (launch_rules.py holds the rules)

bringup.launch.py includes this file next to saliency.launch.py: the arguments both declare
(namespace, use_sim_time, log_level, respawn) apply to both nodes, with the same defaults.
"""

import os
import runpy

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

PACKAGE = "skd_saliency_ros"
HERE = os.path.dirname(os.path.abspath(__file__))
RULES = runpy.run_path(os.path.join(HERE, "launch_rules.py"))

#: parameter argument -> type of the node parameter it overrides (use_sim_time is rclpy's own;
#: the adapter's own parameters go in the params file)
NODE_PARAMETERS = {
    "use_sim_time": bool,
}


def _attention_node(context):
    """Build the node once the arguments are known (an empty use_sim_time passes nothing)."""
    return RULES["node_with_rules"](
        context, parameter_types=NODE_PARAMETERS, params_file="attention_params_file",
        package=PACKAGE, executable="attention_to_setpoint", name="attention_to_setpoint",
        namespace=LaunchConfiguration("namespace"),
        remappings=[
            ("bearings", LaunchConfiguration("bearings_topic")),
            ("gimbal_attitude_in", LaunchConfiguration("gimbal_attitude_topic")),
        ])


def generate_launch_description():
    """Declare the arguments and start the adapter."""
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config",
                                  "attention.yaml")
    return LaunchDescription([
        DeclareLaunchArgument(
            "bearings_topic", default_value="saliency_node/bearings",
            description="geometry_msgs/PoseArray bearings of the saliency node (relative: "
                        "resolved in namespace; several cameras: saliency_node/<camera>/"
                        "bearings)"),
        DeclareLaunchArgument(
            "gimbal_attitude_topic", default_value="gimbal_attitude_in",
            description="geometry_msgs/QuaternionStamped camera attitude of a gimbal driver "
                        "(read with attitude_source: topic only)"),
        DeclareLaunchArgument(
            "namespace", default_value="",
            description="Namespace of the node, e.g. the drone or camera name"),
        DeclareLaunchArgument(
            "attention_params_file", default_value=default_params,
            description="YAML parameter file of attention_to_setpoint (mount, limits, "
                        "attitude_source, PX4 output)"),
        DeclareLaunchArgument(
            "use_sim_time", default_value="", choices=["", "true", "false"],
            description="true: the node's clock follows /clock (bag replay); empty: the "
                        "params file's use_sim_time (false when it has none)"),
        DeclareLaunchArgument(
            "log_level", default_value="",
            choices=["", "debug", "info", "warn", "error", "fatal"],
            description="Log level of the node; empty: info"),
        DeclareLaunchArgument(
            "respawn", default_value="false", choices=["true", "false"],
            description="true: restart the node when it dies (2 s later); false: the node's "
                        "end ends the launch, with exit code 1 when the node failed"),
        OpaqueFunction(function=_attention_node),
    ])
