"""Every command line keeps its outputs off its inputs and off each other (core/output_paths).

Each case is the real CLI in a subprocess, pointed at a path where the write would destroy an
input or another output.  Before the one output rule each of these either replaced the input
(exit 0) or ended in a traceback after all the work; now each is one line, exit 2, before
any work, and the input is byte for byte what it was.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from skd_saliency_ros.core.checkpoint import save_checkpoint
from skd_saliency_ros.core.models import build_model

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 600


def run(*args, env=None):
    """Run ``python -m <args>`` from the repository root (what users run)."""
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)


def digest(path: Path) -> str:
    """SHA-256 of a file's bytes: proves an input was not touched."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def refused(proc, *needles):
    """Assert one error line, exit 2, no traceback, every needle named."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Save a real skd-fast and a real skd-paper-prior checkpoint (seeded random weights)."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    fast = save_checkpoint(root / "fast_r64.pt", build_model("fused", "skd-fast"), 64)
    prior = save_checkpoint(root / "prior_r64.pt", build_model("fused", "skd-paper-prior"), 64)
    return Path(fast), Path(prior)


def test_gaze_import_out_onto_its_csv(shared_data, tmp_path):
    """gaze-import --out <the CSV> --overwrite: refused, the CSV stays."""
    csv = tmp_path / "gaze.csv"
    csv.write_text("frame,x,y,observer\n0,100,100,1\n1,110,105,1\n")
    before = digest(csv)
    refused(run("training", "gaze-import", "--csv", csv, "--video",
                shared_data / "uav_gaze" / "car10.mp4", "--out", csv, "--overwrite"),
            "--out", "--csv")
    assert digest(csv) == before


def test_export_out_that_is_a_folder(checkpoints, tmp_path):
    """Export --out <existing folder>.onnx --overwrite: refused up front, not a traceback."""
    out = tmp_path / "model.onnx"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refused(run("training", "export", "--model", checkpoints[0], "--out", out, "--overwrite"),
            "--out", "is a folder")
    assert (out / "keep.txt").read_text() == "mine"


def test_contact_sheet_out_inside_the_data_dir(shared_data, tmp_path):
    """contact-sheet --out inside --data-dir (the clips it reads): refused, nothing written."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(shared_data / "uav_gaze" / "car10.mp4", data / "car10.mp4")
    refused(run("training", "contact-sheet", "--data-dir", data, "--frames", "car10.mp4:0",
                "--models", "default", "--out", data / "sheet.png"), "--out", "--data-dir")
    assert sorted(p.name for p in data.iterdir()) == ["car10.mp4"]


def test_bench_json_and_doc_at_one_place(checkpoints, tmp_path):
    """Bench --json X --doc X: refused before timing (was: the doc section replaced the JSON)."""
    out = tmp_path / "bench.md"
    refused(run("bench.models", "--models", "skd-fast", "--backends", "torch",
                "--resolutions", "64", "--batch", "2", "--repeats", "1", "--min-time", "0",
                "--warmup", "1", "--threads", "1", "--no-progress", "--json", out, "--doc",
                out), "--json", "--doc", "same place")
    assert not out.exists()


def test_bench_teacher_json_onto_a_model(checkpoints, tmp_path):
    """bench.teacher --json <a checkpoint it times>: refused, the checkpoint stays."""
    model = tmp_path / "student.pt"
    shutil.copy(checkpoints[0], model)
    before = digest(model)
    refused(run("bench.teacher", "--teachers", "", "--models", model, "--repeats",
                "1", "--min-time", "0.01", "--json", model), "--json", "--models")
    assert digest(model) == before


def test_card_onto_its_evaluation_json(checkpoints, tmp_path):
    """training.card CKPT CKPT.json --overwrite: the card would replace the evaluation it reads."""
    ckpt = tmp_path / "model.pt"
    shutil.copy(checkpoints[0], ckpt)
    shipped = json.loads((REPO / "skd_saliency_ros" / "weights" / "skd_default_r64.json")
                         .read_text())
    evaluation = ckpt.with_suffix(".json")
    evaluation.write_text(json.dumps(shipped["evaluation"]))
    before = digest(evaluation)
    refused(run("training.card", ckpt, evaluation, "--overwrite"), "card", "evaluation")
    assert digest(evaluation) == before and not ckpt.with_suffix(".md").exists()


def test_ablate_prior_onto_its_source(checkpoints, tmp_path):
    """training.ablate_prior IN IN --overwrite: refused, the trained prior is not zeroed."""
    ckpt = tmp_path / "prior.pt"
    shutil.copy(checkpoints[1], ckpt)
    before = digest(ckpt)
    refused(run("training.ablate_prior", ckpt, ckpt, "--overwrite"), "output", "source")
    assert digest(ckpt) == before


def test_teach_cache_inside_the_data_dir(shared_data, tmp_path):
    """Teach --cache-dir inside --data-dir (the bundle is read, never written): refused."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("car10.mp4", "car10_gaze.npz"):
        shutil.copy(shared_data / "uav_gaze" / name, data / name)
    shutil.copy(shared_data / "uav_gaze" / "car10.mp4", data / "road.mp4")
    manifest = data / "m.yaml"
    manifest.write_text("name: m\ntrain:\n  - video: road.mp4\nval:\n  - video: car10.mp4\n"
                        "    gaze: car10_gaze.npz\n")
    refused(run("training", "teach", "--data", manifest, "--data-dir", data, "--cache-dir",
                data / "cache", "--teachers", "spectral-residual", "--max-frames", "2",
                "--no-progress"), "--cache-dir", "--data-dir")
    assert not (data / "cache").exists()
    assert sorted(p.name for p in data.iterdir()) == ["car10.mp4", "car10_gaze.npz", "m.yaml",
                                                      "road.mp4"]


@pytest.mark.parametrize("bench,options", [
    ("bench.soak", ["--minutes", "0.05", "--cameras", "1", "--sample-s", "1"]),
    ("bench.lifecycle", ["--cycles", "1", "--active-s", "0.5", "--quiet-s", "0.5"]),
    ("bench.train_step", ["--steps", "1", "--warmup", "0", "--batch-size", "2"]),
    ("bench.node_bench", ["--sizes", "640x480", "--node-runs", "1", "--node-warmup", "1",
                          "--node-duration", "1"]),
    ("bench.node_ladder", ["--sizes", "640x480", "--node-runs", "1", "--node-warmup", "1",
                           "--node-duration", "1", "--no-progress"]),
])
def test_benchmarks_json_and_doc_at_one_place(bench, options, ros_env, tmp_path):
    """A benchmark's --json and --doc on one file: refused before the (minutes long) run."""
    out = tmp_path / "result.md"
    refused(run(bench, *options, "--json", out, "--doc", out, env=ros_env),
            "--json", "--doc", "same place")
    assert not out.exists()


def test_demo_recording_onto_its_video(ros_env, tmp_path):
    """The demo's overlay.mp4 in --out is the video it plays: refused, the video stays."""
    video = tmp_path / "overlay.mp4"
    shutil.copy(REPO / "media" / "person11_uav123.mp4", video)
    before = digest(video)
    env = dict(ros_env, PYTHONPATH=str(REPO) + os.pathsep + ros_env.get("PYTHONPATH", ""))
    refused(run("skd_saliency_ros.demo", "--video", video, "--out", tmp_path, "--frames", "2",
                env=env), "overlay.mp4", "--video")
    assert digest(video) == before
