"""``python -m bench.teacher``: the student's speed next to its teachers'.

What distillation buys is a measured ratio, not a claim: the deep teachers (ONNX, as the
teach step runs them) and student checkpoints (ONNX export, as the node runs them with
backend auto on a CPU, at the checkpoint's own input size, R x R or H x W) are timed in one
process, one thread, batch 1, round-robin repeat by repeat so that load from other processes
hits all of them alike.  A teacher's cost is per
*labelled frame*: TinyHD-S needs one 16-frame clip per frame, TinyHD-M labels 16 frames per
clip.  Model calls only (pre-processing, resizing and decoding are not timed, for either).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from skd_saliency_ros.core.errors import run_reporting_user_errors
from skd_saliency_ros.core.output_paths import Output, check_outputs
from bench.backends import BenchError
from bench.models import time_cell  # the one round-robin timer of every benchmark


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the teacher-vs-student bench."""
    parser.add_argument("--teachers", default="tinyhd-s,tinyhd-m",
                        help="teacher specs with an ONNX model (default %(default)s)")
    parser.add_argument("--models", default="default",
                        help="student checkpoints: 'default' or .pt paths (comma list)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    parser.add_argument("--min-time", type=float, default=1.0,
                        help="seconds each repeat lasts at least (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")


def _teacher_runner(spec: str):
    from skd_saliency_ros.core.onnx_runtime import ort_session
    from training.teachers import GenericTeacher, get_teacher

    teacher = get_teacher(spec)
    if not isinstance(teacher, GenericTeacher) or teacher.model_path.suffix != ".onnx":
        raise BenchError(f"teacher '{spec}': only ONNX teachers can be timed here")
    sess = ort_session(teacher.model_path, threads=1)
    width, height = teacher.input_cfg["size"]
    x = np.random.default_rng(0).standard_normal(
        (1, 3, teacher.window, int(height), int(width))).astype(np.float32)
    name = sess.get_inputs()[0].name
    per_call = teacher.window if teacher.output_cfg["per_frame"] else 1
    info = {"kind": "teacher", "model": teacher.model_path.name, "input": list(x.shape),
            "input_size": f"{int(height)}x{int(width)}", "frames_per_call": per_call}
    return (lambda: sess.run(None, {name: x})), per_call, info


def _student_runner(name: str, workdir: Path):
    from skd_saliency_ros.core.checkpoint import DEFAULT_MODEL, load_checkpoint
    from skd_saliency_ros.core.input_size import plain_size, size_of_checkpoint
    from skd_saliency_ros.core.models import count_parameters
    from skd_saliency_ros.core.onnx_export import export_checkpoint
    from skd_saliency_ros.core.onnx_runtime import ort_session

    path = DEFAULT_MODEL if name == "default" else Path(name)
    model, payload = load_checkpoint(path)
    size = size_of_checkpoint(payload)
    onnx = workdir / f"{path.stem}.onnx"
    export_checkpoint(path, onnx)  # the file the engine runs (fused for inference)
    sess = ort_session(onnx, threads=1)
    x = np.random.default_rng(0).random((1, model.in_channels, *size), dtype=np.float32)
    in_name = sess.get_inputs()[0].name
    info = {"kind": "student", "model": str(path), "arch": payload["arch"].get("name"),
            "resolution": plain_size(size), "input_size": size.label,
            "params": count_parameters(model)}
    return (lambda: sess.run(None, {in_name: x})), 1, info


def run(args: argparse.Namespace) -> int:
    """Time teachers and students; print a table; write JSON."""
    if args.repeats < 1 or args.min_time <= 0:
        raise BenchError("--repeats must be >= 1 and --min-time > 0")
    teachers = [s.strip() for s in args.teachers.split(",") if s.strip()]
    students = [s.strip() for s in args.models.split(",") if s.strip()]
    check_outputs([Output("--json", args.json, regenerated=True)],
                  inputs=[("--models", m) for m in students if m != "default"]
                  + [("--teachers", t) for t in teachers if Path(t).is_file()])
    runners, per_frame, infos = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in teachers:
            runners[spec], per_frame[spec], infos[spec] = _teacher_runner(spec)
        for name in students:
            runners[name], per_frame[name], infos[name] = _student_runner(name, Path(tmp))
        times = time_cell(runners, args.repeats, args.min_time, warmup=2)
    rows = {}
    for key, samples in times.items():
        call = statistics.median(samples)
        rows[key] = {**infos[key], "ms_per_call": call * 1e3,
                     "ms_per_frame": call * 1e3 / per_frame[key],
                     "fps": per_frame[key] / call, "repeats_ms": [s * 1e3 for s in samples]}
    students = [k for k in rows if rows[k]["kind"] == "student"]
    for key, row in rows.items():
        row["student_speedup"] = {s: row["ms_per_frame"] / rows[s]["ms_per_frame"]
                                  for s in students} if row["kind"] == "teacher" else {}
    print(f"{'model':12s} {'input':>8s} {'ms/call':>9s} {'ms/frame':>9s} {'FPS':>9s}  "
          "speed-up of " + ", ".join(students))
    for key, row in rows.items():
        speed = ", ".join(f"{v:.0f}x" for v in row["student_speedup"].values())
        print(f"{key:12s} {row['input_size']:>8s} {row['ms_per_call']:9.2f} "
              f"{row['ms_per_frame']:9.3f} {row['fps']:9.1f}  {speed}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "rows": rows, "threads": 1, "batch": 1, "backend": "onnxruntime CPU",
            "machine": {"cpu": platform.processor() or platform.machine(),
                        "python": platform.python_version()},
            "command": "python -m bench.teacher " + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                if k in ("teachers", "models", "repeats", "min_time"))}, indent=1))
        print(f"wrote {args.json}")
    return 0


def main(argv=None) -> int:
    """``python -m bench.teacher [options]``: user errors exit 2 with one line."""
    parser = argparse.ArgumentParser(prog="python -m bench.teacher",
                                     description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_reporting_user_errors("python -m bench.teacher", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
