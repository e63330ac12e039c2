"""One way to hash a file's bytes: ties exported ONNX files, caches and cards to their sources.

Read in 1 MiB blocks with a plain loop rather than ``hashlib.file_digest``: that function is
new in Python 3.11, and the runtime package supports Python 3.10 (Ubuntu 22.04 / Humble /
JetPack 6 companion computers; test_platform.py checks the whole package with vermin).
"""

from __future__ import annotations

import hashlib
import os

BLOCK = 1 << 20


def file_hexdigest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Return the hex digest of the file's bytes with ``algorithm`` (any hashlib name)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
