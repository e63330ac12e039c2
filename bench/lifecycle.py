"""Lifecycle cycles of the saliency node: pausing stops output, resumes cleanly, leaks nothing.

``python -m bench.lifecycle --cycles 20 --doc docs/RELIABILITY.md``

The node runs as its own process with the shipped config/saliency.yaml.  This process is a
camera (real 640x360 UAV123 frames at ``--rate`` Hz, stamps from the wall clock), a probe on
``~/saliency`` and ``/diagnostics``, and a lifecycle client: every cycle it lets the node
answer for ``--active-s`` seconds, calls ``change_state`` DEACTIVATE through the node's real
lifecycle service (or ``~/enable`` false on odd cycles with ``--mix-enable``), watches for
``--quiet-s`` seconds that no map arrives, then ACTIVATE (or ``~/enable`` true) and waits for
the first map.  Measured per cycle: the last map's arrival after the deactivate request
(stop delay), maps arriving later than 0.5 s after the request (must be none), the time from
the activate request to the first map, and the reset the node reports for it in diagnostics.
The node's resident memory (VmRSS) is read after the first cycle and after the last one:
the growth between them is what 20 cycles leak.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from skd_saliency_ros.core.stamps import stamp_ns
from bench.node_bench import PARAMS_FILE, SHM_PROFILE, BenchError, Proc, ros_env
from bench.soak import rss_mb

SECTION = "bench:lifecycle"
NODE = "/saliency_node"
STOP_BOUND_S = 0.5


class LifecycleClient:
    """Camera, probe and lifecycle service client in one rclpy context (this process)."""

    def __init__(self, domain_id: int, frames: List, rate_hz: float, encoding: str = "bgr8"):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from lifecycle_msgs.srv import ChangeState, GetState
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_srvs.srv import SetBool

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("lifecycle_bench_client", context=self.context)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Image, "/image", reliable)
        self.lock = threading.Lock()
        self.arrivals: List[tuple] = []     # (monotonic arrival, stamp ns)
        self.diagnostics: List[dict] = []
        self.node.create_subscription(Image, f"{NODE}/saliency", self._on_map, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.change = self.node.create_client(ChangeState, f"{NODE}/change_state")
        self.get = self.node.create_client(GetState, f"{NODE}/get_state")
        self.enable = self.node.create_client(SetBool, f"{NODE}/enable")
        self.frames, self.period, self.encoding = frames, 1.0 / rate_hz, encoding
        self.sent = 0
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self.executor.spin, daemon=True),
                         threading.Thread(target=self._camera, daemon=True)]
        for t in self._threads:
            t.start()

    def _on_map(self, msg) -> None:
        with self.lock:
            self.arrivals.append((time.monotonic(), stamp_ns(msg.header.stamp)))

    def _on_diag(self, msg) -> None:
        with self.lock:
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                values.update(_level=int.from_bytes(status.level, "little")
                              if isinstance(status.level, bytes) else int(status.level),
                              _message=status.message, _t=time.monotonic())
                self.diagnostics.append(values)

    def _camera(self) -> None:
        from sensor_msgs.msg import Image

        while not self._stop.is_set():
            frame = self.frames[self.sent % len(self.frames)]
            msg = Image(encoding=self.encoding, height=frame.shape[0], width=frame.shape[1],
                        step=frame.shape[1] * 3)
            now = self.node.get_clock().now().to_msg()
            msg.header.stamp, msg.header.frame_id = now, "uav_camera_optical"
            msg.data = frame.tobytes()
            self.pub.publish(msg)
            self.sent += 1
            self._stop.wait(self.period)

    def call(self, client, request, timeout: float = 10.0):
        """Call a service and wait for its response; raise BenchError on a timeout."""
        if not client.wait_for_service(timeout_sec=timeout):
            raise BenchError(f"service {client.srv_name} is not available")
        future = client.call_async(request)
        end = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > end:
                raise BenchError(f"no response from {client.srv_name} within {timeout} s")
            time.sleep(0.005)
        return future.result()

    def transition(self, transition_id: int) -> bool:
        """Request one lifecycle transition; return whether the node accepted it."""
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request()
        request.transition.id = transition_id
        return bool(self.call(self.change, request).success)

    def state(self) -> str:
        """Return the label of the node's lifecycle state, from its get_state service."""
        from lifecycle_msgs.srv import GetState

        return self.call(self.get, GetState.Request()).current_state.label

    def set_enabled(self, value: bool):
        """Call ~/enable; return (success, message)."""
        from std_srvs.srv import SetBool

        response = self.call(self.enable, SetBool.Request(data=value))
        return bool(response.success), response.message

    def maps_since(self, t0: float) -> List[tuple]:
        """(arrival, stamp) of every map that arrived after monotonic time ``t0``."""
        with self.lock:
            return [a for a in self.arrivals if a[0] > t0]

    def wait_map(self, t0: float, timeout: float) -> Optional[float]:
        """Arrival time of the first map after ``t0``, or None after ``timeout``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.maps_since(t0)
            if got:
                return got[0][0]
            time.sleep(0.005)
        return None

    def wait_diag(self, predicate, t0: float, timeout: float) -> Optional[dict]:
        """First diagnostics status after ``t0`` that satisfies ``predicate``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                hits = [d for d in self.diagnostics if d["_t"] > t0 and predicate(d)]
            if hits:
                return hits[0]
            time.sleep(0.05)
        return None

    def close(self) -> None:
        """Stop the camera and the executor, shut the context down."""
        self._stop.set()
        self.executor.shutdown(timeout_sec=2.0)
        for t in self._threads:
            t.join(timeout=5.0)
        self.node.destroy_node()
        self.context.try_shutdown()


def run_cycles(cycles: int, frames: List, rate_hz: float = 10.0, active_s: float = 1.0,
               quiet_s: float = 1.0, mix_enable: bool = True, encoding: str = "bgr8",
               start_timeout: float = 120.0, log_dir: Optional[Path] = None) -> Dict[str, Any]:
    """Start the node, run ``cycles`` deactivate/activate cycles, return the measurements.

    ``frames``: 8-bit 3-channel images in ``encoding`` (bgr8 or rgb8).
    """
    from lifecycle_msgs.msg import Transition

    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(SHM_PROFILE))
    with tempfile.TemporaryDirectory(prefix="skd_lifecycle_") as tmp:
        env = ros_env(Path(log_dir or tmp))
        cmd = [sys.executable, "-m", "skd_saliency_ros.ros.node", "--ros-args",
               "--params-file", str(PARAMS_FILE)]
        node = Proc("saliency node", cmd, env)
        client = None
        try:
            node.wait_for("serving", start_timeout)
            client = LifecycleClient(int(env["ROS_DOMAIN_ID"]), frames, rate_hz, encoding)
            if client.wait_map(0.0, 30.0) is None:
                raise BenchError(f"the node answered no frame: {node.tail()}")
            rows, rss = [], []
            for k in range(cycles):
                time.sleep(active_s)
                by_enable = mix_enable and k % 2 == 1
                t_off = time.monotonic()
                ok = client.set_enabled(False)[0] if by_enable else client.transition(
                    Transition.TRANSITION_DEACTIVATE)
                t_off_done = time.monotonic()
                state_off = client.state()
                time.sleep(quiet_s)
                after = client.maps_since(t_off)
                last = max((a for a, _ in after), default=t_off)
                late = [a for a, _ in after if a > t_off + STOP_BOUND_S]
                t_on = time.monotonic()
                ok_on = client.set_enabled(True)[0] if by_enable else client.transition(
                    Transition.TRANSITION_ACTIVATE)
                first = client.wait_map(t_on, 30.0)
                diag = client.wait_diag(
                    lambda d: d.get("last_reset_reason") == "first frame after re-activation"
                    and int(d.get("resets", 0)) >= k + 2, t_on, 10.0)
                rows.append({"cycle": k + 1, "via": "enable" if by_enable else "change_state",
                             "deactivate_ok": ok and state_off == "inactive",
                             "deactivate_call_ms": 1000.0 * (t_off_done - t_off),
                             "maps_after_request": len(after),
                             "stop_delay_ms": 1000.0 * (last - t_off),
                             "late_maps": len(late), "activate_ok": ok_on,
                             "first_map_ms": None if first is None else 1000.0 * (first - t_on),
                             "reset_reported": diag is not None})
                rss.append(rss_mb(node.pid))
            return {"cycles": cycles, "rate_hz": rate_hz, "rows": rows, "rss_mb": rss,
                    "rss_growth_mb": rss[-1] - rss[0], "node_alive": node.alive(),
                    "frames_sent": client.sent}
        finally:
            if client is not None:
                client.close()
            code = node.stop()
            if code not in (0, None):
                print(f"node exited with {code}: {node.tail()}", file=sys.stderr)


def summary(result: Dict[str, Any]) -> Dict[str, Any]:
    """Worst cases over the cycles (what the doc table shows)."""
    rows = result["rows"]
    firsts = [r["first_map_ms"] for r in rows if r["first_map_ms"] is not None]
    return {"cycles": result["cycles"],
            "all_transitions_ok": all(r["deactivate_ok"] and r["activate_ok"] for r in rows),
            "max_stop_delay_ms": max(r["stop_delay_ms"] for r in rows),
            "late_maps": sum(r["late_maps"] for r in rows),
            "max_first_map_ms": max(firsts) if firsts else None,
            "resumed": len(firsts),
            "resets_reported": sum(r["reset_reported"] for r in rows),
            "rss_first_mb": result["rss_mb"][0], "rss_last_mb": result["rss_mb"][-1],
            "rss_growth_mb": result["rss_growth_mb"]}


def doc_section(result: Dict[str, Any]) -> str:
    """Markdown of one run: command, worst cases, per-cycle RSS."""
    s = summary(result)
    rss = ", ".join(f"{v:.1f}" for v in result["rss_mb"])
    return "\n".join([
        f"Command: `{result['command']}` ({result['date']}, load before: "
        f"{result['loadavg']}). Camera: real 640x360 frames at {result['rate_hz']:g} Hz; "
        "odd cycles pause through `~/enable`, even ones through `change_state`.", "",
        "| cycles | transitions ok | max stop delay (ms) | maps > 0.5 s after deactivate | "
        "resumed | max first map after activate (ms) | reset reported | RSS after cycle 1 "
        "(MB) | RSS after last (MB) | growth (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {s['cycles']} | {s['all_transitions_ok']} | {s['max_stop_delay_ms']:.0f} | "
        f"{s['late_maps']} | {s['resumed']}/{s['cycles']} | {s['max_first_map_ms']:.0f} | "
        f"{s['resets_reported']}/{s['cycles']} | {s['rss_first_mb']:.1f} | "
        f"{s['rss_last_mb']:.1f} | {s['rss_growth_mb']:+.2f} |", "",
        f"RSS after each cycle (MB): {rss}.", ""])


def main(argv=None) -> int:
    """Run the cycles; print the summary, write JSON and the doc section."""
    from skd_saliency_ros.core.errors import run_reporting_user_errors
    from skd_saliency_ros.core.output_paths import Output, check_outputs
    from bench.report import command_line, write_json_and_doc

    parser = argparse.ArgumentParser(prog="python -m bench.lifecycle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10.0, help="camera rate (Hz)")
    parser.add_argument("--active-s", type=float, default=1.0)
    parser.add_argument("--quiet-s", type=float, default=1.0)
    parser.add_argument("--video", type=Path, default=None,
                        help="clip to publish (default: the bundle's person11.mp4)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--doc", type=Path, default=None,
                        help="Markdown file whose bench:lifecycle section is replaced")
    args = parser.parse_args(argv)

    def body() -> int:
        if args.cycles < 1 or args.rate <= 0:
            raise BenchError("--cycles must be >= 1 and --rate > 0")
        from training.datasets import VideoSource
        from training.paths import default_data_dir
        video = args.video or default_data_dir() / "uav_unlabeled" / "person11.mp4"
        check_outputs([Output("--json", args.json, regenerated=True),
                       Output("--doc", args.doc, regenerated=True)], inputs=[("--video", video)])
        frames = list(VideoSource(video).frames(0, 30))  # RGB
        result = run_cycles(args.cycles, frames, args.rate, args.active_s, args.quiet_s,
                            encoding="rgb8")
        result.update(command=command_line(), date=datetime.date.today().isoformat(),
                      loadavg=" ".join(f"{v:.2f}" for v in os.getloadavg()))
        print(json.dumps(summary(result)), flush=True)
        write_json_and_doc(result, args.json, args.doc, SECTION,
                           doc_section(result) if args.doc else "")
        return 0

    return run_reporting_user_errors("python -m bench.lifecycle", body)


if __name__ == "__main__":
    sys.exit(main())
