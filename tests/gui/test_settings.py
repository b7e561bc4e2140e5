"""The Settings dialog: preferences in QSettings, and moving the workspace with its jobs."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.statuses import JobStatus
from app.gui.settings import Preferences, SettingsDialog, app_settings, startup_workspace
from app.pipeline.annotations import open_annotations
from app.pipeline.volume import open_volume
from app.store.jobs import JobStore
from app.store.relocate import is_workspace
from tests.store.test_relocate import make_workspace


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """QSettings in a fresh INI file, never the user's own."""
    monkeypatch.setenv("STRATA_SETTINGS", str(tmp_path / "settings.ini"))
    return app_settings()


def open_dialog(qtbot, workspace, settings) -> SettingsDialog:
    dialog = SettingsDialog(workspace, settings)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_preferences_are_stored_and_shown_again(qtbot, tmp_path, settings):
    dialog = open_dialog(qtbot, tmp_path, settings)
    assert not dialog.move_box.isVisible(), "no move offered while the folder is unchanged"
    dialog.threads.setValue(3)
    dialog.model_kind.setCurrentIndex(dialog.model_kind.findData("deep"))
    dialog.smoothing.setValue(0.25)
    dialog.decimation.setValue(40)
    with qtbot.waitSignal(dialog.preferences_changed) as sent:
        dialog.accept()
    prefs = Preferences.load(app_settings())
    assert sent.args[0] == prefs
    assert (prefs.worker_threads, prefs.model_kind, prefs.mesh_smoothing, prefs.mesh_decimation) == (3, "deep", 0.25, 0.4)

    again = open_dialog(qtbot, tmp_path, app_settings())
    assert again.threads.value() == 3
    assert again.model_kind.currentData() == "deep"
    assert again.decimation.value() == 40


def test_bad_stored_values_fall_back_to_defaults(settings):
    settings.setValue("preferences/worker_threads", "many")
    settings.setValue("preferences/model_kind", "huge")
    settings.setValue("preferences/mesh_decimation", 7)
    prefs = Preferences.load(settings)
    assert prefs.model_kind == "quick" and prefs.worker_threads >= 1 and prefs.mesh_decimation == 1.0


def test_startup_workspace_order(tmp_path, settings, monkeypatch):
    Preferences(workspace=str(tmp_path / "chosen")).save(settings)
    monkeypatch.delenv("STRATA_HOME", raising=False)
    assert startup_workspace(None, settings) == tmp_path / "chosen"
    assert startup_workspace(tmp_path / "cli", settings) == tmp_path / "cli"
    monkeypatch.setenv("STRATA_HOME", str(tmp_path / "env"))
    assert startup_workspace(None, settings) == tmp_path / "env"


@pytest.mark.parametrize("how", [SettingsDialog.COPY, SettingsDialog.MOVE])
def test_moving_the_workspace_keeps_the_job_with_paint_and_results(qtbot, tmp_path, settings, how, monkeypatch):
    monkeypatch.delenv("STRATA_HOME", raising=False)
    old, new = tmp_path / "old", tmp_path / "new"
    job_id, paint = make_workspace(old)
    dialog = open_dialog(qtbot, old, settings)
    dialog.workspace_edit.setText(str(new))
    assert dialog.move_box.isVisible() and dialog.copy_radio.isEnabled()
    dialog.set_transfer(how)
    with qtbot.waitSignal(dialog.workspace_changed, timeout=30000) as sent:
        dialog.accept()
    assert sent.args == [str(new.resolve())]
    assert Preferences.load(app_settings()).workspace == str(new.resolve())
    assert startup_workspace(None, app_settings()) == new.resolve()
    assert is_workspace(old) == (how == SettingsDialog.COPY)

    store = JobStore(new)
    try:
        job = store.get(job_id)
        assert job.name == "Ammonite" and job.status == JobStatus.PENDING.value
        ws = store.workspace
        np.testing.assert_array_equal(open_annotations(ws.annotations_path(job_id))[:], paint)
        seg = store.summary(job)["segmentations"][0]
        assert open_volume(seg["path"]).levels[0].shape == paint.shape
        assert seg["path"].startswith(str(new.resolve()))
    finally:
        store.close()


def test_existing_workspace_opens_as_it_is(qtbot, tmp_path, settings):
    old, other = tmp_path / "old", tmp_path / "other"
    make_workspace(old)
    JobStore(other).close()
    dialog = open_dialog(qtbot, old, settings)
    dialog.workspace_edit.setText(str(other))
    assert not dialog.copy_radio.isEnabled() and dialog.empty_radio.isChecked()
    with qtbot.waitSignal(dialog.workspace_changed):
        dialog.accept()
    assert is_workspace(old), "nothing is copied or removed"


def test_a_file_as_workspace_is_refused_with_its_name(qtbot, tmp_path, settings):
    old = tmp_path / "old"
    make_workspace(old)
    bad = tmp_path / "notes.txt"
    bad.write_text("not a folder")
    dialog = open_dialog(qtbot, old, settings)
    dialog.workspace_edit.setText(str(bad))
    dialog.accept()
    assert dialog.isVisible()
    assert str(bad) in dialog.message.text() and "not a folder" in dialog.message.text()
    assert Preferences.load(app_settings()).workspace == ""


def test_running_job_blocks_the_move_with_a_message(qtbot, tmp_path, settings):
    old, new = tmp_path / "old", tmp_path / "new"
    make_workspace(old)
    store = JobStore(old)
    store.transition(store.find("Ammonite").id, JobStatus.UPLOADING)
    store.close()
    dialog = open_dialog(qtbot, old, settings)
    dialog.workspace_edit.setText(str(new))
    dialog.accept()
    qtbot.waitUntil(lambda: not dialog.busy, timeout=30000)
    assert "running" in dialog.message.text()
    assert dialog.isVisible() and is_workspace(old) and not new.exists()


def test_cancel_during_the_copy_keeps_the_old_workspace(qtbot, tmp_path, settings):
    old, new = tmp_path / "old", tmp_path / "new"
    job_id, _ = make_workspace(old)
    extra = old / "jobs" / str(job_id) / "source"
    extra.mkdir(parents=True, exist_ok=True)
    for i in range(400):
        (extra / f"slice_{i:04d}.raw").write_bytes(b"\0" * 20000)
    dialog = open_dialog(qtbot, old, settings)
    dialog.workspace_edit.setText(str(new))
    dialog.set_transfer(SettingsDialog.MOVE)
    dialog.accept()
    assert dialog.busy
    dialog.reject()  # the Cancel button while copying
    qtbot.waitUntil(lambda: not dialog.busy, timeout=30000)
    assert "cancelled" in dialog.message.text()
    assert dialog.isVisible()
    assert is_workspace(old) and len(list(extra.iterdir())) == 400
    assert not new.exists()
    assert Preferences.load(app_settings()).workspace == ""
