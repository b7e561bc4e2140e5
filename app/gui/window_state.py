"""The main window remembers its size, splitter positions, last open job and page (QSettings).

:func:`attach_window_state` restores what was saved and saves again when the
window closes. The last job is kept per workspace folder, so switching
workspaces never selects a job id from another one. The window is expected to
offer ``current_job_id()`` and ``select_job(job_id)``; without them only the
geometry and splitters are kept.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QEvent, QObject, QSettings
from PySide6.QtWidgets import QMainWindow, QSplitter, QWidget

from app.gui.settings import app_settings


def _workspace_key(workspace: str | os.PathLike) -> str:
    return hashlib.sha1(str(Path(workspace).expanduser().resolve()).encode()).hexdigest()[:12]


def _splitter_keys(window: QWidget) -> dict[str, QSplitter]:
    keys: dict[str, QSplitter] = {}
    for index, splitter in enumerate(window.findChildren(QSplitter)):
        keys[splitter.objectName() or f"splitter{index}"] = splitter
    return keys


class WindowState(QObject):
    """Saves and restores one window's state in QSettings."""

    def __init__(
        self,
        window: QWidget,
        workspace: str | os.PathLike | None = None,
        settings: QSettings | None = None,
    ) -> None:
        super().__init__(window)
        self.window = window
        self.settings = settings or app_settings()
        self.workspace = workspace

    def _job_key(self) -> str | None:
        return f"workspaces/{_workspace_key(self.workspace)}/last_job" if self.workspace else None

    def save(self) -> None:
        """Write the window's geometry, splitters and current job."""
        s = self.settings
        s.setValue("window/geometry", self.window.saveGeometry())
        if isinstance(self.window, QMainWindow):
            s.setValue("window/state", self.window.saveState())
        for key, splitter in _splitter_keys(self.window).items():
            s.setValue(f"window/splitters/{key}", splitter.saveState())
        page = self.current_page()
        if page:
            s.setValue("window/page", page)
        job_key = self._job_key()
        current = getattr(self.window, "current_job_id", None)
        if job_key and callable(current):
            job_id = current()
            if job_id is None:
                s.remove(job_key)
            else:
                s.setValue(job_key, int(job_id))
        s.sync()

    def restore_layout(self) -> bool:
        """Geometry and splitters; returns whether anything was saved before."""
        s = self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.window.restoreGeometry(geometry)
        state = s.value("window/state")
        if isinstance(self.window, QMainWindow) and isinstance(state, QByteArray):
            self.window.restoreState(state)
        for key, splitter in _splitter_keys(self.window).items():
            saved = s.value(f"window/splitters/{key}")
            if isinstance(saved, QByteArray) and not saved.isEmpty():
                splitter.restoreState(saved)
        return isinstance(geometry, QByteArray)

    def current_page(self) -> str | None:
        """Title of the job page in front (windows with ``pages`` and ``show_page``)."""
        for title, page in (getattr(self.window, "pages", None) or {}).items():
            if page.isVisibleTo(self.window):
                return title
        return None

    def restore_page(self) -> str | None:
        """Bring the page that was in front last time to the front again."""
        title = self.settings.value("window/page")
        show = getattr(self.window, "show_page", None)
        if not title or not callable(show) or title not in (getattr(self.window, "pages", None) or {}):
            return None
        show(str(title))
        return str(title)

    def last_job(self) -> int | None:
        job_key = self._job_key()
        if not job_key:
            return None
        value = self.settings.value(job_key)
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    def restore_job(self) -> int | None:
        """Select the last open job if it still exists; returns its id."""
        job_id = self.last_job()
        select = getattr(self.window, "select_job", None)
        if job_id is None or not callable(select):
            return None
        try:
            selected = select(job_id)
        except LookupError:
            return None
        if selected is False:
            return None
        current = getattr(self.window, "current_job_id", None)
        if callable(current) and current() != job_id:
            return None
        return job_id

    def restore(self) -> int | None:
        """Layout, last job and front page; returns the job id selected, if any."""
        self.restore_layout()
        job_id = self.restore_job()
        self.restore_page()
        return job_id

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if watched is self.window and event.type() == QEvent.Type.Close:
            self.save()
        return False


def attach_window_state(
    window: QWidget,
    workspace: str | os.PathLike | None = None,
    settings: QSettings | None = None,
    restore: bool = True,
) -> WindowState:
    """Restore the window's saved state now and save it when the window closes."""
    state = WindowState(window, workspace, settings)
    if restore:
        state.restore()
    window.installEventFilter(state)
    return state
