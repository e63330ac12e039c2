"""The thin ROS layer: sensor_msgs <-> numpy, the parameter table, output messages, the nodes.

saliency_node and attention_to_setpoint live here.  Imports the core, never the bag tools.
"""
