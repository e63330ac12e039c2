"""One rule for throttled warnings in both nodes: once per period per kind of problem.

rclpy's ``throttle_duration_sec`` is per call site, so an early "no attitude yet" would hide a
different problem ("stale") logged from the same line for the whole period, and a camera's
warning would hide another camera's.  Here the key is the kind of problem: given by the
caller, or the text with its numbers blanked out.  A line that ends a quiet period says how
many similar ones were suppressed.

rclpy also remembers the severity of every call site (file and line) and raises
``ValueError: Logger severity cannot be changed between calls`` when one site logs at a
second severity.  A reset line (INFO) followed by a drop line (WARN) through one
``getattr(logger, level)(...)`` line therefore killed the node on a valid stream.  Each
severity has its own call site here (``_emit``), so any order of levels is safe.
"""

from __future__ import annotations

import math
import re
import threading
import time
from typing import Dict, Hashable, Optional, Tuple

WARN_PERIOD_S = 5.0
LEVELS = ("debug", "info", "warning", "error")
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
        if level not in LEVELS:
            raise ValueError(f"unknown log level {level!r}; one of {', '.join(LEVELS)}")
        key = _NUMBER.sub("#", text) if key is None else key
        now = time.monotonic()
        with self._lock:  # the saliency node warns from the executor and the worker
            last, suppressed = self._last.get(key, (-math.inf, 0))
            emit = now - last >= self.period_s
            self._last[key] = (now, 0) if emit else (last, suppressed + 1)
        if emit:
            more = f" ({suppressed} similar messages suppressed)" if suppressed else ""
            self._emit(level, text + more)

    def _emit(self, level: str, line: str) -> None:
        """Log ``line`` through the one call site of ``level`` (rclpy fixes a site's severity)."""
        if level == "debug":
            self.logger.debug(line)
        elif level == "info":
            self.logger.info(line)
        elif level == "warning":
            self.logger.warning(line)
        else:
            self.logger.error(line)
