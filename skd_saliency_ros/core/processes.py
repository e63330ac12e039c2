"""Child ROS processes: the environment they start in, and stopping them the way a user would.

The demo, the node benchmark and the tests all start ROS processes.  They start in one
environment (``ros_child_env``: a private domain, localhost discovery, this Python's prefix as
the ament prefix) and end with SIGINT first, which lets rclpy shut down cleanly (and flush
what they record) before a hard kill is needed.
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

PathLike = Union[str, Path]


def ros_child_env(repo_root: PathLike, log_dir: Optional[PathLike] = None,
                  shm_profile: Optional[PathLike] = None) -> Dict[str, str]:
    """Environment for a ROS 2 child process of the demo, the benchmarks or the tests.

    A random ROS_DOMAIN_ID in 1..101 (the range the ROS docs call safe), discovery on this
    host only, this interpreter's prefix (the venv holding the ROS wheels) as the ament
    prefix unless one is set, Fast DDS, the repository on PYTHONPATH, unbuffered output;
    optionally the ROS log folder and the shared-memory Fast DDS profile (large images).
    """
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(random.randint(1, 101))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root), env.get("PYTHONPATH"))
                                        if p)
    env["PYTHONUNBUFFERED"] = "1"
    if log_dir is not None:
        env["ROS_LOG_DIR"] = str(log_dir)
    if shm_profile is not None:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(shm_profile)
    return env


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


class LoggedProcess:
    """A child process whose merged stdout/stderr is collected line by line.

    The node benchmark and the node tests both start ROS processes, wait for a line that
    says they are ready, read their output afterwards and stop them with Ctrl-C.
    """

    def __init__(self, cmd: Sequence[str], env: Dict[str, str], cwd=None):
        self.cmd = list(cmd)
        self.lines: List[str] = []
        self.proc = subprocess.Popen(self.cmd, env=env, cwd=cwd, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        """Return everything the process printed so far."""
        return "\n".join(self.lines)

    def tail(self, count: int = 6) -> str:
        """Last lines of output, one string."""
        return " | ".join(self.lines[-count:]) or "(no output)"

    def alive(self) -> bool:
        """Return True while the process runs."""
        return self.proc.poll() is None

    def wait_for_line(self, text: str, timeout: float = 90.0) -> bool:
        """Wait until a printed line contains ``text``; False on timeout or exit without it."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(text in line for line in self.lines):
                return True
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader drain
                return any(text in line for line in self.lines)
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT (like Ctrl-C), then kill after ``timeout``; return the exit code."""
        stop_process(self.proc, timeout)
        self._reader.join(timeout=5)
        return self.proc.returncode


_stop_requested = threading.Event()


def request_stop(signum=None, frame=None) -> None:
    """Signal handler (SIGTERM): ask the running loops to stop at their next safe point.

    Raising from the handler itself would land the exception at an arbitrary bytecode,
    possibly inside a C callback or a finaliser, where it can escape the clean-up.
    """
    _stop_requested.set()


def raise_if_stop_requested() -> None:
    """Raise KeyboardInterrupt once a stop was requested (call between units of work)."""
    if _stop_requested.is_set():
        raise KeyboardInterrupt("stop requested (SIGTERM)")
