"""Handing freed memory back to the operating system, and keeping full garbage collections short."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
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


def freeze_long_lived() -> None:
    """Collect garbage once, then leave every object alive now out of later collections.

    After start-up the heap holds a few million long-lived objects (Qt wrappers,
    napari, numpy), and each full collection walks them all: 120-170 ms with every
    thread stopped, felt as a stutter in a brush stroke or a late stroke on disk.
    Frozen (``gc.freeze``), they are skipped; objects made later are collected as
    before, and frozen ones are still freed when nothing refers to them.
    """
    gc.collect()
    gc.freeze()
