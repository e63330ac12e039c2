"""``python -m bench.models``: speed and memory of the fused models (paper Table V layout).

For every backend, input size (``--resolutions``: R for R x R, or H x W such as 48x80; every
checkpoint's own trained size is added to them), batch size (1 and ``--batch``) and thread
count (1 and all cores) it times every requested model, always including the paper-faithful
reference (``--paper``, default skd-paper), and reports parameters, activation memory, latency, FPS
and the FPS ratio to the paper model.  Models of one cell are timed round-robin, repeat by
repeat, so a burst of load from another process hits all of them alike, and each ratio is
the median of per-repeat ratios.  ``--node`` runs the ROS node overhead benchmark instead
(bench/node_bench.py).

The JSON (``--json``) has a top-level "summary" with fps_cpu1_r64_paper,
fps_cpu1_r64_default and ratio_cpu1_r64_default_vs_paper (torch eager, batch 1, one thread),
and for a checkpoint trained at another size the same at that size (e.g.
fps_cpu1_r48x80_wide, ratio_cpu1_r48x80_wide_vs_paper: the paper model timed at 48x80 too).
Sizes appear as R (an int) when square, else as the "HxW" label.
``--doc docs/BENCHMARKS.md`` rewrites the generated section of that file and the plot
next to it.  A model that cannot be loaded or a backend that is missing stops the run with
a BenchError naming it; numbers are never reported for what did not run.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import torch

from skd_saliency_ros.core.checkpoint import code_version
from skd_saliency_ros.core.errors import run_reporting_user_errors
from skd_saliency_ros.core.input_size import InputSizeError, parse_input_size, plain_size
from bench import node_bench
from bench import report as bench_report
from bench.backends import (BACKEND_NOTES, BenchError, BenchModel, CellRunner, all_threads,
                            check_backends, load_bench_model, model_stats)
from bench.report import command_line

DEFAULT_MODELS = "skd-paper-prior,skd-fast,default"
SECTION = "bench:models"

__all__ = ["BenchError", "add_arguments", "main", "run", "run_model_bench"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the model bench (and, with --node, of the node bench)."""
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help="comma list: architecture names (random weights), 'default' "
                             "(the shipped trained model) or checkpoint paths "
                             f"(default {DEFAULT_MODELS})")
    parser.add_argument("--paper", default="skd-paper",
                        help="the paper-faithful reference every ratio is taken against "
                             "(always measured, labelled 'paper'; default skd-paper)")
    parser.add_argument("--default-model", type=Path, default=None,
                        help="checkpoint that plays 'default' (default: "
                             "skd_saliency_ros/weights/skd_default_r64.pt)")
    parser.add_argument("--resolutions", default="32,64,128,256",
                        help="comma list of input sizes, R or HxW (default 32,64,128,256); "
                             "each checkpoint's trained size is added")
    parser.add_argument("--batch", type=int, default=16,
                        help="the batched size next to batch 1 (default 16)")
    parser.add_argument("--threads", default="1,all",
                        help="comma list of CPU thread counts, 'all' = every core "
                             "(default 1,all)")
    parser.add_argument("--backends", default="auto",
                        help="comma list of torch, torch-jit, onnxruntime, cuda-fp16; 'auto' "
                             "= every installed one, the others listed as not measured")
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed repeats per cell; the median is reported (default 7)")
    parser.add_argument("--min-time", type=float, default=0.25,
                        help="seconds each repeat lasts at least (default 0.25)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first (5)")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    parser.add_argument("--doc", type=Path, default=None,
                        help="Markdown file whose generated section is replaced "
                             "(e.g. docs/BENCHMARKS.md); the plot goes next to it")
    parser.add_argument("--plot", type=Path, default=None,
                        help="FPS-vs-R PNG (default: bench_fps_vs_r.png next to --doc)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    group = parser.add_argument_group("node benchmark (--node)")
    group.add_argument("--node", action="store_true",
                       help="run the ROS node overhead benchmark instead of the model bench")
    node_bench.add_node_arguments(group)


def _ints(text: str, what: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BenchError(f"--{what}: expected a comma list of integers, got '{text}'") from None
    if not values or any(v <= 0 for v in values):
        raise BenchError(f"--{what}: expected positive integers, got '{text}'")
    return values


def _sizes(text: str, models: Dict[str, BenchModel]) -> List[Any]:
    """--resolutions plus every checkpoint's trained size, smallest first, in plain form.

    A model is timed at its own input size even when --resolutions does not list it, so a
    non-square checkpoint is never reported only at square sizes it was not trained at.
    """
    try:
        sizes = [parse_input_size(v.strip(), "--resolutions") for v in text.split(",")
                 if v.strip()]
    except InputSizeError as exc:
        raise BenchError(str(exc)) from None
    if not sizes:
        raise BenchError(f"--resolutions: expected a comma list of R or HxW, got '{text}'")
    for bench_model in models.values():
        trained = bench_model.info.get("trained_resolution")
        if trained is not None and parse_input_size(trained) not in sizes:
            sizes.append(parse_input_size(trained))
    for bench_model in models.values():
        factor = int(bench_model.model.factor)
        bad = [size.label for size in sizes if not size.divisible_by(factor)]
        if bad:
            raise BenchError(f"model '{bench_model.label}' needs H and W multiples of "
                             f"{factor}; cannot run input {', '.join(bad)}")
    return [plain_size(size) for size in sorted(set(sizes), key=lambda z: (z.pixels, z))]


def _threads(text: str) -> List[int]:
    values = []
    for item in text.split(","):
        item = item.strip()
        values.append(all_threads() if item == "all" else _ints(item, "threads")[0])
    return sorted(set(values))


def time_cell(fns: Dict[str, Callable[[], Any]], repeats: int, min_time: float,
              warmup: int) -> Dict[str, List[float]]:
    """Seconds per call of each callable: ``repeats`` samples, taken round-robin."""
    iters = {}
    for label, fn in fns.items():
        start = time.perf_counter()
        for _ in range(warmup):  # at most ``warmup`` calls, stopping after about 1 s
            fn()
            if time.perf_counter() - start > 1.0:
                break
        best = math.inf
        for _ in range(2):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        iters[label] = max(1, math.ceil(min_time / max(best, 1e-7)))
    samples: Dict[str, List[float]] = {label: [] for label in fns}
    labels = list(fns)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for rep in range(repeats):
            shift = rep % len(labels)
            for label in labels[shift:] + labels[:shift]:
                fn, n = fns[label], iters[label]
                start = time.perf_counter()
                for _ in range(n):
                    fn()
                samples[label].append((time.perf_counter() - start) / n)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> Dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        out["cuda_device"] = torch.cuda.get_device_name(0)
        out["cuda"] = str(torch.version.cuda)
    return out


def _model_names(args) -> List[str]:
    """Return the names of --models (blanks dropped)."""
    return [n.strip() for n in args.models.split(",") if n.strip()]


def _load_models(args) -> Dict[str, BenchModel]:
    names = _model_names(args)
    models: Dict[str, BenchModel] = {"paper": load_bench_model(args.paper, "paper")}
    for name in names:
        if name == "default" and args.default_model is not None:
            bench_model = load_bench_model(str(args.default_model), "default")
        else:
            bench_model = load_bench_model(name)
        if bench_model.label in models:
            raise BenchError(f"model label '{bench_model.label}' given twice in --models")
        models[bench_model.label] = bench_model
    return models


def _row(backend: str, label: str, res: Any, batch: int, threads: int,
         samples: List[float], ratios: List[float] | None) -> Dict[str, Any]:
    med = statistics.median(samples)
    return {"backend": backend, "model": label, "resolution": res, "batch": batch,
            "threads": threads, "latency_ms": med * 1e3,
            "latency_ms_min": min(samples) * 1e3, "latency_ms_max": max(samples) * 1e3,
            "fps": batch / med, "repeats": len(samples),
            "ratio_vs_paper": statistics.median(ratios) if ratios else None}


def run_model_bench(args) -> Dict[str, Any]:
    """Measure every cell; return the result dict (rows, models, meta, summary)."""
    if args.batch < 1 or args.repeats < 1 or args.min_time < 0:
        raise BenchError("--batch and --repeats must be >= 1 and --min-time >= 0")
    backends, skipped = check_backends([b.strip() for b in args.backends.split(",")
                                        if b.strip()])
    threads = _threads(args.threads)
    models = _load_models(args)
    resolutions = _sizes(args.resolutions, models)
    batches = sorted({1, args.batch})
    meta = {
        "command": command_line(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
        "code_version": code_version(), "cpu": _cpu_name(), "threads_all": all_threads(),
        "loadavg_before": list(os.getloadavg()), "versions": _versions(),
        "resolutions": resolutions, "batch": args.batch, "threads": threads,
        "backends": backends, "backends_not_measured": skipped,
        "backend_notes": {b: BACKEND_NOTES[b] for b in backends},
        "repeats": args.repeats, "min_time_s": args.min_time, "paper_arch": args.paper,
        "timing": "median of repeats; models of a cell timed round-robin per repeat; "
                  "ratio = median over repeats of paper latency / model latency",
    }
    result: Dict[str, Any] = {"meta": meta, "models": {}, "rows": []}
    for label, bench_model in models.items():
        result["models"][label] = {
            "source": bench_model.source, **bench_model.info,
            "per_resolution": {str(r): model_stats(bench_model, r) for r in resolutions}}

    cells = []
    for backend in backends:
        thread_list = [0] if backend.startswith("cuda") else threads
        for thr in thread_list:
            for res in resolutions:
                for batch in batches:
                    cells.append((backend, thr, res, batch))
    runner = CellRunner()
    saved_threads = torch.get_num_threads()
    try:
        from tqdm import tqdm

        for backend, thr, res, batch in tqdm(cells, desc="bench cells", unit="cell",
                                             disable=args.no_progress):
            fns = {label: runner.make(backend, m, res, batch, max(thr, 1))
                   for label, m in models.items()}
            samples = time_cell(fns, args.repeats, args.min_time, args.warmup)
            paper = samples["paper"]
            for label, times in samples.items():
                ratios = [p / t for p, t in zip(paper, times)] if label != "paper" else None
                result["rows"].append(_row(backend, label, res, batch, thr, times, ratios))
    finally:
        torch.set_num_threads(saved_threads)
        runner.close()
    meta["loadavg_after"] = list(os.getloadavg())
    result["summary"] = summarise(result)
    return result


def _headline_size(row: Dict[str, Any], result: Dict[str, Any]) -> str | None:
    """``"64"`` or a model's own trained size label for a headline row's size, else None.

    R = 64 is the paper's headline; a checkpoint trained at another size (48x80) gets its
    headline at that size too, next to the paper model timed at the same size.
    """
    res = row["resolution"]
    trained = [m.get("trained_resolution") for m in result["models"].values()]
    if res == 64 or res in trained:
        return parse_input_size(res).label
    return None


def summarise(result: Dict[str, Any]) -> Dict[str, Any]:
    """Headline numbers: R=64 (and each checkpoint's own size), batch 1, one thread."""
    summary: Dict[str, Any] = {}
    meta = result["meta"]
    gpu = False
    for row in result["rows"]:
        size = _headline_size(row, result)
        if size is None:
            continue
        key = row["model"].replace("-", "_")
        if row["backend"].startswith("cuda"):
            gpu = True
            summary[f"fps_gpu_r{size}_b{row['batch']}_{key}"] = row["fps"]
        elif row["batch"] != 1:
            continue
        elif row["backend"] == "torch" and row["threads"] == 1:
            summary[f"fps_cpu1_r{size}_{key}"] = row["fps"]
            if row["model"] != "paper":
                summary[f"ratio_cpu1_r{size}_{key}_vs_paper"] = row["ratio_vs_paper"]
        elif row["threads"] == 1:
            backend = row["backend"].replace("-", "_")
            summary[f"fps_cpu1_r{size}_{key}_{backend}"] = row["fps"]
    if gpu:
        summary["gpu"] = meta["versions"].get("cuda_device", "cuda")
    else:
        summary["gpu"] = "not measured — " + meta["backends_not_measured"].get(
            "cuda-fp16", "cuda-fp16 backend not requested")
    return summary


def print_result(result: Dict[str, Any]) -> None:
    """Human-readable tables on stdout."""
    print(bench_report.model_tables(result))
    print()
    print("R=64, batch 1, one thread:")
    print(bench_report.summary_table(result))
    print()
    print(json.dumps(result["summary"], indent=1))


def doc_section(result: Dict[str, Any], plot: Path | None, doc: Path) -> str:
    """Build the generated Markdown section: command, conditions, summary, Table V, plot."""
    meta = result["meta"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    load = (f"load average {meta['loadavg_before'][0]:.2f} at start, "
            f"{meta['loadavg_after'][0]:.2f} at end")
    models = "\n".join(f"- `{label}`: {m['source']}, {m['per_resolution'][str(meta['resolutions'][0])]['params']:,} parameters"  # noqa: E501
                       + (f", trained at input {m['trained_resolution']}"
                          if m.get("trained_resolution") is not None else "")
                       for label, m in result["models"].items())
    not_measured = "".join(f"\n- `{b}`: not measured — {why}"
                           for b, why in meta["backends_not_measured"].items())
    text = [f"Generated by `{meta['command']}` on {meta['date_utc']} "
            f"(code {meta['code_version']}).",
            "",
            f"Machine: {meta['cpu']}, {meta['threads_all']} cores usable; {versions}; "
            f"{load}. {meta['timing']}; {meta['repeats']} repeats of >= "
            f"{meta['min_time_s']} s each.",
            "", "Models:", models, "",
            "Backends:" + "".join(f"\n- `{b}`: {meta['backend_notes'][b]}"
                                  for b in meta["backends"]) + not_measured,
            "", "### Headline: R = 64, batch 1, one CPU thread", "",
            bench_report.summary_table(result), "",
            "### Table V layout", "", bench_report.model_tables(result), ""]
    if plot is not None:
        rel = os.path.relpath(plot, doc.parent)
        text += [f"![FPS vs R]({rel})", ""]
    text += ["Summary JSON:", "", "```json", json.dumps(result["summary"], indent=1), "```"]
    return "\n".join(text)


def _plot_path(args):
    """Return the FPS-vs-R plot to write: --plot, else bench_fps_vs_r.png beside --doc."""
    if args.plot is None and args.doc is not None:
        return args.doc.parent / "bench_fps_vs_r.png"
    return args.plot


def check_report_paths(args) -> None:
    """Refuse, before timing anything, reports that would land on a model or on each other.

    The reports are regenerated on every run (a doc section and its plot), so existing ones
    are replaced; a checkpoint named in --models / --default-model is an input.
    """
    from skd_saliency_ros.core.models import ARCHITECTURES
    from skd_saliency_ros.core.output_paths import Output, check_outputs

    models = [m for m in [args.paper] + _model_names(args)
              if m not in ARCHITECTURES and m != "default"]
    check_outputs([Output("--json", args.json, regenerated=True),
                   Output("--doc", args.doc, regenerated=True),
                   Output("--plot" if args.plot else "plot beside --doc", _plot_path(args),
                          regenerated=True)],
                  inputs=[("--default-model", args.default_model)]
                  + [("--models", m) for m in models])


def run(args) -> int:
    """Run the model bench (or, with --node, the node bench); report what was asked for."""
    if args.node:
        return node_bench.run(args)
    check_report_paths(args)
    result = run_model_bench(args)
    print_result(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    plot = _plot_path(args)
    if plot is not None:
        bench_report.plot_fps_vs_r(result, plot)
        print(f"wrote {plot}")
    if args.doc is not None:
        bench_report.replace_section(args.doc, SECTION, doc_section(result, plot, args.doc))
        print(f"updated {args.doc}")
    return 0


def main(argv=None) -> int:
    """``python -m bench.models [options]``: user errors exit 2 with one line."""
    parser = argparse.ArgumentParser(prog="python -m bench.models",
                                     description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_reporting_user_errors("python -m bench.models", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
