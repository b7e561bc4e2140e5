"""The Help menu: shortcuts, About with version, licences and the citation."""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QMenu

from app import __version__
from app.gui.help import COMPONENTS, AboutDialog, ShortcutsDialog, component_version, install_help_menu


def test_about_has_version_citation_and_licences(qtbot):
    dialog = AboutDialog()
    qtbot.addWidget(dialog)
    dialog.show()

    head = dialog.findChild(QLabel, "aboutHead")
    assert f"Strata {__version__}" in head.text()
    cite = dialog.findChild(QLabel, "citation").text()
    assert "During, Matelsky et al." in cite
    assert "Automated segmentation of synchrotron-scanned fossils" in cite and "Fossil Record 28, 2025" in cite
    assert dialog.licences.rowCount() == len(COMPONENTS)
    names = [dialog.licences.item(r, 0).text() for r in range(dialog.licences.rowCount())]
    assert any("napari" in n for n in names) and any("PyTorch" in n for n in names)
    torch_row = names.index("PyTorch")
    assert dialog.licences.item(torch_row, 1).text().startswith("2.")
    assert all(component_version(c) != "bundled" for c in COMPONENTS), "every component's version is known"
    dialog.copy_citation()
    from PySide6.QtGui import QGuiApplication

    assert "Fossil Record 28" in QGuiApplication.clipboard().text()


def test_shortcuts_list_the_window_actions_and_the_painting_keys(qtbot):
    win = QMainWindow()
    qtbot.addWidget(win)
    new_job = QAction("&New job…", win)
    new_job.setShortcut(QKeySequence("Ctrl+N"))
    win.addAction(new_job)
    actions = install_help_menu(win)
    assert [a.text() for a in actions] == ["&Keyboard shortcuts…", "&About Strata…"]
    assert [m.title() for m in win.menuBar().findChildren(QMenu)] == ["&Help"]
    dialog = ShortcutsDialog(win)
    qtbot.addWidget(dialog)
    rows = {(r[1], r[2]) for r in dialog.rows}
    assert ("Ctrl+N", "New job") in rows
    assert ("F1", "Keyboard shortcuts") in rows
    assert any(what == "Paint brush" for _, what in rows)
    assert dialog.table.rowCount() == len(dialog.rows)
