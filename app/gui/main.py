"""Starting the window: ``run_gui(workspace)`` is what ``main.py`` without arguments calls."""

from __future__ import annotations

import logging
import sys

from PySide6.QtWidgets import QApplication, QMessageBox

from app.core.workspace import APP_NAME

log = logging.getLogger(__name__)


def make_application() -> QApplication:
    """The running QApplication (created if needed), named and with the app icon."""
    from app.gui.main_window import app_icon, resource_path
    from app.gui.qt_workarounds import apply_qt_workarounds

    apply_qt_workarounds()  # else a long session ends in "Fatal Python error: none_dealloc"
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    app.setWindowIcon(app_icon())
    style = resource_path("style.qss")
    if style.exists() and not app.styleSheet():
        app.setStyleSheet(style.read_text(encoding="utf-8"))
    return app  # type: ignore[return-value]


def run_gui(workspace: str | None, with_sample: bool = False) -> int:
    """Open the workspace's window and run until it closes; returns the exit code."""
    from app.gui.main_window import MainWindow
    from app.gui.pages.base import AppContext
    from app.gui.settings import Preferences, startup_workspace
    from app.gui.worker import JobScheduler
    from app.store.jobs import JobStore

    app = make_application()
    try:
        store = JobStore(startup_workspace(workspace))  # --workspace, $STRATA_HOME, Settings, default
    except Exception as exc:  # noqa: BLE001 - say why in a box, not a traceback
        QMessageBox.critical(None, APP_NAME, f"The workspace {workspace or ''} could not be opened:\n{exc}")
        return 1
    if with_sample and not store.list_jobs():
        try:
            from app.stages.ingest import create_sample_job

            create_sample_job(store)
        except Exception as exc:  # noqa: BLE001 - the window opens anyway
            log.error("the sample job could not be made: %s", exc)
    scheduler = JobScheduler(store, max_threads=Preferences.load().worker_threads)
    window = MainWindow(AppContext(store, scheduler))
    window.show()
    from app.gui.comfort import install_comfort

    install_comfort(window)  # notifications, Help, Settings, remembered window state
    window.warm_up_pages()  # the napari viewer is made while the user looks at the job list
    scheduler.start_queued()
    window.refresh_jobs()
    try:
        return int(app.exec())
    finally:
        scheduler.cancel_all()
        scheduler.wait(5000)
        store.close()
