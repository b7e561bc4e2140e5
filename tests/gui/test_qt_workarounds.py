"""PySide6 work-arounds: the import hook no longer fills linecache; freed memory goes back."""

from __future__ import annotations

import importlib
import linecache
import sys

from app.core.memory import freeze_long_lived, return_freed_memory
from app.gui.qt_workarounds import apply_qt_workarounds


def _import_fresh(tmp_path, monkeypatch, name: str, text: str):
    (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return __import__(name)  # the import statement's way, which PySide6 hooks (import_module is not hooked)


def test_modules_imported_after_qt_leave_no_source_in_linecache(tmp_path, monkeypatch):
    import PySide6.QtCore  # noqa: F401 - the hook is PySide6's

    apply_qt_workarounds()
    module = _import_fresh(tmp_path, monkeypatch, "strata_probe_plain", "VALUE = 1\n")
    assert module.VALUE == 1
    assert module.__name__ in sys.modules["shibokensupport.feature"].pyside_feature_dict  # the hook saw it
    assert module.__file__ not in linecache.cache


def test_the_hook_still_tells_pyside_modules_apart(tmp_path, monkeypatch):
    import PySide6.QtCore  # noqa: F401

    apply_qt_workarounds()
    feature = sys.modules["shibokensupport.feature"]
    uses = _import_fresh(tmp_path, monkeypatch, "strata_probe_qt", "from PySide6 import QtCore\n")
    plain = _import_fresh(tmp_path, monkeypatch, "strata_probe_noqt", "import math\n")
    assert feature.pyside_feature_dict[uses.__name__] == 0  # may switch features (snake_case, ...)
    assert feature.pyside_feature_dict[plain.__name__] == -1  # ignored by the feature switch
    assert feature._mod_uses_pyside(sys) is False  # a built-in module has no source


def test_workarounds_are_idempotent():
    apply_qt_workarounds()
    check = sys.modules["shibokensupport.feature"]._mod_uses_pyside
    apply_qt_workarounds()
    assert sys.modules["shibokensupport.feature"]._mod_uses_pyside is check


def test_freed_memory_can_be_returned_on_linux():
    assert return_freed_memory() is sys.platform.startswith("linux")


def test_frozen_objects_are_skipped_and_later_garbage_still_collected():
    import gc
    import weakref

    class Node:
        pass

    gc.unfreeze()
    kept = [Node() for _ in range(1000)]
    freeze_long_lived()
    assert gc.get_freeze_count() >= len(kept)
    assert not any(gc.is_tracked(n) and n in gc.get_objects(generation=2) for n in kept[:3])
    later = Node()
    later.self = later  # a cycle made after the freeze
    ref = weakref.ref(later)
    del later
    gc.collect()
    assert ref() is None
    gc.unfreeze()
