"""Tables and a plot of the selection runs of docs/SELECTION_RULE.md, from their checkpoints.

    python tools/selection_report.py runs/tinyhd --out docs/selection   # from the repo root

Reads every ``<ID>_s<seed>.pt`` (the fused checkpoints of tools/selection_runs.sh) and its
``.history.json``; the numbers are the checkpoints' own end-of-training validation (every
group2 frame, ``meta.validation``), never typed by hand.  Writes ``<out>.md`` (one row per
candidate: seeds, mean and min-max of NSS and CC, parameters, training time) and
``<out>.png`` (validation NSS against the step for every run, and the per-seed final NSS).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np

RUN = re.compile(r"^(?P<id>[A-Z])_s(?P<seed>\d+)\.pt$")


def collect(folder: Path) -> Dict[str, List[dict]]:
    """Candidate id -> one dict per finished seed (meta + history)."""
    from skd_saliency_ros.core.checkpoint import read_checkpoint

    runs: Dict[str, List[dict]] = {}
    for path in sorted(folder.glob("*_s*.pt")):
        match = RUN.match(path.name)
        if not match or path.name.endswith(".resume.pt"):
            continue
        meta = read_checkpoint(path)["meta"]
        hist_path = path.with_name(path.stem + ".history.json")
        history = json.loads(hist_path.read_text())["history"] if hist_path.is_file() else {}
        runs.setdefault(match["id"], []).append({"seed": int(match["seed"]), "meta": meta,
                                                 "history": history, "path": str(path)})
    return runs


def table(runs: Dict[str, List[dict]]) -> str:
    """Markdown: one row per candidate, mean and spread over its seeds."""
    lines = ["| id | architecture | init | lambda | seeds | NSS mean | NSS min-max | CC mean | "
             "CC min-max | params | train min (mean) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for cid, rows in sorted(runs.items()):
        nss = np.array([r["meta"]["validation"]["nss"] for r in rows])
        cc = np.array([r["meta"]["validation"]["cc"] for r in rows])
        m = rows[0]["meta"]
        minutes = np.mean([r["meta"]["train_time_s"] for r in rows]) / 60
        lines.append(
            f"| {cid} | {m['arch']} | {m.get('init')} | {m['lambda']} | "
            f"{','.join(str(r['seed']) for r in rows)} | {nss.mean():.3f} | "
            f"{nss.min():.3f}-{nss.max():.3f} | {cc.mean():.3f} | {cc.min():.3f}-{cc.max():.3f} "
            f"| {m['parameters']:,} | {minutes:.1f} |")
    return "\n".join(lines) + "\n"


def plot(runs: Dict[str, List[dict]], path: Path) -> None:
    """Plot validation NSS over steps per run, and final NSS per seed per candidate."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (cid, rows) in enumerate(sorted(runs.items())):
        colour = colours[i % len(colours)]
        for r in rows:
            val = r["history"].get("val", [])
            ax1.plot([v["step"] for v in val], [v["nss"] for v in val], marker="o",
                     color=colour, alpha=0.8,
                     label=f"{cid} {r['meta']['arch']}" if r is rows[0] else None)
        ax2.scatter([i] * len(rows), [r["meta"]["validation"]["nss"] for r in rows],
                    color=colour)
    ax1.set_xlabel("step")
    ax1.set_ylabel("group2 NSS (every 4th frame; last point: every frame)")
    ax1.legend(fontsize=7)
    ax2.set_xticks(range(len(runs)))
    ax2.set_xticklabels(sorted(runs))
    ax2.set_ylabel("group2 NSS at the end, one dot per seed")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="output stem (.md, .png)")
    args = parser.parse_args(argv)
    runs = collect(args.folder)
    if not runs:
        print(f"{args.folder}: no finished <ID>_s<seed>.pt runs", file=sys.stderr)
        return 2
    text = table(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    plot(runs, args.out.with_suffix(".png"))
    print(text)
    print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
