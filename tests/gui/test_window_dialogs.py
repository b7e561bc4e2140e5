"""The New job and Rename dialogs: defaults, validation messages, the request they give."""

from __future__ import annotations

import zipfile

import pytest
from PySide6.QtWidgets import QDialogButtonBox

from app.gui.dialogs import FILES, FOLDER, ZIP, NewJobDialog, RenameDialog, check_sources, guess_kind

pytestmark = pytest.mark.gui


def ok_enabled(dialog) -> bool:
    return dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()


@pytest.fixture
def slices(tmp_path):
    folder = tmp_path / "Brain cube"
    folder.mkdir()
    for i in (1, 2, 10):
        (folder / f"slice_{i}.tif").write_bytes(b"II*\x00data")
    return folder


def test_empty_dialog_says_what_is_missing(qtbot):
    dialog = NewJobDialog()
    qtbot.addWidget(dialog)
    assert dialog.kind == FOLDER
    assert dialog.message_label.text() == "Choose a folder of slices."
    assert not ok_enabled(dialog)
    dialog.set_kind(ZIP)
    assert dialog.message_label.text() == "Choose a zip file."
    dialog.accept()  # refused while invalid
    assert dialog.result() == 0 and dialog.isVisible() is False


def test_folder_gives_a_default_name_and_a_request(qtbot, slices):
    dialog = NewJobDialog()
    qtbot.addWidget(dialog)
    dialog.set_sources([str(slices)])
    assert dialog.kind == FOLDER
    assert dialog.name_edit.text() == "Brain cube"
    assert dialog.message_label.text() == "" and ok_enabled(dialog)
    request = dialog.request()
    assert request.name == "Brain cube" and request.sources == [str(slices)]
    assert request.spacing is None and request.unit == ""

    dialog.spacing_box.setChecked(True)
    for spin, value in zip(dialog.spacing_spins, (0.65, 0.65, 0.65)):
        spin.setValue(value)
    dialog.unit_combo.setCurrentIndex(dialog.unit_combo.findData("nm"))
    request = dialog.request()
    assert request.spacing == (0.65, 0.65, 0.65) and request.unit == "nm"


def test_a_typed_name_is_kept_and_an_empty_one_refused(qtbot, slices, tmp_path):
    dialog = NewJobDialog()
    qtbot.addWidget(dialog)
    qtbot.keyClicks(dialog.name_edit, "My fossil")
    dialog.set_sources([str(slices)])
    assert dialog.name_edit.text() == "My fossil"
    dialog.name_edit.clear()
    assert dialog.message_label.text() == "Give the job a name."
    assert not ok_enabled(dialog)


def test_bad_sources_are_named_in_the_message(qtbot, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".DS_Store").write_bytes(b"")
    zero = tmp_path / "zero.tif"
    zero.write_bytes(b"")
    missing = tmp_path / "gone"
    assert check_sources(FOLDER, [str(empty)]) == f"The folder {empty} is empty."
    assert check_sources(FILES, [str(zero)]) == f"{zero} is empty (0 bytes)."
    assert check_sources(FOLDER, [str(missing)]) == f"{missing} does not exist."
    assert check_sources(ZIP, [str(zero)]) == "Choose one .zip file."
    assert "is a folder" in check_sources(FILES, [str(empty)])

    dialog = NewJobDialog(sources=[str(missing)])
    qtbot.addWidget(dialog)
    assert dialog.message_label.text() == f"{missing} does not exist."
    assert not ok_enabled(dialog)


def test_kinds_follow_the_dropped_paths(qtbot, tmp_path, slices):
    archive = tmp_path / "scan.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.tif", b"II*\x00")
    files = sorted(str(p) for p in slices.iterdir())
    assert guess_kind([slices]) == FOLDER
    assert guess_kind([archive]) == ZIP
    assert guess_kind(files) == FILES
    dialog = NewJobDialog(sources=[str(archive)])
    qtbot.addWidget(dialog)
    assert dialog.kind == ZIP and dialog.name_edit.text() == "scan" and ok_enabled(dialog)
    dialog.set_kind(FOLDER)  # the zip is not a folder: the choice is cleared
    assert dialog.sources() == [] and not ok_enabled(dialog)
    dialog.set_sources(files)
    assert dialog.kind == FILES and dialog.source_list.count() == 3 and ok_enabled(dialog)


def test_rename_dialog(qtbot):
    dialog = RenameDialog("old")
    qtbot.addWidget(dialog)
    assert dialog.name() == "old" and ok_enabled(dialog)
    dialog.name_edit.setText("  ")
    assert not ok_enabled(dialog) and "cannot be empty" in dialog.message_label.text()
    dialog.name_edit.setText(" new ")
    assert dialog.name() == "new"
