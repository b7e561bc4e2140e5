"""Work-arounds for bugs of the Qt bindings in use (no Qt import here: call them before or after).

PySide6 6.12 on Python 3.11: every call of a Qt method that returns nothing
(``processEvents``, ``QTimer.start``, ``QWidget.show``, ...) drops one reference
to ``None`` without having taken it, as if ``None`` were immortal (it is from
Python 3.12 on). After enough calls Python aborts with "Fatal Python error:
none_dealloc". :func:`guard_none_refcount` gives ``None`` more references than
any session can use up.
"""

from __future__ import annotations

import sys

#: References added to None: far more than void Qt calls in any session.
NONE_REFERENCES = 1 << 40


def guard_none_refcount() -> None:
    """Make ``None`` impossible to free on Python < 3.12 (where it is not immortal); idempotent."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return
    import ctypes

    refcount = ctypes.c_ssize_t.from_address(id(None))  # ob_refcnt is a PyObject's first field
    if refcount.value < NONE_REFERENCES:
        refcount.value += NONE_REFERENCES
