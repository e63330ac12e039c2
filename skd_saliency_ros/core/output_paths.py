"""Where a command may write: never onto what it reads, never twice to one place, never unasked.

Every command line (saliency_replay, ``python -m training <step>``, the demo, the benchmarks)
names every path it will write -- also the ones it derives, such as a plot beside a doc -- and
every path it reads, and calls :func:`check_outputs` once, before any work:

* an output that equals, holds or sits inside an input is refused: writing it would replace
  or change the input (``--json BAG/metadata.yaml`` would make the bag unreadable, ``--out``
  a folder holding the input would delete it);
* two outputs at one place (or one inside the other) are refused: the second write would
  destroy the first, or fail after all the work;
* an existing output is refused without ``--overwrite``, except the ones a command rewrites by
  design on every run (a doc section and its plot, a benchmark's JSON, a cache folder);
* a file output that is an existing folder, or that lies under an existing file, is refused
  even with ``--overwrite``: the write could only fail, after all the work.

Paths are compared resolved (symbolic links followed), so two spellings of one place match.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Tuple, Union

from skd_saliency_ros.core.errors import SkdError

PathLike = Union[str, os.PathLike]


class OutputPathError(SkdError, ValueError):
    """An output path that would destroy an input, another output, or an existing file."""


@dataclass(frozen=True)
class Output:
    """One path a command writes, with the option that names it (for the message).

    ``folder``: written as a whole folder (a bag), so an existing folder there is replaced,
    not refused as "is a directory".  ``regenerated``: rewritten by design on every run (a
    doc section, its plot, a benchmark result, a cache), so it may exist without
    ``--overwrite``; it must still keep clear of the inputs and the other outputs.
    """

    label: str
    path: Optional[PathLike]
    folder: bool = False
    regenerated: bool = False


def _nested(a: Path, b: Path) -> bool:
    """Return True when resolved ``a`` and ``b`` are one place or one lies inside the other."""
    return a == b or a in b.parents or b in a.parents


def _resolved(items) -> List[Tuple[str, Path, object]]:
    """Return (label, resolved path, item) of every item whose path is given."""
    out = []
    for item in items:
        label, path = (item.label, item.path) if isinstance(item, Output) else item
        if path is not None:
            out.append((label, Path(path).resolve(), item))
    return out


def _check_place(label: str, path: Path, given: PathLike, out: Output, overwrite: bool) -> None:
    """Refuse what the write itself would destroy or fail on."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{label} {given}: {parent} is a file, not a folder; "
                                      "the output cannot be written under it")
            break
    if not out.folder and path.is_dir():
        raise OutputPathError(f"{label} {given}: is a folder; give a file name")
    if os.path.lexists(given) and not (overwrite or out.regenerated):
        raise OutputPathError(f"{label} {given}: already exists; pass --overwrite to replace "
                              "it (refusing to overwrite it otherwise)")


def check_outputs(outputs: Iterable[Output], inputs: Iterable[Tuple[str, Optional[PathLike]]]
                  = (), overwrite: bool = False) -> None:
    """Refuse, before any work, every output that would destroy something the user has.

    ``inputs``: (label, path) of every file or folder the command reads (None: not given).
    Raises :class:`OutputPathError` naming the option and the path; see the module docstring
    for the rules.
    """
    outputs = [o for o in outputs if o.path is not None]
    sources = _resolved(inputs)
    targets = _resolved(outputs)
    for label, path, out in targets:
        for src_label, src, _ in sources:
            if _nested(path, src):
                raise OutputPathError(f"{label} {out.path}: output would overwrite or nest "
                                      f"with the {src_label} {src}")
    for i, (label, path, out) in enumerate(targets):
        for other_label, other, other_out in targets[i + 1:]:
            if _nested(path, other):
                raise OutputPathError(f"{label} {out.path} and {other_label} {other_out.path}: "
                                      "two outputs at the same place (or one inside the "
                                      "other); give each its own path")
    for label, path, out in targets:
        _check_place(label, path, out.path, out, overwrite)
