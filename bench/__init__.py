"""Benchmarks that need more than one process (the ROS node overhead benchmark)."""
