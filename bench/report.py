"""Turn a benchmark result dict into Markdown tables, a FPS-vs-R plot and a doc section.

One job: presentation.  The numbers come from bench/models.py (model bench), the node
benches (bench/node_bench.py, node_ladder.py, soak.py, lifecycle.py) and
bench/train_step.py; this module never measures anything.  Generated text
goes between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` markers of a Markdown file,
so docs/BENCHMARKS.md keeps its hand-written parts and a re-run replaces only the tables.
"""

from __future__ import annotations

import math
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.input_size import parse_input_size

BENCH_DIR = Path(__file__).resolve().parent


class ReportError(SkdError, ValueError):
    """A document that cannot take a generated section."""


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Format a GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(rows: List[Dict[str, Any]], **key) -> Dict[str, Any] | None:
    for row in rows:
        if all(row.get(k) == v for k, v in key.items()):
            return row
    return None


def model_tables(result: Dict[str, Any]) -> str:
    """Paper Table V layout: one table per backend, rows = (model, input size R or HxW)."""
    rows = result["rows"]
    meta = result["meta"]
    batch = meta["batch"]
    threads_all = meta["threads_all"]
    labels = list(result["models"])
    parts = []
    for backend in meta["backends"]:
        gpu = backend.startswith("cuda")
        header = ["model", "input (R or HxW)", "params", "act. total (MB)", "act. peak (MB)"]
        if gpu:
            header += ["latency b1 (ms)", "FPS b1", f"FPS b{batch}", "ratio vs paper (b1)"]
        else:
            header += ["latency b1, 1 thr (ms)", "FPS b1, 1 thr", f"FPS b{batch}, 1 thr",
                       f"FPS b1, {threads_all} thr", f"FPS b{batch}, {threads_all} thr",
                       "ratio vs paper (b1, 1 thr)"]
        table = []
        for label in labels:
            for res in meta["resolutions"]:
                stats = result["models"][label]["per_resolution"].get(str(res), {})
                thr = 0 if gpu else 1
                one = _cell(rows, backend=backend, model=label, resolution=res, batch=1,
                            threads=thr)
                if one is None:
                    continue
                line = [label, res, stats.get("params"), stats.get("act_mem_mb"),
                        stats.get("act_peak_mb"), one["latency_ms"], one["fps"]]
                cells = [(batch, thr)] if gpu else \
                    [(batch, 1), (1, threads_all), (batch, threads_all)]
                for b, t in cells:
                    c = _cell(rows, backend=backend, model=label, resolution=res, batch=b,
                              threads=t)
                    line.append(c["fps"] if c else None)
                line.append(one.get("ratio_vs_paper"))
                table.append(line)
        parts.append(f"**{backend}** — {meta['backend_notes'][backend]}\n\n"
                     + md_table(header, table))
    return "\n\n".join(parts)


def summary_table(result: Dict[str, Any]) -> str:
    """FPS at R=64, batch 1, one thread, every model and backend, ratios side by side."""
    rows = result["rows"]
    meta = result["meta"]
    cpu_backends = [b for b in meta["backends"] if not b.startswith("cuda")]
    header = ["model"]
    for backend in cpu_backends:
        header += [f"{backend} FPS", f"{backend} ratio"]
    table = []
    for label in result["models"]:
        line = [label]
        for backend in cpu_backends:
            c = _cell(rows, backend=backend, model=label, resolution=64, batch=1, threads=1)
            line += [c["fps"] if c else None, c.get("ratio_vs_paper") if c else None]
        table.append(line)
    return md_table(header, table)


def _equivalent_r(size: Any) -> float:
    """Square side with the pixels of ``size``: where an H x W input sits on the R axis."""
    return math.sqrt(parse_input_size(size).pixels)


def plot_fps_vs_r(result: Dict[str, Any], path: Path) -> Path:
    """Log-log FPS vs R: batch 1 on the fewest threads (left), batched on the most (right).

    An H x W input is drawn at R = sqrt(H * W) (the same pixel count) with its label.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = result["meta"]
    rows = result["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharey=True)
    low, high = min(meta["threads"]), max(meta["threads"])
    panels = [(1, low, f"batch 1, {low} thread(s)"),
              (meta["batch"], high, f"batch {meta['batch']}, {high} thread(s)")]
    styles = {"torch": "-", "torch-jit": "--", "onnxruntime": ":", "cuda-fp16": "-."}
    for ax, (batch, threads, title) in zip(axes, panels):
        for index, label in enumerate(result["models"]):
            for backend in meta["backends"]:
                thr = 0 if backend.startswith("cuda") else threads
                pts = [(_equivalent_r(r["resolution"]), r["fps"]) for r in rows
                       if r["model"] == label and r["backend"] == backend
                       and r["batch"] == batch and r["threads"] == thr]
                if pts:
                    xs, ys = zip(*sorted(pts))
                    ax.plot(xs, ys, styles.get(backend, "-"), marker="o", color=f"C{index}",
                            label=f"{label} / {backend}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks([_equivalent_r(r) for r in meta["resolutions"]],
                      [str(r) for r in meta["resolutions"]])
        ax.set_xlabel("input size R (H x W at R = sqrt(H W))")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("frames per second")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=7)
    fig.suptitle(f"FPS vs R ({meta['cpu']}; load avg {meta['loadavg_before'][0]:.1f} "
                 "at start)", fontsize=9)
    rows_of_legend = math.ceil(len(labels) / 4) if handles else 0
    fig.tight_layout(rect=(0, 0.05 * rows_of_legend, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def replace_section(doc: Path, name: str, body: str) -> Path:
    """Replace the text between the ``name`` markers of ``doc`` (append them if absent)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = doc.read_text() if doc.is_file() else ""
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        if text.index(begin) > text.index(end):
            raise ReportError(f"{doc}: marker '{end}' comes before '{begin}'")
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _m: block, text,
                      count=1, flags=re.S)
    elif begin in text or end in text:
        raise ReportError(f"{doc}: has only one of the markers '{begin}' / '{end}'")
    else:
        text = text.rstrip() + ("\n\n" if text else "") + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    return doc


def write_json_and_doc(result: dict, json_path: Optional[Path] = None,
                       doc: Optional[Path] = None, section: str = "", body: str = "") -> None:
    """Write a bench's result as JSON and/or its Markdown section (each only when asked)."""
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=1))
    if doc:
        replace_section(doc, section, body)
        print(f"wrote {doc}")


def command_line() -> str:
    """How this run was started, for the record: ``python -m bench.<module> <its options>``.

    Written into every generated doc section and JSON, so a reader can re-run it.  A bench
    called in-process (a test, another script) says so instead of inventing a command.
    """
    argv = sys.argv
    script = Path(argv[0]) if argv and argv[0] else None
    if script is not None and script.suffix == ".py" and script.resolve().parent == BENCH_DIR:
        return f"python -m bench.{script.stem} " + " ".join(shlex.quote(a) for a in argv[1:])
    return "a bench called in-process (by " + " ".join(argv[:1]) + ")"
