"""`make demo` end to end on the first frames of the shipped clip; no untrained model ever."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import cv2

from node_harness import model_params

REPO = Path(__file__).resolve().parents[1]


def test_demo_records_overlay_and_peaks(tmp_path, ros_env):
    """Node, player and recorder in separate processes: every frame answered and recorded."""
    model_params()  # fails clearly when the trained default model is missing
    out = tmp_path / "demo_out"
    run = subprocess.run([sys.executable, "-m", "skd_saliency_ros.demo", "--frames", "20",
                          "--out", str(out)], cwd=REPO, env=ros_env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = run.stdout.strip().splitlines()[-1]
    match = re.match(r"demo: (\d+) frames in, (\d+) saliency maps out \((\d+) overlays", summary)
    assert match, summary
    assert match.groups() == ("20", "20", "20"), summary
    assert "mean latency" in summary

    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 20
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 360)
    cap.release()
    with open(out / "peaks.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and {int(r["frame"]) for r in rows} <= set(range(20))
    for r in rows:
        assert -0.5 <= float(r["x_px"]) <= 639.5 and -0.5 <= float(r["y_px"]) <= 359.5
        assert 0.0 < float(r["score"]) <= 1.0


def test_demo_refuses_without_trained_model(tmp_path, monkeypatch, capsys):
    """No default checkpoint: exit code 2 and a message, nothing started."""
    from skd_saliency_ros.demo import demo

    monkeypatch.setattr(demo, "DEFAULT_MODEL", tmp_path / "skd_default_r64.pt")
    assert demo.run(demo.DEFAULT_VIDEO, tmp_path / "out") == 2
    assert "trained default model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
