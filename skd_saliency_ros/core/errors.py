"""One root for the errors that are the user's: bad files, options, data, models.

Every command line (saliency_replay, ``python -m training``, the benchmarks) reports any
``SkdError`` as one line naming the file and the problem and exits 2; anything else is a bug
and keeps its traceback.  Each error class also keeps its natural built-in base (ValueError
for bad values, RuntimeError for things that cannot run), so ``except ValueError`` still works.
A missing file (``FileNotFoundError``) is the user's too.
"""

from __future__ import annotations

import sys
from typing import Callable


class SkdError(Exception):
    """Base class of every user-facing error of skd_saliency_ros and its tools."""


class StartupError(SkdError, RuntimeError):
    """A configuration or model problem that must stop a node before it serves."""


def is_user_error(exc: BaseException) -> bool:
    """Return True when ``exc`` should be reported as one line instead of a traceback."""
    return isinstance(exc, (SkdError, FileNotFoundError))


def run_reporting_user_errors(prog: str, func: Callable[[], int]) -> int:
    """Run a command's body: a user error prints ``<prog>: error: ...`` and returns 2.

    Any other exception is a bug and propagates with its traceback.
    """
    try:
        return int(func() or 0)
    except Exception as exc:  # noqa: BLE001 - only user errors (SkdError) become one line
        if is_user_error(exc):
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        raise
