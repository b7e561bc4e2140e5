"""Handing freed memory back to the operating system."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def return_freed_memory() -> bool:
    """Give the pages that the C allocator holds but no longer uses back to the system.

    glibc keeps freed memory for reuse, so after a burst of short-lived buffers
    (opening napari, reading planes) the resident size stays high; trimming
    takes a few milliseconds. Returns whether anything could be asked.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
