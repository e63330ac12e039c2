"""One rule for the command lines: which exceptions are the user's and get one line, exit 2.

An error is the user's when its class, or one of its bases, is named in the command's list
(a bad bag, a missing checkpoint, ...) or when a file it needs does not exist; anything else
is a bug and keeps its traceback.  Matching by name lets a command list error types of
modules it imports lazily.
"""

from __future__ import annotations

from typing import Iterable


def is_user_error(exc: BaseException, names: Iterable[str]) -> bool:
    """Return True when ``exc`` should be reported as one line instead of a traceback."""
    names = set(names)
    return isinstance(exc, FileNotFoundError) or any(cls.__name__ in names
                                                     for cls in type(exc).__mro__)
