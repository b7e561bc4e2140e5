"""Comfort in the real main window: notifications, Help, Settings (moving the workspace), window state."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app.core.statuses import JobStatus as S
from app.gui import comfort
from app.gui.help import AboutDialog
from app.gui.notifications import SUCCESS, NotificationCard
from app.gui.settings import SettingsDialog, app_settings
from app.pipeline.annotations import open_annotations
from app.store.relocate import is_workspace
from tests.gui.window_support import make_window, npy_source, stop_window, uploaded_job
from tests.store.test_relocate import make_workspace

pytestmark = pytest.mark.gui


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATA_SETTINGS", str(tmp_path / "settings.ini"))
    return tmp_path / "settings.ini"


@pytest.fixture
def comfy(qtbot, store, settings_file):
    win = make_window(qtbot, store)
    comfort.install_comfort(win)
    qtbot.wait(10)
    yield win
    stop_window(qtbot, win)


def test_a_finished_conversion_notifies_with_the_job_name(qtbot, comfy, store, tmp_path):
    job = uploaded_job(store, npy_source(tmp_path / "scans"), "Ammonite 7")
    notes = []
    comfy.comfort["notifier"].notified.connect(notes.append)
    with qtbot.waitSignal(comfy.scheduler.finished, timeout=20000):
        comfy.scheduler.submit(job.id)
    qtbot.waitUntil(lambda: bool(notes))
    assert notes[0].kind == SUCCESS and "Ammonite 7" in notes[0].title and "converted" in notes[0].title
    assert any("Ammonite 7" in c.title.text() for c in comfy.findChildren(NotificationCard))


def test_help_menu_has_shortcuts_and_the_about_box(qtbot, comfy):
    help_menu = comfy.menus["help"]
    texts = [a.text() for a in help_menu.actions()]
    assert "&Keyboard shortcuts…" in texts and any("About" in t for t in texts)
    seen = []

    def close_modal():
        dialog = QApplication.activeModalWidget()
        seen.append(dialog)
        dialog.reject()

    QTimer.singleShot(200, close_modal)
    comfy.comfort["about_action"].trigger()
    assert isinstance(seen[0], AboutDialog)


def test_moving_the_workspace_reopens_the_window_with_the_job(qtbot, tmp_path, settings_file, monkeypatch):
    from app.store.jobs import JobStore

    monkeypatch.delenv("STRATA_HOME", raising=False)
    old, new = tmp_path / "old", tmp_path / "new"
    job_id, paint = make_workspace(old)
    store = JobStore(old)
    for status in (S.UPLOADING, S.UPLOADED, S.CONVERTING, S.CONVERTED):
        store.transition(job_id, status)
    win = make_window(qtbot, store)
    comfort.install_comfort(win)
    win.select_job(job_id)

    win.comfort["settings_action"].trigger()
    dialog = win.active_dialog
    assert isinstance(dialog, SettingsDialog) and dialog.isVisible()
    dialog.workspace_edit.setText(str(new))
    dialog.set_transfer(SettingsDialog.MOVE)
    dialog.accept()
    qtbot.waitUntil(lambda: bool(comfort._OPEN_WINDOWS), timeout=30000)
    reopened = comfort._OPEN_WINDOWS[-1]
    qtbot.addWidget(reopened)
    try:
        assert not win.isVisible() and reopened.isVisible()
        assert reopened.store.workspace.root == new.resolve()
        assert not is_workspace(old)
        reopened.select_job(job_id)
        assert reopened.current_job_id() == job_id
        ws = reopened.store.workspace
        np.testing.assert_array_equal(open_annotations(ws.annotations_path(job_id))[:], paint)
        summary = reopened.store.summary(job_id)
        assert summary["status"] == S.CONVERTED.value
        assert summary["segmentations"][0]["path"].startswith(str(new.resolve()))
    finally:
        stop_window(qtbot, reopened)
        comfort._OPEN_WINDOWS.clear()
        reopened.store.close()
        store.close()
    assert app_settings().value("preferences/workspace") == str(new.resolve())


def test_the_window_comes_back_with_the_last_job(qtbot, store, settings_file, tmp_path):
    first = uploaded_job(store, npy_source(tmp_path / "scans", "a.npy"), "Ammonite")
    second = uploaded_job(store, npy_source(tmp_path / "scans", "b.npy"), "Trilobite")
    win = make_window(qtbot, store)
    comfort.install_comfort(win)
    qtbot.wait(10)
    win.select_job(first.id)
    win.resize(760, 540)  # pytest-xvfb's screen is 800 x 600; the window may keep a larger minimum
    qtbot.wait(20)
    size = (win.width(), win.height())
    stop_window(qtbot, win)

    again = make_window(qtbot, store)
    comfort.install_comfort(again)
    try:
        qtbot.waitUntil(lambda: again.current_job_id() == first.id, timeout=3000)
        assert (again.width(), again.height()) == size
        assert second.id != first.id
    finally:
        stop_window(qtbot, again)
