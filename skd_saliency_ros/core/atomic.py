"""Write a file all at once: readers see the old file or the complete new one, never half.

Every artefact the package writes (checkpoints, ONNX exports, teacher-map caches, gaze
files) goes through ``atomic_path``: the work happens on a temporary file beside the target,
which replaces the target only when the work succeeded; an interrupted or failed write
leaves nothing behind.  The result gets the umask's default mode (mkstemp makes 0600 files,
but these are shared data, not secrets).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def make_shareable(path: str | os.PathLike) -> None:
    """Give a file the mode a plain ``open(..., "w")`` would have (0666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path beside ``path``; it becomes ``path`` if the block succeeds.

    ``suffix``: the temporary name's ending, for writers that insist on one (``np.savez``
    appends ``.npz`` to any other name).  Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        make_shareable(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
