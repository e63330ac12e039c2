"""Default locations of the shared data bundle and the on-disk cache of the training pipeline."""

from __future__ import annotations

import os
from pathlib import Path

from skd_saliency_ros.core.hashing import file_hexdigest

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """Shared data bundle: ``$SKD_DATA_DIR``, else ``<repo>/../shared/data`` (as in the tests)."""
    env = os.environ.get("SKD_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def default_cache_dir() -> Path:
    """Teacher-map and frame cache: ``$SKD_CACHE_DIR``, else ``<repo>/.cache/skd`` (ignored)."""
    env = os.environ.get("SKD_CACHE_DIR")
    return Path(env) if env else REPO_ROOT / ".cache" / "skd"


#: in manifests and teacher YAMLs: the shared data bundle (``--data-dir``, else the default)
DATA_DIR_TOKEN = "{data_dir}"


def expand_data_dir(text, data_dir=None) -> str:
    """Replace ``{data_dir}`` in a path written in a YAML file by the data bundle's path."""
    root = data_dir if data_dir is not None else default_data_dir()
    return str(text).replace(DATA_DIR_TOKEN, str(root))


def file_sha1(path: Path) -> str:
    """SHA-1 of a file's bytes (model files, gaze files)."""
    return file_hexdigest(path, "sha1")
