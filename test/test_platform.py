"""The runtime package runs on the Python that setup.py declares (python_requires).

No Python 3.10 installs here, so the check is static: vermin reports the minimum Python
version each construct and library call needs; every module under skd_saliency_ros/ and
launch/ (what a robot runs) must fit the declared floor.  The first version of this test
found ``hashlib.file_digest`` (3.11) on the default model's load path.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VERMIN = str(Path(sys.executable).with_name("vermin"))  # its console script (no __main__)


def _declared_floor() -> str:
    text = (REPO / "setup.py").read_text()
    match = re.search(r'python_requires=">=(\d+\.\d+)"', text)
    assert match, "setup.py declares no python_requires"
    return match.group(1)


def test_runtime_package_fits_the_declared_python():
    """Vermin finds nothing under skd_saliency_ros/ or launch/ that needs more than the floor."""
    floor = _declared_floor()
    assert floor == "3.10"  # Ubuntu 22.04 (Humble, JetPack 6); README's install section says so
    proc = subprocess.run([VERMIN, "--no-tips", "--eval-annotations",
                           "--violations", f"-t={floor}-", "skd_saliency_ros", "launch"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vermin_catches_a_newer_call(tmp_path):
    """The check can fail: a 3.11-only call in a module is reported against the 3.10 floor."""
    module = tmp_path / "new.py"
    module.write_text("import hashlib\n\n\ndef h(fh):\n"
                      "    return hashlib.file_digest(fh, 'sha256')\n")
    proc = subprocess.run([VERMIN, "--no-tips", "--violations",
                           "-t=3.10-", str(module)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "file_digest" in proc.stdout
