"""skd_saliency_ros: aerial-video saliency for ROS 2 by spatiotemporal knowledge distillation."""

__version__ = "0.1.0"
