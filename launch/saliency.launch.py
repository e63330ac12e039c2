"""Launch the saliency node on one camera: `ros2 launch skd_saliency_ros saliency.launch.py`.

`ros2 launch skd_saliency_ros saliency.launch.py --show-args` lists every argument:

  image_topic, camera_info_topic   the camera's topics (remaps of `image` and `camera_info`)
  namespace                        namespace of the node (outputs: <namespace>/saliency_node/...)
  params_file                      parameter file, default: the package's config/saliency.yaml
  model_path, device, backend, output_scale, transport, autostart, use_sim_time
                                   node parameters that override params_file; empty (their
                                   default): params_file's value stays
  log_level                        the node's log level; empty: info
  respawn                          true: restart the node when it dies; false: its end ends
                                   the launch, with exit code 1 when it failed

Several cameras in one node: list their topics in the `cameras` parameter of a copy of
config/saliency.yaml and pass it as params_file (remapping then applies per topic name).

The Fast DDS shared-memory profile (config/fastdds_shm.xml) is set by fastdds_profile.launch.py,
included first; the rules for arguments and exits are in launch_rules.py.
"""

import os
import runpy

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

PACKAGE = "skd_saliency_ros"
HERE = os.path.dirname(os.path.abspath(__file__))
RULES = runpy.run_path(os.path.join(HERE, "launch_rules.py"))

#: parameter argument -> type of the node parameter it overrides (skd_saliency_ros/ros/params.py;
#: use_sim_time is rclpy's own); test_launch_files.py checks both against the node
NODE_PARAMETERS = {
    "model_path": str,
    "device": str,
    "backend": str,
    "output_scale": float,
    "transport": str,
    "autostart": bool,
    "use_sim_time": bool,
}


def _saliency_node(context):
    """Build the node once the arguments are known (empty parameter arguments pass nothing)."""
    return RULES["node_with_rules"](
        context, parameter_types=NODE_PARAMETERS, params_file="params_file",
        package=PACKAGE, executable="saliency_node", name="saliency_node",
        namespace=LaunchConfiguration("namespace"),
        remappings=[
            ("image", LaunchConfiguration("image_topic")),
            ("camera_info", LaunchConfiguration("camera_info_topic")),
        ])


def generate_launch_description():
    """Declare the arguments, set the Fast DDS profile and start the node."""
    share = get_package_share_directory(PACKAGE)
    default_params = os.path.join(share, "config", "saliency.yaml")
    profile_launch = os.path.join(HERE, "fastdds_profile.launch.py")
    return LaunchDescription([
        DeclareLaunchArgument(
            "image_topic", default_value="image",
            description="Camera image topic (sensor_msgs/Image) to compute saliency on"),
        DeclareLaunchArgument(
            "camera_info_topic", default_value="camera_info",
            description="CameraInfo topic of that camera (needed for ~/bearings only)"),
        DeclareLaunchArgument(
            "namespace", default_value="",
            description="Namespace of the node, e.g. the drone or camera name"),
        DeclareLaunchArgument(
            "params_file", default_value=default_params,
            description="YAML parameter file of the node; the arguments below override it"),
        DeclareLaunchArgument(
            "model_path", default_value="",
            description="Checkpoint (.pt) or ONNX file of the model; empty: params_file's "
                        "model_path (config/saliency.yaml: the shipped default model)"),
        DeclareLaunchArgument(
            "device", default_value="", choices=["", "auto", "cpu", "cuda"],
            description="Inference device; empty: params_file's device (auto)"),
        DeclareLaunchArgument(
            "backend", default_value="", choices=["", "auto", "torch", "onnxruntime"],
            description="Inference backend; empty: params_file's backend (auto: onnxruntime "
                        "on a CPU, torch on CUDA)"),
        DeclareLaunchArgument(
            "output_scale", default_value="",
            description="Size of ~/saliency relative to the input image, 0.01 to 1 (1.0: "
                        "full size); empty: params_file's output_scale (0.25)"),
        DeclareLaunchArgument(
            "transport", default_value="", choices=["", "raw", "compressed"],
            description="raw: sensor_msgs/Image on image_topic; compressed: "
                        "sensor_msgs/CompressedImage on <image_topic>/compressed; empty: "
                        "params_file's transport (raw)"),
        DeclareLaunchArgument(
            "autostart", default_value="", choices=["", "true", "false"],
            description="false: the lifecycle node waits unconfigured for a lifecycle "
                        "manager or ~/enable; empty: params_file's autostart (true)"),
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
        IncludeLaunchDescription(PythonLaunchDescriptionSource(profile_launch)),
        OpaqueFunction(function=_saliency_node),
    ])
