"""Layer tables of the architectures in skd_saliency_ros.core.models.ARCHITECTURES, for the docs.

``python tools/arch_table.py --write`` rewrites the generated section of
docs/ARCHITECTURE.md; ``--check`` exits 1 when that section differs from what the code
builds now (test/test_bench.py runs it), so the document cannot drift from the models.

Each row is built by ``models.build_layers`` itself, so its parameter count is the real one.
The "source" column says who fixes each choice: T = the SKD paper's text, D = not in the
text, taken from the same group's public DIS network (../shared/PAPER.md), O = ours.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Dict, List, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from skd_saliency_ros.core.models import (ARCHITECTURES, build_layers, build_model,  # noqa: E402
                                          count_parameters, get_spec)

DOC = REPO_ROOT / "docs" / "ARCHITECTURE.md"
SECTION = "arch:tables"
TABLE_ARCHS = ("skd-paper", "skd-paper-prior", "skd-fast")
REFERENCE_R = 64

# Source of each layer choice, per architecture and part, in layer order.
_PAPER_STREAM = [
    "D width; T 3x3 kernels, ReLU after every conv",
    "D width",
    "D (LRN is not in the SKD text)",
    "T pool at layer 3; D 3x3 window, stride 2",
    "D width",
    "T pool at layer 5; D 3x3 window, stride 2",
    "D width",
    "D width",
    "D width",
]
_PAPER_HEAD = [
    "T 1x1 conv at layer 9 to reduce channels; D width",
    "T high-level conv; D width",
    "T high-level conv; D width",
    "T transposed conv; D 4x4, stride 2, width 8",
    "T transposed conv back to R x R; D 4x4, stride 2",
]
_FAST_STREAM = [
    "O replaces conv-conv-LRN-pool (stride-2 conv, no LRN)",
    "O replaces conv-pool (stride-2 conv)",
    "O width 64 (paper-like stream ends 64-64-128)",
    "O",
]
_FAST_HEAD = [
    "T 1x1 channel reduction kept; D width",
    "O one 3x3 conv instead of two",
    "O sub-pixel conv instead of transposed conv",
    "O sub-pixel conv to R x R, no activation",
]
SOURCES: Dict[str, Dict[str, List[str]]] = {
    "skd-paper": {"stream": _PAPER_STREAM, "head": _PAPER_HEAD},
    "skd-paper-prior": {"stream": _PAPER_STREAM, "head": _PAPER_HEAD},
    "skd-fast": {"stream": _FAST_STREAM, "head": _FAST_HEAD},
}
GENERAL_SOURCES = {
    "bn": "D: BatchNorm after every conv but the output (the SKD text does not mention BN)",
    "prior": "O: learned additive prior map (16x16, bilinearly resized, zero-initialised)",
    "pairing": "O: temporal input (t, t-1), causal; the paper pairs (t, t+1)",
}


def _describe(layer: Sequence) -> str:
    kind = layer[0]
    if kind == "conv":
        return f"conv {layer[2]}x{layer[2]}, stride {layer[3]}, {layer[1]} ch"
    if kind == "pool":
        return f"max-pool {layer[1]}x{layer[1]}, stride {layer[2]}"
    if kind == "lrn":
        return f"LRN, size {layer[1]}"
    if kind == "deconv":
        return f"transposed conv {layer[2]}x{layer[2]}, x{layer[3]}, {layer[1]} ch"
    if kind == "subpix":
        return (f"conv {layer[2]}x{layer[2]} -> {layer[1]}x{layer[3]}^2 ch + "
                f"pixel-shuffle x{layer[3]}")
    return str(layer)


def _size_after(layer: Sequence, size: int) -> int:
    kind = layer[0]
    if kind == "conv":
        return size // int(layer[3])
    if kind == "pool":
        return size // int(layer[2])
    if kind in ("deconv", "subpix"):
        return size * int(layer[3])
    return size


def part_rows(arch: str, part: str, in_ch: int, size: int, last_is_output: bool,
              sources: List[str]) -> tuple:
    """Rows (index, layer, output, params, source) of one layer list; returns (rows, ch, size)."""
    spec = get_spec(arch)
    layers = spec[part]
    rows = []
    ch = in_ch
    for index, layer in enumerate(layers):
        is_last = last_is_output and index == len(layers) - 1
        seq, out_ch = build_layers(ch, [layer], last_is_output=is_last)
        size = _size_after(layer, size)
        src = sources[index] if index < len(sources) else "O"
        rows.append((index + 1, _describe(layer), f"{out_ch} x {size} x {size}",
                     count_parameters(seq), src))
        ch = out_ch
    return rows, ch, size


def _table(rows) -> List[str]:
    lines = ["| # | layer | output (C x H x W) | params | source |", "|---|---|---|---|---|"]
    lines += [f"| {i} | {desc} | {out} | {params:,} | {src} |"
              for i, desc, out, params, src in rows]
    return lines


def arch_section(arch: str) -> str:
    """Markdown for one architecture: spatial stream, temporal stream, fusion head, totals."""
    spec = get_spec(arch)
    sources = SOURCES.get(arch, {"stream": [], "head": []})
    out = [f"### {arch}", ""]
    for other in TABLE_ARCHS[:TABLE_ARCHS.index(arch)]:
        base = get_spec(other)
        if base["stream"] == spec["stream"] and base["head"] == spec["head"]:
            fused = build_model("fused", arch)
            prior = (f"a learned prior map {spec['prior_size']}x{spec['prior_size']} "
                     f"({fused.prior.map.numel()} params)" if fused.prior is not None
                     else "no prior")
            out += [f"The layers of {other}, plus {prior}: fused "
                    f"{count_parameters(fused):,} params; students: spatial "
                    f"{count_parameters(build_model('spatial', arch)):,}, temporal "
                    f"{count_parameters(build_model('temporal', arch)):,}.", ""]
            return "\n".join(out)
    spatial, ch_s, size = part_rows(arch, "stream", 3, REFERENCE_R, False, sources["stream"])
    temporal, ch_t, _ = part_rows(arch, "stream", 6, REFERENCE_R, False, sources["stream"])
    head_in = ch_s + ch_t
    head, _, _ = part_rows(arch, "head", head_in, size, True, sources["head"])
    fused = build_model("fused", arch)
    prior = fused.prior.map.numel() if fused.prior is not None else 0
    out += [f"Spatial stream (frame t, 3 ch in, R = {REFERENCE_R}):", ""] + _table(spatial)
    out += ["", "Temporal stream (frames t and t-1 stacked, 6 ch in): same layers, "
            f"{sum(r[3] for r in temporal):,} params (the first conv sees 6 channels).", ""]
    out += [f"Fusion head (concatenated streams, {head_in} ch in; a student's head is the "
            f"same with {ch_s} ch in):", ""] + _table(head)
    prior_text = (f"learned prior map {spec['prior_size']}x{spec['prior_size']} "
                  f"({prior} params)" if prior else "no prior")
    out += ["", f"Totals: fused {count_parameters(fused):,} params = spatial stream "
            f"{sum(r[3] for r in spatial):,} + temporal stream {sum(r[3] for r in temporal):,}"
            f" + head {sum(r[3] for r in head):,} + {prior_text}. Students: spatial "
            f"{count_parameters(build_model('spatial', arch)):,}, temporal "
            f"{count_parameters(build_model('temporal', arch)):,}. Stream down-sampling "
            f"x{fused.factor} (R must be a multiple of {fused.factor}).", ""]
    return "\n".join(out)


def generated_section() -> str:
    """Build the whole generated block: legend plus one section per architecture."""
    missing = [a for a in TABLE_ARCHS if a not in ARCHITECTURES]
    if missing:
        raise SystemExit(f"tools/arch_table.py: architectures {missing} are not in "
                         "models.ARCHITECTURES")
    legend = ["Generated by `python tools/arch_table.py --write` from "
              "`skd_saliency_ros.core.models.ARCHITECTURES` (checked by test/test_bench.py). "
              "Source column: **T** fixed by the SKD paper's text, **D** not in the text, "
              "taken from the same group's DIS network, **O** our choice. Rows are numbered per "
              "table entry; the paper's layer numbers (pools at 3 and 5, 1x1 conv at 9) do "
              "not count the LRN.", ""]
    legend += [f"- {text}" for text in GENERAL_SOURCES.values()] + [""]
    return "\n".join(legend + [arch_section(a) for a in TABLE_ARCHS]).rstrip() + "\n"


def _split(text: str) -> tuple:
    begin, end = f"<!-- {SECTION}:begin -->", f"<!-- {SECTION}:end -->"
    if begin not in text or end not in text:
        raise SystemExit(f"{DOC}: lacks the markers {begin} ... {end}")
    head, rest = text.split(begin, 1)
    body, tail = rest.split(end, 1)
    return head + begin + "\n", body.lstrip("\n"), end + tail


def main(argv=None) -> int:
    """Print, --write or --check the generated section of docs/ARCHITECTURE.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="update docs/ARCHITECTURE.md")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/ARCHITECTURE.md is out of date")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    section = generated_section()
    if not (args.write or args.check):
        print(section)
        return 0
    if not args.doc.is_file():
        raise SystemExit(f"{args.doc}: no such file")
    head, body, tail = _split(args.doc.read_text())
    if args.check:
        if body != section:
            diff = "".join(difflib.unified_diff(body.splitlines(True), section.splitlines(True),
                                                "document", "generated", n=1))
            print(f"{args.doc} is out of date; run python tools/arch_table.py --write\n{diff}")
            return 1
        print(f"{args.doc}: layer tables match models.ARCHITECTURES")
        return 0
    args.doc.write_text(head + section + tail)
    print(f"updated {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
