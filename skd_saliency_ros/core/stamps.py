"""Message stamps (builtin_interfaces/Time, or anything with ``sec`` and ``nanosec``) as numbers.

One conversion for the node, the PX4 adapter, the bag tools and the benchmarks; duck-typed, so
it also reads the stamps of rosbags' deserialised messages and needs no ROS import.
"""


def stamp_ns(stamp) -> int:
    """Return a stamp as integer nanoseconds (exact: the bags' and PX4 adapter's time axis)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def stamp_seconds(header) -> float:
    """Return a header's stamp as float seconds (the engine's time axis)."""
    return float(header.stamp.sec) + 1e-9 * float(header.stamp.nanosec)
