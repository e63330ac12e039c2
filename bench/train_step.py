"""What one training step costs, and what makes it cheaper: ``python -m bench.train_step``.

Training is the scarce resource here (one 4,000-step run is about half an hour on one core),
so every option that could make a step cheaper is timed on the trainer's own code path:
real batches assembled by ``training.trainer.make_batch`` from the cached bundle, the real
loss, Adam, one thread.  Variants: float32; bfloat16 autocast of the forward pass (useful
only where the CPU has AMX or AVX512-BF16: ``lscpu`` flags are recorded); channels-last
memory format; and the batch-assembly time alone (what moving it off the training thread
could save at most).  Steps of the variants are interleaved (round robin), so a load change
on a shared machine hits every variant alike.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

SECTION = "bench:train_step"
VARIANTS = ("float32", "bf16", "channels_last", "channels_last+bf16")


def cpu_flags() -> List[str]:
    """Return the bfloat16-relevant CPU flags of this machine (empty where none or unknown)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile"))


def _trainer_args(argv: List[str]):
    from training.trainer import add_common_arguments

    parser = argparse.ArgumentParser()
    add_common_arguments(parser, default_lambda=1.0, default_steps=1)
    return parser.parse_args(argv)


def time_steps(args) -> Dict[str, Any]:
    """Median ms per step of each variant and of batch assembly (round robin over variants)."""
    import numpy as np
    import torch

    from training.losses import distillation_loss, make_criterion
    from training.trainer import arch_spec, load_data, make_batch
    from skd_saliency_ros.core.models import build_model

    torch.set_num_threads(args.threads)
    targs = _trainer_args(["--spatial-teacher", args.teacher, "--temporal-teacher",
                           args.teacher, "--arch", args.arch, "--loss", args.loss,
                           "--train-sources", args.sources, "-o", "/dev/null"])
    data = load_data(targs, [args.teacher], [args.teacher], gaze_only=False, progress=False)
    criterion = make_criterion(args.loss, args.cc_weight)
    rng = np.random.default_rng(0)
    nets, optims = {}, {}
    for variant in VARIANTS:
        torch.manual_seed(0)
        net = build_model("fused", arch_spec(targs))
        if variant.startswith("channels_last"):
            net = net.to(memory_format=torch.channels_last)
        nets[variant] = net.train()
        optims[variant] = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    times: Dict[str, List[float]] = {v: [] for v in (*VARIANTS, "batch_assembly")}
    for step in range(args.warmup + args.steps):
        ids = rng.integers(0, len(data.samples), args.batch_size)
        flips = torch.from_numpy(rng.random(args.batch_size) < 0.5)
        t0 = time.perf_counter()
        batch = make_batch(data, ids, flips)
        assembly = time.perf_counter() - t0
        for variant in VARIANTS:
            x = batch["x"]
            if variant.startswith("channels_last"):
                x = x.contiguous(memory_format=torch.channels_last)
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.endswith("bf16")):
                out = nets[variant](x, raw=True)
            loss = distillation_loss(out.float(), batch["soft"], batch["hard"],
                                     batch["has_gaze"], 1.0, criterion)
            optims[variant].zero_grad(set_to_none=True)
            loss.backward()
            optims[variant].step()
            if step >= args.warmup:
                times[variant].append(time.perf_counter() - t0)
        if step >= args.warmup:
            times["batch_assembly"].append(assembly)
    return {k: {"median_ms": 1000 * float(np.median(v)), "p90_ms": 1000 * float(
        np.percentile(v, 90)), "n": len(v)} for k, v in times.items()}


def doc_section(result: Dict[str, Any]) -> str:
    """Markdown for the BENCHMARKS.md section."""
    rows = result["times"]
    base = rows["float32"]["median_ms"]
    lines = [f"Command: `{result['command']}` ({result['date']}, load before: "
             f"{result['loadavg']}). CPU: {result['cpu']}; bf16 flags: "
             f"{', '.join(result['cpu_flags']) or 'none'}; torch {result['torch']}, "
             f"{result['threads']} thread(s). {result['arch']}, loss {result['loss']}, batch "
             f"{result['batch_size']} at R = 64, real batches of {result['sources']}; "
             f"median over {rows['float32']['n']} steps, variants interleaved.",
             "", "| variant | ms per step (median) | p90 | vs float32 |", "|---|---|---|---|"]
    for variant in VARIANTS:
        r = rows[variant]
        lines.append(f"| {variant} | {r['median_ms']:.0f} | {r['p90_ms']:.0f} | "
                     f"{base / r['median_ms']:.2f}x |")
    r = rows["batch_assembly"]
    lines.append(f"| batch assembly alone (make_batch) | {r['median_ms']:.1f} | "
                 f"{r['p90_ms']:.1f} | {100 * r['median_ms'] / base:.1f} % of a step |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Time the variants; print, and write JSON / the doc section."""
    from skd_saliency_ros.core.errors import run_reporting_user_errors
    from skd_saliency_ros.core.output_paths import Output, check_outputs
    from bench.report import write_json_and_doc

    parser = argparse.ArgumentParser(prog="python -m bench.train_step", description=__doc__)
    parser.add_argument("--arch", default="skd-paper")
    parser.add_argument("--loss", default="kld")
    parser.add_argument("--cc-weight", type=float, default=1.0)
    parser.add_argument("--teacher", default="tinyhd-m")
    parser.add_argument("--sources", default="car10,bike1,UAVDT_S1301",
                        help="training sources to draw batches from (cached teacher maps)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--doc", type=Path, default=None,
                        help=f"Markdown file whose {SECTION} section is replaced")
    args = parser.parse_args(argv)

    def body() -> int:
        import torch

        check_outputs([Output("--json", args.json, regenerated=True),
                       Output("--doc", args.doc, regenerated=True)])
        result = {"command": "python -m bench.train_step " + " ".join(sys.argv[1:]),
                  "date": datetime.date.today().isoformat(),
                  "loadavg": " ".join(f"{v:.2f}" for v in os.getloadavg()),
                  "cpu": platform.processor() or platform.machine(), "cpu_flags": cpu_flags(),
                  "torch": torch.__version__, "threads": args.threads, "arch": args.arch,
                  "loss": args.loss, "batch_size": args.batch_size, "sources": args.sources,
                  "times": time_steps(args)}
        for name, r in result["times"].items():
            print(f"{name:22s} {r['median_ms']:8.1f} ms (p90 {r['p90_ms']:.1f})", flush=True)
        write_json_and_doc(result, args.json, args.doc, SECTION,
                           doc_section(result) if args.doc else "")
        return 0

    return run_reporting_user_errors("python -m bench.train_step", body)


if __name__ == "__main__":
    sys.exit(main())
