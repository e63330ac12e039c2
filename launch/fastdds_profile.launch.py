"""Point Fast DDS at the package's shared-memory profile, for every process started after it.

Large camera images sent best effort between processes are lost on Fast DDS's default
transports (config/fastdds_shm.xml says why); the profile is what the writer uses, so it must
reach the camera driver as well as the saliency node.  Include this file FIRST in a launch
file that starts both (bringup.launch.py does): a process started before it runs without the
profile.  A process outside the launch needs the variables in its own environment (README,
"Bringup").

Fast DDS 3 (Kilted) reads FASTDDS_DEFAULT_PROFILES_FILE, Fast DDS 2 (Humble, Jazzy)
FASTRTPS_DEFAULT_PROFILES_FILE; both are set, to the profile the environment already names
in either of them, else to the installed config/fastdds_shm.xml.  Including the file a second
time changes nothing.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable

PACKAGE = "skd_saliency_ros"
#: the variable of Fast DDS 3, then the one of Fast DDS 2
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def generate_launch_description():
    """Set both profile variables: the user's profile if either names one, else ours."""
    shipped = os.path.join(get_package_share_directory(PACKAGE), "config", "fastdds_shm.xml")
    fastdds, fastrtps = PROFILE_VARIABLES
    return LaunchDescription([
        SetEnvironmentVariable(fastdds, EnvironmentVariable(
            fastdds, default_value=EnvironmentVariable(fastrtps, default_value=shipped))),
        # FASTDDS_... is set now: FASTRTPS_... keeps its own value, else takes the same file
        SetEnvironmentVariable(fastrtps, EnvironmentVariable(
            fastrtps, default_value=EnvironmentVariable(fastdds))),
    ])
