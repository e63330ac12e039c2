"""rosbag2 tools on top of the ROS layer: bag I/O (rosbags library) and saliency_replay.

Replay runs offline into a new bag, or live into a running node.
"""
