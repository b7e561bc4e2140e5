"""Notifications that name the job, and progress with cancel in the status bar (real scheduler, real runner)."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMainWindow

from app.core.progress import StageError
from app.core.statuses import JobStatus
from app.gui.notifications import ERROR, INFO, SUCCESS, NotificationCard, install_notifications
from app.gui.worker import JobScheduler
from app.runner import Stage

S = JobStatus


def convert_stage(store, job, ctx):
    """A stage whose behaviour follows the job's name: ok, bad or slow."""
    steps = 400 if job.name == "slow" else 5
    for i in range(steps):
        ctx.check_cancelled()
        ctx.report((i + 1) / steps, f"block {i + 1} of {steps}")
        time.sleep(0.02)
        if job.name == "bad" and i == 2:
            raise StageError("scan_0003.tif: the file is truncated")
    return "converted in a test"


STAGES = (Stage("convert", S.UPLOADED, S.CONVERTING, S.CONVERTED, S.CONVERT_ERROR, f"{__name__}:convert_stage"),)


@pytest.fixture
def window(qtbot, store):
    scheduler = JobScheduler(store, max_threads=2, stages=STAGES)
    win = QMainWindow()
    win.setCentralWidget(QLabel("jobs"))
    win.resize(900, 600)
    notifier, area, progress = install_notifications(win, store, scheduler)
    win.scheduler, win.notifier, win.area, win.progress = scheduler, notifier, area, progress
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    scheduler.cancel_all()
    scheduler.wait(10000)


def uploaded_job(store, name):
    job = store.create_job(name)
    store.transition(job.id, S.UPLOADING)
    store.transition(job.id, S.UPLOADED)
    return job.id


def run_and_collect(qtbot, win, job_id):
    notes = []
    win.notifier.notified.connect(notes.append)
    with qtbot.waitSignal(win.scheduler.finished, timeout=20000):
        win.scheduler.submit(job_id)
    qtbot.waitUntil(lambda: bool(notes))
    return notes


def test_finished_task_notifies_with_the_job_name(qtbot, window, store):
    job_id = uploaded_job(store, "Ammonite A")
    seen_progress = []
    window.scheduler.progress.connect(lambda j, f, m: seen_progress.append(window.progress.isVisible()))
    notes = run_and_collect(qtbot, window, job_id)
    assert any(seen_progress), "the status bar showed the progress"
    note = notes[0]
    assert note.kind == SUCCESS and note.job_id == job_id
    assert "Ammonite A" in note.title and "converted" in note.title
    cards = window.findChildren(NotificationCard)
    assert len(cards) == 1 and cards[0].isVisible() and "Ammonite A" in cards[0].title.text()
    assert not window.progress.isVisible(), "nothing runs any more"
    assert store.get(job_id).status == S.CONVERTED.value


def test_failed_task_notifies_with_the_reason(qtbot, window, store):
    job_id = uploaded_job(store, "bad")
    notes = run_and_collect(qtbot, window, job_id)
    note = notes[0]
    assert note.kind == ERROR and "“bad” failed" == note.title
    assert "scan_0003.tif" in note.text and "truncated" in note.text
    card = window.findChildren(NotificationCard)[0]
    window.area.TIMEOUT_MS = 1
    qtbot.wait(50)
    assert card.isVisible(), "an error stays until dismissed"
    card.dismiss()
    qtbot.waitUntil(lambda: not window.findChildren(NotificationCard))
    assert store.get(job_id).status == S.CONVERT_ERROR.value


def test_cancel_from_the_status_bar(qtbot, window, store):
    job_id = uploaded_job(store, "slow")
    notes = []
    window.notifier.notified.connect(notes.append)
    window.scheduler.submit(job_id)
    qtbot.waitUntil(lambda: window.progress.isVisible() and window.progress.bar.value() > 0, timeout=10000)
    assert "slow" in window.progress.label.text()
    with qtbot.waitSignal(window.scheduler.finished, timeout=10000):
        qtbot.mouseClick(window.progress.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(notes))
    assert notes[0].kind == INFO and "slow" in notes[0].title and "cancelled" in notes[0].title
    assert store.get(job_id).status == S.UPLOADED.value
    assert not window.progress.isVisible()


def test_two_jobs_show_one_bar_and_a_count(qtbot, window, store):
    first, second = uploaded_job(store, "slow"), uploaded_job(store, "slow")
    window.scheduler.submit(first)
    window.scheduler.submit(second)
    qtbot.waitUntil(lambda: len(window.progress.active) == 2, timeout=10000)
    assert window.progress.others.text() == "+1 more"
    window.scheduler.cancel_all()
    qtbot.waitUntil(lambda: not window.scheduler.running_jobs(), timeout=10000)
    qtbot.waitUntil(lambda: not window.progress.isVisible())
