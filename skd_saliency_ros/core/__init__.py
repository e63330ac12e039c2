"""The ROS-free core: models, checkpoints, the inference engine, peaks, metrics, gaze files.

Also ONNX export, attention geometry and process helpers.  Nothing here imports rclpy or ROS
messages, so the node, the bag tools, training and the benchmarks share it.
"""
