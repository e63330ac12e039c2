"""Stop child processes the way a user would: Ctrl-C first, kill only if it hangs.

The demo, the node benchmark and the tests all start ROS processes; ending them with SIGINT
lets rclpy shut down cleanly (and flush what they record) before a hard kill is needed.
"""

import signal
import subprocess


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    """Send SIGINT, wait up to ``timeout`` s, then SIGKILL; return the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return proc.returncode
