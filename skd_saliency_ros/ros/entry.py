"""How both nodes' executables start, spin and stop: one rule for exit codes and shutdown.

A user error at start-up (any ``SkdError``: a bad parameter, a missing model) is one FATAL
line and exit code 1, never a traceback.  Ctrl-C and an external shutdown end the process
with 0.  Clean-up is bounded: a node that hangs on Ctrl-C makes launch escalate to
SIGTERM/SIGKILL, so if DDS or a thread blocks it, a watchdog exits anyway, loudly.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from skd_saliency_ros.core.errors import SkdError

SHUTDOWN_TIMEOUT_S = 10.0  # clean-up budget after Ctrl-C before a forced exit


def run_node(name: str, build: Callable[[], Node], args=None) -> int:
    """Init rclpy, build the node, spin it until Ctrl-C; return the process exit code.

    ``build`` creates (and, for a node that starts itself, starts) the node; a node with a
    ``close()`` method gets it called before it is destroyed (to stop its threads).
    """
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = build()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except SkdError as exc:
        rclpy.logging.get_logger(name).fatal(str(exc))
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        watchdog = threading.Timer(SHUTDOWN_TIMEOUT_S, _force_exit, args=(name, code))
        watchdog.daemon = True
        watchdog.start()
        if node is not None:
            if hasattr(node, "close"):
                node.close()
            node.destroy_node()
        rclpy.try_shutdown()
        watchdog.cancel()
    return code


def _force_exit(name: str, code: int) -> None:
    sys.stderr.write(f"[{name}] shutdown took longer than {SHUTDOWN_TIMEOUT_S:.0f} s; "
                     "forcing exit\n")
    sys.stderr.flush()
    os._exit(code)
