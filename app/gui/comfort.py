"""Wires first-run and everyday comfort into the main window.

:func:`install_comfort` adds, to a shown :class:`~app.gui.main_window.MainWindow`:
notifications and status-bar progress with cancel, the Help menu (shortcuts,
About with licences and citation), File > Settings, and remembered window
state. Choosing another workspace in Settings reopens the window there
(:func:`reopen_in`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QMainWindow, QMenu

from app.gui.help import ShortcutsDialog
from app.gui.notifications import install_notifications
from app.gui.settings import Preferences, SettingsDialog, app_settings
from app.gui.window_state import attach_window_state

log = logging.getLogger(__name__)

#: Windows opened by a workspace switch (kept alive here; the first one is run_gui's).
_OPEN_WINDOWS: list[QMainWindow] = []


def _menu_add(window: QMainWindow, menu: str, action: QAction, before: QAction | None = None) -> None:
    """Add ``action`` to a menu of the window, before ``before`` when that is in the menu."""
    add = getattr(window, "add_menu_action", None)
    if callable(add):
        add(menu, action)
    else:
        window.menuBar().addMenu(menu).addAction(action)
    if isinstance(before, QAction):
        for owner in before.associatedObjects():
            if isinstance(owner, QMenu) and action in owner.actions():
                owner.removeAction(action)
                owner.insertAction(before, action)
                if menu.replace("&", "").lower() == "file":
                    owner.insertSeparator(before)


def install_comfort(window: QMainWindow, restore_state: bool = True) -> dict:
    """Add notifications, Help, Settings and remembered state to ``window``; returns the parts."""
    store, scheduler = window.store, window.scheduler
    notifier, area, progress = install_notifications(window, store, scheduler)

    shortcuts = QAction("&Keyboard shortcuts…", window)
    shortcuts.setShortcut(QKeySequence(QKeySequence.StandardKey.HelpContents))
    shortcuts.triggered.connect(lambda: ShortcutsDialog(window).exec())
    about = window.about_action  # the window's own About action opens AboutDialog
    _menu_add(window, "&Help", shortcuts, before=about)

    settings_action = QAction("&Settings…", window)
    settings_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Preferences))
    if settings_action.shortcut().isEmpty():
        settings_action.setShortcut(QKeySequence("Ctrl+,"))
    settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
    settings_action.triggered.connect(lambda: open_settings(window))
    _menu_add(window, "&File", settings_action, before=getattr(window, "quit_action", None))

    state = attach_window_state(window, store.workspace.root, restore=False)
    if restore_state:
        # After the first show, so the window's own first layout does not undo it.
        QTimer.singleShot(0, state.restore)
    parts = {
        "notifier": notifier,
        "notifications": area,
        "progress": progress,
        "shortcuts_action": shortcuts,
        "about_action": about,
        "settings_action": settings_action,
        "window_state": state,
    }
    window.comfort = parts
    return parts


def open_settings(window: QMainWindow) -> SettingsDialog:
    """Show the Settings dialog for the window's workspace (non-blocking)."""
    dialog = SettingsDialog(window.store.workspace.root, app_settings(), window)
    dialog.preferences_changed.connect(lambda prefs: apply_preferences(window, prefs))
    dialog.workspace_changed.connect(lambda path: QTimer.singleShot(0, lambda: reopen_in(window, path)))
    window.active_dialog = dialog
    dialog.open()
    return dialog


def apply_preferences(window: QMainWindow, prefs: Preferences) -> None:
    """Apply what can change while the window is open (the number of worker threads)."""
    window.scheduler.pool.setMaxThreadCount(max(1, prefs.worker_threads))


def reopen_in(window: QMainWindow, workspace: str | os.PathLike) -> QMainWindow | None:
    """Close ``window`` and open a new main window on ``workspace``; None if the user kept it open."""
    from app.gui.main_window import MainWindow
    from app.gui.pages.base import AppContext
    from app.gui.worker import JobScheduler
    from app.store.jobs import JobStore

    app = QApplication.instance()
    quit_on_close = app.quitOnLastWindowClosed()
    app.setQuitOnLastWindowClosed(False)
    try:
        if not window.close():
            return None
        store = JobStore(Path(workspace))
        scheduler = JobScheduler(store, max_threads=Preferences.load().worker_threads)
        new = MainWindow(AppContext(store, scheduler))
        new.show()
        install_comfort(new)
        scheduler.start_queued()
        new.refresh_jobs()
        new.status_message(f"Workspace: {store.workspace.root}", 8000)
    finally:
        app.setQuitOnLastWindowClosed(quit_on_close)
    _OPEN_WINDOWS.append(new)
    if window in _OPEN_WINDOWS:
        _OPEN_WINDOWS.remove(window)

    def shut_down() -> None:
        scheduler.cancel_all()
        scheduler.wait(5000)
        store.close()

    app.aboutToQuit.connect(shut_down)
    return new
