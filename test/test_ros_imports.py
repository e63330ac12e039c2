"""The ROS layer loads torch only where it builds an engine.

Declaring the node's parameters, shaping its messages and running a camera's pipeline need
no model runtime, and importing torch costs seconds and hundreds of MB on a companion
computer; the node imports core.engine inside its engine builder only.  Each check imports
a module in a fresh interpreter (this one has long loaded torch) and reads ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the node itself too: its only torch import is the lazy one of the engine builder
TORCH_FREE = ("skd_saliency_ros.ros.params", "skd_saliency_ros.ros.camera_pipeline",
              "skd_saliency_ros.ros.node")
PROBE = ("import importlib, json, sys; importlib.import_module(sys.argv[1]); "
         "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))")


def torch_modules_after_import(module: str, env) -> list:
    """Return the torch modules loaded by importing ``module`` in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", PROBE, module], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"importing {module} failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_imports_without_torch(module, ros_env):
    """Importing the module loads no torch module at all."""
    loaded = torch_modules_after_import(module, ros_env)
    assert loaded == [], f"{module} loads torch ({len(loaded)} modules, e.g. {loaded[:3]})"


def test_the_probe_sees_torch(ros_env):
    """The check is not blind: the engine, which needs torch, is seen loading it."""
    assert "torch" in torch_modules_after_import("skd_saliency_ros.core.engine", ros_env)
