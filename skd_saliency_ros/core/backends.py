"""The inference backends and devices the engine offers, named without importing torch.

The parameter table (``ros/params.py``), the replay CLI and the engine all offer or check
these choices.  Running a model needs torch or onnxruntime; naming the choices must not, or
the ROS layer would load torch just to declare its parameters.
"""

from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "torch", "onnxruntime")
