"""Shared fixtures: a fresh workspace, the real scans in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import app  # noqa: F401 - sets OMP_WAIT_POLICY before any test loads torch
import pytest

from app.gui.qt_workarounds import apply_qt_workarounds

apply_qt_workarounds()  # as the app does: None kept alive, no module sources cached by PySide6

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _unfreeze_objects():
    """A window's warm-up freezes the objects alive (app.core.memory): thaw them after each test,
    so that what one test leaves behind is still collected."""
    yield
    import gc

    gc.unfreeze()


@pytest.fixture(autouse=True)
def _own_settings_file(tmp_path_factory, monkeypatch):
    """The app's QSettings go to a fresh INI file per test, never the user's own."""
    monkeypatch.setenv("STRATA_SETTINGS", str(tmp_path_factory.mktemp("settings") / "strata.ini"))


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty workspace folder; STRATA_HOME points at it."""
    path = tmp_path / "ws"
    path.mkdir()
    monkeypatch.setenv("STRATA_HOME", str(path))
    return path


@pytest.fixture
def store(workspace):
    from app.store.jobs import JobStore

    s = JobStore(workspace)
    yield s
    s.close()


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a skip where it is absent (a user's fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (real scans are only on the project's machines)")
    return SHARED_DATA
