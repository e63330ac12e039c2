"""Smoke tests of the speed tooling: model bench, export, node bench, BN folding, arch docs.

Few iterations only and no timed assertions: speed is measured by the benchmark itself, not
here.  What is checked: the commands run on real models (and a real frame pair / real node),
produce the promised JSON keys and files, and refuse what they cannot measure with a clear
message and a non-zero exit.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from skd_saliency_ros.core.checkpoint import save_checkpoint
from skd_saliency_ros.core.models import ARCHITECTURES, KINDS, build_model, fold_batchnorm
from bench.models import main as bench_main

REPO_ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--resolutions", "64", "--batch", "2", "--repeats", "2", "--min-time", "0",
         "--warmup", "1", "--threads", "1", "--no-progress"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("AMENT_PREFIX_PATH", str(REPO_ROOT / ".venv"))
    return env


def _cli(module, *args, timeout=600):
    """Run ``python -m <module> <args>`` (bench.models, training, ...) in a child process."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT,
                          env=_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def fast_checkpoint(tmp_path_factory):
    """Save a real skd-fast fused checkpoint (seeded random weights: speed needs no training)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "fast_r64.pt"
    save_checkpoint(path, build_model("fused", "skd-fast"), 64,
                    meta={"note": "random weights for the bench smoke test"})
    return path


def test_bench_smoke_json_doc_and_plot(tmp_path, fast_checkpoint):
    """A few iterations of every CPU backend: summary keys, rows, doc section, plot."""
    out, doc = tmp_path / "bench.json", tmp_path / "BENCH.md"
    doc.write_text("# hand-written intro\n\nkept as it is\n")
    rc = bench_main(["--models", "skd-fast,default", "--default-model",
                     str(fast_checkpoint), "--backends", "torch,torch-jit,onnxruntime",
                     "--json", str(out), "--doc", str(doc), *QUICK])
    assert rc == 0
    result = json.loads(out.read_text())
    summary = result["summary"]
    for key in ("fps_cpu1_r64_paper", "fps_cpu1_r64_default",
                "ratio_cpu1_r64_default_vs_paper", "fps_cpu1_r64_skd_fast",
                "fps_cpu1_r64_default_onnxruntime", "gpu"):
        assert key in summary, key
    for key in ("fps_cpu1_r64_paper", "fps_cpu1_r64_default", "ratio_cpu1_r64_default_vs_paper"):
        assert math.isfinite(summary[key]) and summary[key] > 0
    # paper + skd-fast + default, 3 backends, batch 1 and 2, one thread, one R
    assert len(result["rows"]) == 3 * 3 * 2
    assert {r["backend"] for r in result["rows"]} == {"torch", "torch-jit", "onnxruntime"}
    stats = result["models"]["default"]["per_resolution"]["64"]
    assert stats["params"] == 145028 and 0 < stats["act_peak_mb"] <= stats["act_mem_mb"]
    text = doc.read_text()
    assert text.startswith("# hand-written intro") and "kept as it is" in text
    assert "<!-- bench:models:begin -->" in text and "fps_cpu1_r64_default" in text
    assert (tmp_path / "bench_fps_vs_r.png").stat().st_size > 1000
    # a second run replaces the section instead of appending another one
    assert bench_main(["--models", "skd-fast", "--backends", "torch",
                       "--doc", str(doc), *QUICK]) == 0
    assert doc.read_text().count("<!-- bench:models:begin -->") == 1


def test_bench_refuses_model_it_cannot_load(tmp_path):
    """A corrupt or missing checkpoint stops the bench with its name, exit 2, no numbers."""
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    proc = _cli("bench.models", "--models", str(bad), "--backends", "torch", *QUICK)
    assert proc.returncode == 2
    assert f"model '{bad}': cannot load it" in proc.stderr
    assert "fps" not in proc.stdout  # nothing reported
    proc = _cli("bench.models", "--models", "default", "--default-model",
                str(tmp_path / "none.pt"), "--backends", "torch", *QUICK)
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_bench_refuses_missing_or_unknown_backend():
    """A requested backend that is not installed or unknown is refused, exit 2."""
    # onnxruntime made unimportable in the child: the real ImportError path of the bench.
    code = ("import sys; sys.modules['onnxruntime'] = None; "
            "from bench.models import main; "
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "--models", "skd-fast",
                           "--backends", "torch,onnxruntime", *QUICK], cwd=REPO_ROOT,
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "backend 'onnxruntime' was requested but is not available" in proc.stderr
    proc = _cli("bench.models", "--models", "skd-fast", "--backends", "tensorrt", *QUICK)
    assert proc.returncode == 2 and "unknown backend 'tensorrt'" in proc.stderr


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_fold_batchnorm_matches(arch):
    """Folded copies equal the eval model for every kind; the original keeps its BN."""
    torch.manual_seed(1)
    for kind in KINDS:
        model = build_model(kind, arch)
        for mod in model.modules():  # non-trivial statistics, as after training
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.3, 2.0)
                mod.weight.data.uniform_(0.5, 1.5)
                mod.bias.data.uniform_(-0.3, 0.3)
        model.eval()
        folded = fold_batchnorm(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        x = torch.rand(2, 6, 32, 32)
        with torch.no_grad():
            want, got = model(x), folded(x)
        scale = want.abs().max().item()
        assert (want - got).abs().max().item() <= 1e-5 * max(1.0, scale)
        # the original is untouched
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_export_cli_matches_torch_on_real_frames(tmp_path, fast_checkpoint, shared_data):
    """Export writes an ONNX file equal to torch on real frames and refuses to overwrite."""
    out = tmp_path / "fast.onnx"
    proc = _cli("training", "export", "--model", str(fast_checkpoint), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "on a real car10 frame pair" in proc.stdout
    diff = float(proc.stdout.split("max |onnxruntime - torch| on a real car10 frame pair: ")[1]
                 .split()[0])
    assert diff <= 1e-4
    import onnx

    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["arch"] == "skd-fast" and props["resolution"] == "64"
    again = _cli("training", "export", "--model", str(fast_checkpoint), "--out", str(out))
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    missing = _cli("training", "export", "--model", str(tmp_path / "nope.pt"), "--out",
                   str(tmp_path / "x.onnx"))
    assert missing.returncode == 2 and "no such checkpoint file" in missing.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_node_bench_smoke(tmp_path, fast_checkpoint, shared_data):
    """One short run of both chains at 1280x720 with the real node: summary keys present."""
    out = tmp_path / "node.json"
    proc = _cli("bench.models", "--node", "--sizes", "1280x720", "--node-runs", "1",
                "--node-warmup", "0.5", "--node-duration", "1.5", "--node-model",
                str(fast_checkpoint), "--node-json", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    summary = result["summary"]
    assert "node_vs_passthrough_p50_1280x720" in summary and "drops_1280x720" in summary
    assert summary["node_vs_passthrough_p50_1280x720"] > 0
    for chain in ("passthrough", "node"):
        entry = result["per_size"]["1280x720"][chain]
        assert entry["sent"] > 0 and 0 <= entry["drops"] <= entry["sent"]
    assert np.isfinite(result["per_size"]["1280x720"]["node"]["cpu_ms_per_frame"])


def test_node_bench_refuses_missing_model(tmp_path):
    """The node bench refuses a model file that does not exist."""
    proc = _cli("bench.models", "--node", "--node-model", str(tmp_path / "none.pt"), "--sizes",
                "640x480", "--no-progress")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def _ladder(*args):
    return subprocess.run([sys.executable, "-m", "bench.node_ladder", *args], cwd=REPO_ROOT,
                          env=_env(), capture_output=True, text=True, timeout=600)


def test_node_ladder_smoke(tmp_path, fast_checkpoint, shared_data):
    """A two-step ladder: one full node bench per step, table in the doc, plot beside it."""
    ladder = tmp_path / "ladder.yaml"
    ladder.write_text('- label: "full-size map"\n  params: ["output_scale:=1.0"]\n'
                      '- label: "shipped config"\n  params: []\n')
    doc, out, plot = tmp_path / "B.md", tmp_path / "l.json", tmp_path / "l.png"
    doc.write_text("# hand-written\n")
    proc = _ladder("--ladder", str(ladder), "--sizes", "640x480", "--node-runs", "1",
                   "--node-warmup", "0.5", "--node-duration", "1.5", "--node-model",
                   str(fast_checkpoint), "--json", str(out), "--doc", str(doc), "--plot",
                   str(plot), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [s["label"] for s in result["steps"]] == ["full-size map", "shipped config"]
    assert result["steps"][0]["params"] == ["output_scale:=1.0"]
    for step in result["steps"]:
        assert step["per_size"]["640x480"]["node"]["sent"] > 0
    text = doc.read_text()
    assert text.startswith("# hand-written") and "| full-size map | 640x480 |" in text
    assert plot.stat().st_size > 1000


def test_node_ladder_refuses_bad_ladder_file(tmp_path):
    """A ladder file that is not a list of labelled steps is refused with its name."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("label: not a list\n")
    proc = _ladder("--ladder", str(bad), "--no-progress")
    assert proc.returncode == 2 and "bad.yaml: expected a list of steps" in proc.stderr


def test_architecture_doc_in_sync():
    """docs/ARCHITECTURE.md's layer tables equal what tools/arch_table.py builds now."""
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "arch_table.py"),
                           "--check"], cwd=REPO_ROOT, env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout


def test_soak_smoke_two_cameras(tmp_path, fast_checkpoint, shared_data):
    """A 6-second soak with one and two cameras: RSS sampled, frames answered, doc written."""
    out, doc = tmp_path / "soak.json", tmp_path / "RELIABILITY.md"
    doc.write_text("# Reliability\n")
    proc = subprocess.run([sys.executable, "-m", "bench.soak", "--minutes", "0.1",
                           "--cameras", "1,2", "--sample-s", "1", "--model",
                           str(fast_checkpoint), "--json", str(out), "--doc", str(doc)],
                          cwd=REPO_ROOT, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    assert [r["cameras"] for r in runs] == [1, 2]
    for run in runs:
        assert len(run["rss_series"]) >= 4 and run["rss_end_mb"] > 50
        assert run["sent"] > 100 and run["answered"] + run["dropped"] == run["sent"]
        assert run["answered"] > 0.5 * run["sent"]
    text = doc.read_text()
    assert "<!-- bench:soak:begin -->" in text and "| 2 | 1280x720 @ 30 Hz" in text
    assert (tmp_path / "soak_rss.png").stat().st_size > 1000
    bad = subprocess.run([sys.executable, "-m", "bench.soak", "--minutes", "0"],
                         cwd=REPO_ROOT, env=_env(), capture_output=True, text=True)
    assert bad.returncode == 2 and "--minutes and --sample-s must be > 0" in bad.stderr


def test_generated_doc_names_the_bench_command(tmp_path, monkeypatch):
    """The doc section says how to re-run it: ``python -m bench.<module>`` and its options."""
    from bench import report

    monkeypatch.setattr(sys, "argv", [str(REPO_ROOT / "bench" / "teacher.py"), "--models",
                                      "a b.pt"])
    assert report.command_line() == "python -m bench.teacher --models 'a b.pt'"
    monkeypatch.setattr(sys, "argv", ["/usr/bin/pytest", "-q"])
    assert report.command_line() == "a bench called in-process (by /usr/bin/pytest)"
    doc = tmp_path / "B.md"
    proc = _cli("bench.models", "--models", "skd-fast", "--backends", "torch", "--doc",
                str(doc), *QUICK)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("Generated by `python -m bench.models --models skd-fast --backends torch --doc "
            f"{doc} --resolutions 64") in doc.read_text()


def test_teacher_bench_refuses_bad_numbers():
    """``python -m bench.teacher`` refuses a run it cannot time, exit 2, one line."""
    proc = _cli("bench.teacher", "--teachers", "", "--repeats", "0")
    assert proc.returncode == 2
    assert "python -m bench.teacher: error: --repeats must be >= 1" in proc.stderr


def test_node_bench_transport_variants(tmp_path):
    """--transport: which process gets the SHM profile, and LARGE_DATA with its options."""
    from bench.node_bench import PROFILE_VARIABLES, SHM_PROFILE, ros_env

    shm = ros_env(tmp_path)
    assert shm["FASTDDS_DEFAULT_PROFILES_FILE"] == str(SHM_PROFILE)
    node = ros_env(tmp_path, "camera-default", role="node")
    camera = ros_env(tmp_path, "camera-default", role="camera")
    assert node["FASTDDS_DEFAULT_PROFILES_FILE"] == str(SHM_PROFILE)
    assert not any(name in camera for name in PROFILE_VARIABLES)
    large = ros_env(tmp_path, "large-data", large_data_options="max_msg_size=4MB")
    assert not any(name in large for name in PROFILE_VARIABLES)
    assert large["FASTDDS_BUILTIN_TRANSPORTS"] == "LARGE_DATA?max_msg_size=4MB"
