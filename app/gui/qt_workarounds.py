"""Work-arounds for bugs of the Qt bindings in use (no Qt import here: call them before or after).

PySide6 6.12 on Python 3.11: every call of a Qt method that returns nothing
(``processEvents``, ``QTimer.start``, ``QWidget.show``, ...) drops one reference
to ``None`` without having taken it, as if ``None`` were immortal (it is from
Python 3.12 on). After enough calls Python aborts with "Fatal Python error:
none_dealloc". :func:`guard_none_refcount` gives ``None`` more references than
any session can use up.

PySide6's import hook (its ``__feature__`` support) asks of every module
imported after Qt whether its source mentions PySide6, through
``inspect.getsource``, which keeps every line of every such module in
``linecache`` for the rest of the session: about 70 MB once napari is loaded.
:func:`read_sources_without_caching` asks the same question of the file itself.
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


def read_sources_without_caching() -> None:
    """Make PySide6's import hook read a module's file directly, so no source stays in linecache; idempotent.

    Call after PySide6 is imported; clears what the hook cached before.
    """
    import linecache

    feature = sys.modules.get("shibokensupport.feature")
    check = getattr(feature, "_mod_uses_pyside", None)
    if check is None or getattr(check, "reads_file", False):
        return

    def mentions_pyside(module) -> bool:
        """The same answer as the hook's own check: a module with Python source that names PySide6."""
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or not path.endswith(".py"):
            return False  # built in, compiled or without a file: inspect finds no source either
        try:
            with open(path, "rb") as handle:
                return b"PySide6" in handle.read()
        except OSError:
            return False

    mentions_pyside.reads_file = True  # type: ignore[attr-defined]
    feature._mod_uses_pyside = mentions_pyside
    linecache.clearcache()


def apply_qt_workarounds() -> None:
    """Both work-arounds above (call once PySide6 is imported); idempotent."""
    guard_none_refcount()
    read_sources_without_caching()
