"""Shared pytest fixtures: the real data bundle and an isolated ROS 2 environment."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """Location of the shared data bundle (SKD_DATA_DIR, default ../shared/data)."""
    return Path(os.environ.get("SKD_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the real data bundle; fail loudly (not skip) when it is missing."""
    path = data_dir()
    if not (path / "uav_gaze" / "car10_gaze.npz").is_file():
        pytest.fail(f"shared data bundle not found at {path}; set SKD_DATA_DIR")
    return path


@pytest.fixture()
def ros_env(tmp_path):
    """Environment for a ROS 2 child process: own domain, localhost discovery, venv prefix."""
    from skd_saliency_ros.core.processes import ros_child_env

    return ros_child_env(REPO_ROOT, log_dir=tmp_path / "ros_log")


@pytest.fixture(scope="session", autouse=True)
def shipped_weights_stay_untouched():
    """Fail the run if any test changed a shipped model file (they ship to every user)."""
    import hashlib

    weights = REPO_ROOT / "skd_saliency_ros" / "weights"

    def digests():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(weights.iterdir()) if p.is_file()}

    before = digests()
    yield
    changed = sorted(name for name, digest in digests().items() if before.get(name) != digest)
    assert not changed, f"tests modified shipped files in {weights}: {changed}"
