"""The job list: a table model over the store's jobs and a progress-bar delegate."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, replace
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionProgressBar

from app.core.statuses import ERRORS, RUNNING, parse_status
from app.store.jobs import QUEUED, JobNotFound, JobStore
from app.store.models import Job

#: Role giving the job id of a row.
JOB_ID_ROLE = Qt.ItemDataRole.UserRole + 1
#: Role giving ``(fraction, busy)`` for the progress column.
PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 2

ERROR_COLOR = QColor("#c62828")
BUSY_COLOR = QColor("#1565c0")

UNIT_LABELS = {"um": "µm", "micron": "µm", "micrometer": "µm", "micrometre": "µm"}


def status_label(status: str) -> str:
    """``"convert_error"`` -> ``"Convert error"``."""
    return status.replace("_", " ").capitalize()


def unit_label(unit: str) -> str:
    return UNIT_LABELS.get(unit.lower(), unit) if unit else ""


def format_shape(shape) -> str:
    return " × ".join(str(int(s)) for s in shape) if shape else ""


def format_spacing(spacing, unit: str) -> str:
    if not spacing:
        return ""
    text = " × ".join(f"{float(s):.4g}" for s in spacing)
    return f"{text} {unit_label(unit)}".rstrip()


def local_time(value: _dt.datetime | None, precise: bool = False) -> str:
    """A stored UTC timestamp as local time: short, or with the date and seconds."""
    if value is None:
        return ""
    local = value.replace(tzinfo=_dt.timezone.utc).astimezone()
    if precise:
        return local.strftime("%Y-%m-%d %H:%M:%S")
    if local.year == _dt.datetime.now().year:
        return local.strftime("%d %b %H:%M")
    return local.strftime("%d %b %Y %H:%M")


def is_busy(status: str) -> bool:
    """Whether work runs or waits on a job (the progress bar shows)."""
    s = parse_status(status)
    return s in RUNNING or s in QUEUED


@dataclass(frozen=True)
class JobRow:
    """What the table shows of one job."""

    id: int
    name: str
    status: str
    progress: float
    progress_message: str
    message: str
    shape: tuple[int, ...] | None
    dtype: str
    spacing: tuple[float, ...] | None
    unit: str
    created: str
    updated: str

    @classmethod
    def from_job(cls, job: Job) -> "JobRow":
        return cls(
            id=job.id,
            name=job.name,
            status=job.status,
            progress=float(job.progress or 0.0),
            progress_message=job.progress_message or "",
            message=job.message or "",
            shape=tuple(job.shape) if job.shape else None,
            dtype=job.dtype or "",
            spacing=tuple(job.spacing) if job.spacing else None,
            unit=job.unit or "",
            created=local_time(job.created),
            updated=local_time(job.updated),
        )


class JobTableModel(QAbstractTableModel):
    """Jobs of a store, newest first; refreshed from the scheduler's signals."""

    COLUMNS = ("Name", "Status", "Progress", "Shape (z × y × x)", "Type", "Voxel size", "Created", "Updated")
    NAME, STATUS, PROGRESS, SHAPE, DTYPE, SPACING, CREATED, UPDATED = range(8)

    def __init__(self, store: JobStore, parent=None) -> None:
        super().__init__(parent)
        self.store = store
        self._rows: list[JobRow] = []
        self.refresh()

    # -- reading -----------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role=Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        col = index.column()
        if role == JOB_ID_ROLE:
            return row.id
        if role == PROGRESS_ROLE:
            return (row.progress, is_busy(row.status))
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == self.STATUS and row.message:
                return row.message
            if col == self.PROGRESS and is_busy(row.status):
                return f"{row.progress * 100:.0f}% {row.progress_message}".strip()
            if col == self.NAME:
                return f"job {row.id}: {row.name}"
            if col in (self.SHAPE, self.SPACING):
                return self._display(row, col) or None
            return None
        if role == Qt.ItemDataRole.ForegroundRole and col == self.STATUS:
            status = parse_status(row.status)
            if status in ERRORS:
                return ERROR_COLOR
            if status in RUNNING:
                return BUSY_COLOR
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (self.SHAPE, self.SPACING, self.DTYPE):
            return int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
        return None

    def _display(self, row: JobRow, col: int) -> str:
        if col == self.NAME:
            return row.name
        if col == self.STATUS:
            return status_label(row.status)
        if col == self.PROGRESS:
            return f"{row.progress * 100:.0f}%" if is_busy(row.status) else ""
        if col == self.SHAPE:
            return format_shape(row.shape)
        if col == self.DTYPE:
            return row.dtype
        if col == self.SPACING:
            return format_spacing(row.spacing, row.unit)
        if col == self.CREATED:
            return row.created
        if col == self.UPDATED:
            return row.updated
        return ""

    def job_id_at(self, row: int) -> int | None:
        return self._rows[row].id if 0 <= row < len(self._rows) else None

    def row_of(self, job_id: int) -> int | None:
        for i, row in enumerate(self._rows):
            if row.id == job_id:
                return i
        return None

    def job_row(self, job_id: int) -> JobRow | None:
        i = self.row_of(job_id)
        return None if i is None else self._rows[i]

    # -- updating ------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read every job; rows that only changed are updated in place."""
        rows = [JobRow.from_job(job) for job in self.store.list_jobs()]
        if [r.id for r in rows] != [r.id for r in self._rows]:
            self.beginResetModel()
            self._rows = rows
            self.endResetModel()
            return
        for i, (old, new) in enumerate(zip(self._rows, rows)):
            if old != new:
                # Keep the live progress of a running job over the throttled stored one.
                if is_busy(new.status) and old.status == new.status and old.progress > new.progress:
                    new = replace(new, progress=old.progress, progress_message=old.progress_message)
                self._rows[i] = new
                self._row_changed(i)

    @Slot(int)
    def refresh_job(self, job_id: int) -> None:
        """Re-read one job (after a status change); a new or deleted job resets the table."""
        i = self.row_of(job_id)
        try:
            job = self.store.get(job_id)
        except JobNotFound:
            job = None
        if i is None or job is None:
            self.refresh()
            return
        self._rows[i] = JobRow.from_job(job)
        self._row_changed(i)

    @Slot(int, str, str)
    def on_status_changed(self, job_id: int, old: str, new: str) -> None:
        self.refresh_job(job_id)

    @Slot(int, float, str)
    def on_progress(self, job_id: int, fraction: float, message: str) -> None:
        """Live progress from a worker, without a database read."""
        i = self.row_of(job_id)
        if i is None:
            return
        self._rows[i] = replace(self._rows[i], progress=float(fraction), progress_message=message)
        index = self.index(i, self.PROGRESS)
        self.dataChanged.emit(index, index)

    def _row_changed(self, i: int) -> None:
        self.dataChanged.emit(self.index(i, 0), self.index(i, len(self.COLUMNS) - 1))


class ProgressDelegate(QStyledItemDelegate):
    """Draws a progress bar in the progress column while work runs or waits."""

    def paint(self, painter, option, index) -> None:  # noqa: D102
        value = index.data(PROGRESS_ROLE)
        if not value or not value[1]:
            super().paint(painter, option, index)
            return
        fraction, _busy = value
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(3, 4, -3, -4)
        bar.minimum = 0
        bar.maximum = 1000
        bar.progress = int(round(fraction * 1000))
        bar.text = f"{fraction * 100:.0f}%"
        bar.textVisible = True
        bar.state = option.state | QStyle.StateFlag.State_Enabled | QStyle.StateFlag.State_Horizontal
        style = option.widget.style() if option.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, option.widget)
