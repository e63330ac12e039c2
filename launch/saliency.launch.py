"""Launch the saliency node on one camera: `ros2 launch skd_saliency_ros saliency.launch.py`.

Arguments (`ros2 launch ... --show-args`):
  image_topic        camera image topic the node's `image` input is remapped to
  camera_info_topic  CameraInfo topic for bearing rays (remap of `camera_info`)
  namespace          namespace of the node (outputs: <namespace>/saliency_node/saliency ...)
  params_file        parameter file, default: the package's config/saliency.yaml

Several cameras in one node: list their topics in the `cameras` parameter of a copy of
config/saliency.yaml and pass it as params_file (remapping then applies per topic name).

FASTDDS_DEFAULT_PROFILES_FILE is set to the package's config/fastdds_shm.xml (shared memory
with 32 MiB segments, so full-HD images are not lost between processes) unless the
environment already sets it.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "skd_saliency_ros"


def generate_launch_description():
    """Declare the arguments, the Fast DDS profile default and the node."""
    share = get_package_share_directory(PACKAGE)
    default_params = os.path.join(share, "config", "saliency.yaml")
    default_profile = os.path.join(share, "config", "fastdds_shm.xml")
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
            description="YAML parameter file of the node"),
        SetEnvironmentVariable(
            "FASTDDS_DEFAULT_PROFILES_FILE",
            EnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                                default_value=default_profile)),
        Node(
            package=PACKAGE,
            executable="saliency_node",
            name="saliency_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file")],
            remappings=[
                ("image", LaunchConfiguration("image_topic")),
                ("camera_info", LaunchConfiguration("camera_info_topic")),
            ],
            output="screen",
            emulate_tty=True,
        ),
    ])
