"""One rule for throttled warnings in both nodes: once per period per kind of problem.

rclpy's ``throttle_duration_sec`` is per call site, so an early "no attitude yet" would hide a
different problem ("stale") logged from the same line for the whole period, and a camera's
warning would hide another camera's.  Here the key is the kind of problem: given by the
caller, or the text with its numbers blanked out.  A line that ends a quiet period says how
many similar ones were suppressed.
"""

from __future__ import annotations

import math
import re
import threading
import time
from typing import Dict, Hashable, Optional, Tuple

WARN_PERIOD_S = 5.0
_NUMBER = re.compile(r"[-+]?\d[\d.e+-]*")


class WarnThrottle:
    """Log at most one message per key every ``period_s`` seconds (thread-safe)."""

    def __init__(self, logger, period_s: float = WARN_PERIOD_S):
        self.logger, self.period_s = logger, period_s
        self._last: Dict[Hashable, Tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, text: str, key: Optional[Hashable] = None,
                 level: str = "warning") -> None:
        """Log ``text`` at ``level`` unless its key was logged less than a period ago."""
        key = _NUMBER.sub("#", text) if key is None else key
        now = time.monotonic()
        with self._lock:  # the saliency node warns from the executor and the worker
            last, suppressed = self._last.get(key, (-math.inf, 0))
            emit = now - last >= self.period_s
            self._last[key] = (now, 0) if emit else (last, suppressed + 1)
        if emit:
            more = f" ({suppressed} similar messages suppressed)" if suppressed else ""
            getattr(self.logger, level)(text + more)
