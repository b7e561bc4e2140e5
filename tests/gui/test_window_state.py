"""The window remembers its size, splitter positions, the last open job and its page."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QMainWindow, QSplitter, QTabWidget

from app.gui.settings import app_settings
from app.gui.window_state import attach_window_state


class JobWindow(QMainWindow):
    """A small host window with a job list, a splitter and the main window's job API."""

    def __init__(self, store):
        super().__init__()
        self.store = store
        self.jobs = QListWidget()
        for job in store.list_jobs():
            item = QListWidgetItem(job.name)
            item.setData(256, job.id)
            self.jobs.addItem(item)
        splitter = QSplitter()
        splitter.setObjectName("mainSplitter")
        splitter.addWidget(self.jobs)
        self.tabs = QTabWidget()
        self.pages = {title: QLabel(title) for title in ("Overview", "Annotate", "3D")}
        for title, page in self.pages.items():
            self.tabs.addTab(page, title)
        splitter.addWidget(self.tabs)
        self.splitter = splitter
        self.setCentralWidget(splitter)

    def show_page(self, title):
        self.tabs.setCurrentWidget(self.pages[title])
        return self.pages[title]

    def current_job_id(self):
        item = self.jobs.currentItem()
        return item.data(256) if item else None

    def select_job(self, job_id):
        self.store.get(job_id)  # raises JobNotFound (a LookupError) for a deleted job
        for row in range(self.jobs.count()):
            if self.jobs.item(row).data(256) == job_id:
                self.jobs.setCurrentRow(row)
                return True
        return False


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATA_SETTINGS", str(tmp_path / "settings.ini"))
    return app_settings()


def open_window(qtbot, store, settings):
    win = JobWindow(store)
    qtbot.addWidget(win)
    win.resize(500, 400)
    state = attach_window_state(win, store.workspace.root, settings)
    win.show()
    qtbot.waitExposed(win)
    return win, state


def test_size_splitter_and_job_come_back(qtbot, store, settings):
    ids = [store.create_job(name).id for name in ("Ammonite", "Trilobite", "Crinoid")]
    win, _ = open_window(qtbot, store, settings)
    win.resize(740, 520)
    win.splitter.setSizes([300, 440])
    win.select_job(ids[1])
    win.show_page("Annotate")
    qtbot.wait(50)
    sizes = win.splitter.sizes()
    win.close()

    again, state = open_window(qtbot, store, app_settings())
    assert (again.width(), again.height()) == (740, 520)  # pytest-xvfb's screen is 800 x 600
    assert abs(again.splitter.sizes()[0] - sizes[0]) <= 2
    assert again.current_job_id() == ids[1]
    assert again.tabs.currentWidget() is again.pages["Annotate"]
    assert state.last_job() == ids[1]


def test_a_deleted_last_job_is_skipped(qtbot, store, settings):
    job_id = store.create_job("Gone").id
    store.create_job("Stays")
    win, _ = open_window(qtbot, store, settings)
    win.select_job(job_id)
    win.close()
    store.delete(job_id)
    again, state = open_window(qtbot, store, app_settings())
    assert again.current_job_id() is None
    assert state.restore_job() is None


def test_last_job_is_kept_per_workspace(qtbot, store, settings, tmp_path):
    from app.store.jobs import JobStore

    job_id = store.create_job("Ammonite").id
    win, _ = open_window(qtbot, store, settings)
    win.select_job(job_id)
    win.close()
    other = JobStore(tmp_path / "other")
    try:
        other.create_job("Other")
        again, state = open_window(qtbot, other, app_settings())
        assert state.last_job() is None and again.current_job_id() is None
    finally:
        other.close()
