"""What every job page has: the app's context and the selected job."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtWidgets import QWidget

from app.gui.worker import JobScheduler
from app.store.jobs import JobStore


@dataclass
class AppContext:
    """Shared by the window and its pages."""

    store: JobStore
    scheduler: JobScheduler


class JobPage(QWidget):
    """A tab of the job view. Subclasses set ``title`` and override the hooks."""

    title = "Page"

    def __init__(self, app: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.app = app
        self.job_id: int | None = None
        app.scheduler.status_changed.connect(self._status_changed)

    def set_job(self, job_id: int | None) -> None:
        """Show another job (None: nothing selected)."""
        self.job_id = job_id
        self.job_changed(job_id)

    def job_changed(self, job_id: int | None) -> None:
        """Hook: the selected job changed."""

    def status_changed(self, job_id: int, old: str, new: str) -> None:
        """Hook: a job's status changed (any job; compare with ``self.job_id``)."""

    def job_updated(self, job_id: int) -> None:
        """Hook: fields of the shown job (its name, note, ...) changed, not its status."""

    def page_shown(self) -> None:
        """Hook: the tab became visible (start rendering)."""

    def page_hidden(self) -> None:
        """Hook: the tab was hidden (stop rendering)."""

    def shutdown(self) -> None:
        """Hook: the window closes; release viewers, render windows, threads."""

    def _status_changed(self, job_id: int, old: str, new: str) -> None:
        self.status_changed(job_id, old, new)
