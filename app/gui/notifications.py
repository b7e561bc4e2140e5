"""Telling the user about background work: notifications and the status-bar progress.

* :class:`JobNotifier` listens to the scheduler; when a job's work ends it
  posts a notification that names the job and says how it ended (finished,
  failed with the reason, or cancelled).
* :class:`NotificationArea` shows those as small cards in the window's
  bottom-right corner that fade after a few seconds (errors stay until
  closed), and as a desktop notification when the window is not active and
  the desktop has a tray.
* :class:`StatusBarProgress` shows the running job's progress in the status
  bar, with a button that cancels it.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QSystemTrayIcon,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.statuses import ERRORS, JobStatus, parse_status
from app.gui.worker import JobScheduler
from app.store.jobs import JobNotFound, JobStore

INFO, SUCCESS, ERROR = "info", "success", "error"
COLORS = {INFO: "#546e7a", SUCCESS: "#2e7d32", ERROR: "#c62828"}

#: What a job's resting status says about the work that ended.
DONE_WORDS = {
    JobStatus.UPLOADED: "imported",
    JobStatus.CONVERTED: "converted",
    JobStatus.TRAINED: "trained",
    JobStatus.SEGMENTED: "segmented",
    JobStatus.MESHED: "meshed",
    JobStatus.DONE: "done",
}

#: What the user can do next, when the stage left no message of its own.
NEXT_STEPS = {
    JobStatus.UPLOADED: "Imported; conversion follows.",
    JobStatus.CONVERTED: "Next: paint a few strokes of each material on the Annotate page.",
    JobStatus.TRAINED: "The model is ready; segmentation follows.",
    JobStatus.SEGMENTED: "Next: check the segmentation, then build the meshes.",
    JobStatus.MESHED: "The meshes are ready to view and export.",
    JobStatus.DONE: "Everything is done; export what you need.",
}


@dataclass(frozen=True)
class Notification:
    """One message about one job."""

    job_id: int
    kind: str
    title: str
    text: str


def describe_outcome(store: JobStore, job_id: int, failure: str | None = None) -> Notification:
    """How a job's work ended, in words that name the job."""
    try:
        job = store.get(job_id)
    except JobNotFound:
        return Notification(job_id, INFO, f"Job {job_id}", "was deleted")
    name = f"“{job.name}”"
    status = parse_status(job.status)
    if status in ERRORS or failure:
        reason = job.message or failure or "unknown error"
        return Notification(job_id, ERROR, f"{name} failed", reason)
    if (job.message or "").endswith("cancelled"):
        return Notification(job_id, INFO, f"{name}: cancelled", f"{job.message}; the job is back to {status.value}")
    word = DONE_WORDS.get(status, status.value.replace("_", " "))
    message = job.message if job.message and job.message.strip().lower() != word else ""
    return Notification(job_id, SUCCESS, f"{name} is {word}", message or NEXT_STEPS.get(status, "finished"))


class JobNotifier(QObject):
    """Turns the scheduler's signals into one :class:`Notification` per finished task."""

    notified = Signal(object)

    def __init__(self, store: JobStore, scheduler: JobScheduler, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self._failures: dict[int, str] = {}
        scheduler.failed.connect(self._on_failed)
        scheduler.finished.connect(self._on_finished)

    @Slot(int, str)
    def _on_failed(self, job_id: int, message: str) -> None:
        self._failures[job_id] = message

    @Slot(int)
    def _on_finished(self, job_id: int) -> None:
        self.notified.emit(describe_outcome(self.store, job_id, self._failures.pop(job_id, None)))


class NotificationCard(QFrame):
    """One notification: a coloured edge, a bold title, the text and a close button."""

    closed = Signal()

    def __init__(self, note: Notification, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.note = note
        self.setObjectName("NotificationCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet(
            "#NotificationCard { background: palette(base); border: 1px solid palette(mid);"
            f" border-left: 5px solid {COLORS[note.kind]}; border-radius: 4px; }}"
        )
        self.title = QLabel(f"<b>{_escape(note.title)}</b>")
        self.text = QLabel(_escape(note.text))
        self.text.setWordWrap(True)
        self.text.setFixedWidth(300)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.dismiss)
        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(close)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 8)
        layout.addLayout(head)
        layout.addWidget(self.text)
        self.setFixedWidth(340)

    def dismiss(self) -> None:
        self.hide()
        self.closed.emit()
        self.deleteLater()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class NotificationArea(QObject):
    """Stacks notification cards in the bottom-right corner of a window."""

    #: How long a card stays, in ms (errors stay until dismissed).
    TIMEOUT_MS = 6000
    MARGIN = 12
    MAX_CARDS = 4

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.window = window
        self.cards: list[NotificationCard] = []
        self.tray: QSystemTrayIcon | None = None
        window.installEventFilter(self)

    def show(self, note: Notification) -> NotificationCard:
        card = NotificationCard(note, self.window)
        card.closed.connect(lambda c=card: self._forget(c))
        self.cards.append(card)
        while len(self.cards) > self.MAX_CARDS:
            self.cards[0].dismiss()
        card.show()
        card.raise_()
        self._place()
        if note.kind != ERROR:
            QTimer.singleShot(self.TIMEOUT_MS, card, card.dismiss)
        self._desktop(note)
        return card

    def _desktop(self, note: Notification) -> None:
        if self.window.isActiveWindow() or not QSystemTrayIcon.isSystemTrayAvailable():
            return
        if self.tray is None:
            self.tray = QSystemTrayIcon(self.window.windowIcon(), self)
            self.tray.show()
        icon = QSystemTrayIcon.MessageIcon.Critical if note.kind == ERROR else QSystemTrayIcon.MessageIcon.Information
        self.tray.showMessage(note.title, note.text, icon, self.TIMEOUT_MS)

    def _forget(self, card: NotificationCard) -> None:
        if card in self.cards:
            self.cards.remove(card)
            self._place()

    def _place(self) -> None:
        bottom = self.window.height() - self.MARGIN
        if isinstance(self.window, QMainWindow) and self.window.statusBar().isVisible():
            bottom -= self.window.statusBar().height()
        for card in reversed(self.cards):
            card.adjustSize()
            bottom -= card.height()
            card.move(self.window.width() - card.width() - self.MARGIN, bottom)
            bottom -= 8

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if watched is self.window and event.type() == QEvent.Type.Resize:
            self._place()
        return False


class StatusBarProgress(QWidget):
    """Progress of running work in the status bar, with a cancel button.

    It follows the job that reported last; ``+N`` says how many others run.
    """

    def __init__(self, store: JobStore, scheduler: JobScheduler, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("StatusBarProgress")
        self.store = store
        self.scheduler = scheduler
        self.active: dict[int, tuple[float, str]] = {}
        self.shown_job: int | None = None
        self._names: dict[int, str] = {}
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setMaximumWidth(220)
        self.bar.setTextVisible(True)
        self.others = QLabel()
        self.cancel_button = QToolButton()
        self.cancel_button.setObjectName("statusCancel")
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Cancel the work on this job")
        self.cancel_button.clicked.connect(self.cancel_shown)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.others)
        layout.addWidget(self.cancel_button)
        scheduler.progress.connect(self._on_progress)
        scheduler.status_changed.connect(self._on_status)
        scheduler.finished.connect(self._on_finished)
        self.hide()

    def _name(self, job_id: int) -> str:
        if job_id not in self._names:
            try:
                self._names[job_id] = self.store.get(job_id).name
            except JobNotFound:
                self._names[job_id] = f"job {job_id}"
        return self._names[job_id]

    @Slot(int, float, str)
    def _on_progress(self, job_id: int, fraction: float, message: str) -> None:
        self.active[job_id] = (fraction, message)
        self.shown_job = job_id
        self._refresh()

    @Slot(int, str, str)
    def _on_status(self, job_id: int, old: str, new: str) -> None:
        self._names.pop(job_id, None)
        if self.scheduler.is_running(job_id):
            fraction, _ = self.active.get(job_id, (0.0, ""))
            self.active[job_id] = (0.0 if parse_status(new) != parse_status(old) else fraction, new.replace("_", " "))
            self.shown_job = job_id
            self._refresh()

    @Slot(int)
    def _on_finished(self, job_id: int) -> None:
        self.active.pop(job_id, None)
        if self.shown_job == job_id:
            self.shown_job = next(iter(self.active), None)
        self._refresh()

    def _refresh(self) -> None:
        if self.shown_job is None:
            self.hide()
            return
        fraction, message = self.active[self.shown_job]
        self.label.setText(f"{self._name(self.shown_job)}: {message}" if message else self._name(self.shown_job))
        self.bar.setValue(int(round(fraction * 1000)))
        self.bar.setFormat(f"{fraction * 100:.0f} %")
        others = len(self.active) - 1
        self.others.setText(f"+{others} more" if others > 0 else "")
        self.others.setVisible(others > 0)
        self.cancel_button.setEnabled(self.scheduler.is_running(self.shown_job))
        self.show()

    def cancel_shown(self) -> None:
        """Cancel the job whose progress is shown."""
        if self.shown_job is not None and self.scheduler.cancel(self.shown_job):
            self.cancel_button.setEnabled(False)
            self.label.setText(f"{self._name(self.shown_job)}: cancelling…")


def install_notifications(window: QMainWindow, store: JobStore, scheduler: JobScheduler):
    """Wire notifications and the status-bar progress into a main window."""
    notifier = JobNotifier(store, scheduler, window)
    area = NotificationArea(window)
    notifier.notified.connect(area.show)
    progress = StatusBarProgress(store, scheduler, window)
    window.statusBar().addPermanentWidget(progress)
    return notifier, area, progress
