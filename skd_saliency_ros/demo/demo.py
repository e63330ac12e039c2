"""`make demo`: the real node on a real aerial clip, end to end, in three processes.

1. the saliency node (``python -m skd_saliency_ros.ros.node`` with config/saliency.yaml and the
   trained default model) in its own process;
2. a player process publishing the frames of media/person11_uav123.mp4 (UAV123, see
   media/ATTRIBUTION.md) as sensor_msgs/Image at 10 Hz, like a camera driver;
3. this process records the node's outputs: demo_out/overlay.mp4 and demo_out/peaks.csv,
   then prints one summary line (frames in/out, mean latency).

It sets up its own ROS environment (random ROS_DOMAIN_ID, localhost discovery, the venv as
ament prefix, the shared-memory Fast DDS profile), so it runs from a plain shell.  It never
runs an untrained model: without the trained default checkpoint it stops with a message.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional, Tuple

from skd_saliency_ros.core.checkpoint import DEFAULT_MODEL
from skd_saliency_ros.core.output_paths import Output, OutputPathError, check_outputs
from skd_saliency_ros.demo.recorder import output_files
from skd_saliency_ros.core.processes import ros_child_env, stop_process

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_DIR.parent
DEFAULT_VIDEO = REPO_ROOT / "media" / "person11_uav123.mp4"


def config_file(name: str) -> Path:
    """Find a file of config/: in the source checkout, else in the installed share folder."""
    local = REPO_ROOT / "config" / name
    if local.is_file():
        return local
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("skd_saliency_ros")) / "config" / name


def demo_environment() -> dict:
    """Environment for all three processes: isolated domain, localhost, shared memory."""
    return ros_child_env(REPO_ROOT, shm_profile=config_file("fastdds_shm.xml"))


def _echo(proc: subprocess.Popen, prefix: str, lines: list) -> None:
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        print(f"{prefix}{line}", end="", flush=True)


def _start(cmd, env, prefix):
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=REPO_ROOT)
    lines: list = []
    thread = threading.Thread(target=_echo, args=(proc, prefix, lines), daemon=True)
    thread.start()
    return proc, lines, thread


def _refusal(video: Path, out_dir: Path) -> Optional[str]:
    """Why the demo cannot start (no trained model, no video, outputs onto inputs), or None."""
    if not DEFAULT_MODEL.is_file():
        return (f"the trained default model {DEFAULT_MODEL} is missing. The demo only runs a "
                "trained model; train it first (docs/TRAINING.md).")
    if not video.is_file():
        return f"{video}: no such video file"
    try:  # the recordings are the demo's own, replaced on every run; never onto an input
        check_outputs([Output("--out", path, regenerated=True) for path in output_files(out_dir)],
                      inputs=[("--video", video), ("model", DEFAULT_MODEL)])
    except OutputPathError as exc:
        return str(exc)
    return None


def _start_recording(env: dict, out_dir: Path):
    """Spin the recorder node in this process; return (context, recorder, executor, thread)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from skd_saliency_ros.demo.recorder import Recorder

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    recorder = Recorder(context, out_dir)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(recorder.node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    return context, recorder, executor, spin


def _stop_recording(context, recorder, executor, spin: threading.Thread) -> None:
    """Stop spinning, then close the recordings and the context, in that order."""
    executor.shutdown(timeout_sec=2.0)
    # The spin thread must have left rclpy before the node and context go away:
    # a thread still inside the wait set at interpreter exit aborts the process
    # ("terminate called without an active exception").
    spin.join(timeout=5.0)
    recorder.close()
    context.try_shutdown()


def _wait_for_node(node: subprocess.Popen, recorder, end: float) -> bool:
    """Wait until the node's outputs reach the recorder; False if it died or time ran out."""
    while not recorder.connected():
        if node.poll() is not None or time.monotonic() > end:
            print("demo: the saliency node did not come up", file=sys.stderr)
            return False
        time.sleep(0.1)
    return True


def _play(video: Path, frames, env: dict, node: subprocess.Popen, end: float,
          started: list) -> Tuple[int, int]:
    """Run the player to its end (appended to ``started``); return (exit code, frames sent)."""
    player_cmd = [sys.executable, "-m", "skd_saliency_ros.demo.video_player", str(video),
                  "--topic", "/image", "--frame-id", "uav_camera_optical"]
    if frames:
        player_cmd += ["--frames", str(frames)]
    player, player_lines, player_thread = _start(player_cmd, env, "[player] ")
    started.append(player)
    code = 0
    while player.poll() is None:
        if node.poll() is not None or time.monotonic() > end:
            print("demo: the saliency node stopped or the demo timed out", file=sys.stderr)
            code = 1
            break
        time.sleep(0.2)
    player_thread.join(timeout=5)
    if player.returncode not in (0, None):
        code = 1
    sent = 0
    for line in player_lines:
        match = re.search(r"published (\d+) frames", line)
        if match:
            sent = int(match.group(1))
    return code, sent


def _await_answers(recorder, sent: int) -> None:
    """Give the node up to 5 s for the answers to the last frames sent."""
    settle = time.monotonic() + 5.0
    while len(recorder.latencies_s) < sent and time.monotonic() < settle:
        time.sleep(0.1)
    time.sleep(0.3)


def run(video: Path, out_dir: Path, frames=None, timeout_s: float = 180.0) -> int:
    """Run node, player and recorder; print the summary; return an exit code."""
    problem = _refusal(video, out_dir)
    if problem is not None:
        print(f"demo: {problem}", file=sys.stderr)
        return 2
    env = demo_environment()
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                           "AMENT_PREFIX_PATH", "RMW_IMPLEMENTATION",
                                           "FASTDDS_DEFAULT_PROFILES_FILE")})
    context, recorder, executor, spin = _start_recording(env, out_dir)
    node_cmd = [sys.executable, "-m", "skd_saliency_ros.ros.node", "--ros-args",
                "--params-file", str(config_file("saliency.yaml"))]
    node, _node_lines, _ = _start(node_cmd, env, "[node] ")
    players: list = []
    try:
        end = time.monotonic() + timeout_s
        if not _wait_for_node(node, recorder, end):
            return 1
        code, sent = _play(video, frames, env, node, end, players)
        _await_answers(recorder, sent)
    finally:
        for player in players:
            stop_process(player)
        node_code = stop_process(node)
        _stop_recording(context, recorder, executor, spin)
    out = len(recorder.latencies_s)
    if node_code != 0 or out == 0:
        code = 1
    print(f"demo: {sent} frames in, {out} saliency maps out ({recorder.overlays} overlays, "
          f"{recorder.peak_msgs} peak sets), mean latency {recorder.mean_latency_ms():.1f} ms "
          f"(camera stamp -> map received), model {DEFAULT_MODEL.name} -> "
          f"{recorder.video_path}, {recorder.csv_path}", flush=True)
    return code


def main(argv=None) -> int:
    """Command line of the demo (defaults: the shipped clip, demo_out/)."""
    parser = argparse.ArgumentParser(description="Run the saliency node on a real aerial clip "
                                                 "and record its outputs.")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO,
                        help=f"video to play (default: {DEFAULT_VIDEO.relative_to(REPO_ROOT)})")
    parser.add_argument("--out", type=Path, default=Path("demo_out"),
                        help="output folder (default: demo_out)")
    parser.add_argument("--frames", type=int, default=None,
                        help="play only the first N frames")
    args = parser.parse_args(argv)
    return run(args.video, args.out, args.frames)


if __name__ == "__main__":
    sys.exit(main())
