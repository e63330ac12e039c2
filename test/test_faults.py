"""Fault cases: hostile model files everywhere one is accepted, gaze with nothing usable.

A hostile checkpoint is a real ``torch.save`` file whose pickle would run a command when
loaded without ``weights_only`` (here: create a marker file).  Every entry point that takes
a model file must refuse it with one line naming the file, exit 2 (1 for the node, which
stops with a FATAL line), never run it, and never advise ``weights_only=False``.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from node_harness import run_node_to_exit
from skd_saliency_ros.bags.replay import main as replay_main
from training.__main__ import main as training_main

REPO = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this calls os.system: what a hostile model file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture()
def hostile(tmp_path):
    """Return (hostile .pt path, marker path that must never appear)."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "hostile.pt"
    torch.save({"kind": "fused", "state_dict": {}, "x": _Payload(marker)}, path)
    return path, marker


def _check(err: str, path: Path, marker: Path):
    assert str(path) in err and "weights_only=False" not in err and "Traceback" not in err, err
    assert not marker.exists(), "the hostile pickle ran"


def test_hostile_checkpoint_refused_by_training_steps(hostile, shared_data, tmp_path, capsys):
    """evaluate, export and transfer refuse it without running it."""
    path, marker = hostile
    calls = [
        ["evaluate", "--video", str(shared_data / "uav_gaze" / "group2.mp4"), "--gaze",
         str(shared_data / "uav_gaze" / "group2_gaze.npz"), "--models", str(path),
         "--max-frames", "2", "--no-progress"],
        ["export", "--model", str(path), "--out", str(tmp_path / "x.onnx")],
        ["transfer", "--spatial", str(path), "--temporal", str(path), "--steps", "1",
         "-o", str(tmp_path / "t.pt"), "--no-progress"],
    ]
    for argv in calls:
        assert training_main(argv) == 2, argv[0]
        err = capsys.readouterr().err
        _check(err, path, marker)
        assert len(err.strip().splitlines()) == 1, err


def test_hostile_checkpoint_refused_by_replay(hostile, shared_data, tmp_path, capsys):
    """saliency_replay --model refuses it before reading the bag."""
    path, marker = hostile
    bag = tmp_path / "bag"
    assert replay_main(["make-bag", "--video", str(shared_data / "uav_gaze" / "car10.mp4"),
                        "--out", str(bag), "--max-frames", "3", "--no-progress"]) == 0
    capsys.readouterr()
    assert replay_main([str(bag), "--model", str(path), "--no-output"]) == 2
    _check(capsys.readouterr().err, path, marker)


def test_hostile_checkpoint_stops_the_node(hostile, ros_env):
    """The node stops at start-up with one FATAL line naming the file; the pickle never runs."""
    path, marker = hostile
    returncode, out = run_node_to_exit(ros_env, path)
    assert returncode == 1, out
    fatal = [line for line in out.splitlines() if "FATAL" in line or "ERROR" in line]
    assert len(fatal) == 1 and str(path) in fatal[0], out
    _check(out, path, marker)


def test_replay_with_unusable_gaze_exits_2(shared_data, tmp_path, capsys):
    """A gaze file whose fixations are all NaN: one line naming it, exit 2, no output bag."""
    bag = tmp_path / "bag"
    assert replay_main(["make-bag", "--video", str(shared_data / "uav_gaze" / "car10.mp4"),
                        "--out", str(bag), "--max-frames", "3", "--no-progress"]) == 0
    with np.load(shared_data / "uav_gaze" / "car10_gaze.npz") as g:
        arrays = {k: g[k] for k in g.files}
    arrays["fix_xy"] = np.full_like(arrays["fix_xy"], np.nan)
    gaze = tmp_path / "nan_gaze.npz"
    np.savez(gaze, **arrays)
    capsys.readouterr()
    out = tmp_path / "out"
    assert replay_main([str(bag), "--gaze", str(gaze), "--out", str(out),
                        "--match", "stamp"]) == 2
    err = capsys.readouterr().err
    assert "nan_gaze.npz: no usable fixation" in err and "Traceback" not in err, err
    assert not out.exists()


def test_camera_killed_and_restarted_then_ctrl_c_under_load(ros_env):
    """Serve again after the camera dies and comes back; Ctrl-C under load ends it in 2 s.

    Load: 30 Hz of 1280x720 frames; the node must exit with code 0.
    """
    import time

    from skd_saliency_ros.core.processes import LoggedProcess

    env = dict(ros_env, FASTDDS_DEFAULT_PROFILES_FILE=str(REPO / "config" / "fastdds_shm.xml"))

    def role(*args):
        return LoggedProcess([sys.executable, "-m", "bench.node_bench_roles", *args], env,
                             cwd=REPO)

    def camera(seconds):
        return role("camera", "--topic", "/cam/image", "--width", "1280", "--height", "720",
                    "--rate", "30", "--duration", str(seconds), "--frames", "10")

    probe = role("probe", "--topic", "/saliency_node/saliency")
    node = LoggedProcess([sys.executable, "-m", "skd_saliency_ros.ros.node", "--ros-args",
                          "--params-file", str(REPO / "config" / "saliency.yaml"),
                          "-r", "image:=/cam/image"], env, cwd=REPO)
    procs = [probe, node]
    try:
        assert probe.wait_for_line("ready", 60) and node.wait_for_line("serving", 120), \
            node.output[-2000:]
        first = camera(30)
        procs.append(first)
        assert first.wait_for_line("publishing", 60)
        time.sleep(3)
        first.proc.kill()  # the camera driver crashes: no goodbye
        first.proc.wait(timeout=10)
        time.sleep(2)
        second = camera(4)
        procs.append(second)
        assert second.wait_for_line("publishing", 60)
        second.proc.wait(timeout=30)
        time.sleep(1)
        sent_again = set(json.loads(second.lines[-1])["sent_ns"])
        start = time.monotonic()
        code = node.stop(timeout=10)
        took = time.monotonic() - start
        assert code == 0 and took <= 2.0, (code, took, node.output[-2000:])
        probe.stop()
        answered = {stamp for stamp, _ in json.loads(probe.lines[-1])["pairs_ns"]}
        # after the restart the node answers the new camera's frames (not all: its queue
        # holds only the newest frame while inference runs)
        assert len(answered & sent_again) >= 0.5 * len(sent_again), node.output[-2000:]
    finally:
        for proc in reversed(procs):
            proc.stop()
