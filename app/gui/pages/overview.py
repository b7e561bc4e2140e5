"""The Overview page: a job's facts, its error, its timeline and a preview of its volume."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QThreadPool, Qt, Slot
from PySide6.QtGui import QFont, QImage, QPixmap
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QScrollArea,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.statuses import ERRORS, JobStatus, parse_status
from app.gui.job_table import format_shape, format_spacing, is_busy, local_time, status_label
from app.gui.pages.base import AppContext, JobPage
from app.gui.worker import BackgroundTask
from app.store.jobs import JobNotFound

S = JobStatus
#: Statuses in which the volume on disk is complete and can be previewed.
NO_PREVIEW = frozenset({S.PENDING, S.UPLOADING, S.UPLOADED, S.CONVERTING, S.CONVERT_ERROR, S.ERROR})
PREVIEW_SIZE = 200
PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class SlicePreview:
    """One orthogonal middle slice, scaled to 8 bits."""

    title: str
    image: np.ndarray  # uint8, (rows, cols)
    aspect: float  # height of a pixel over its width, in real units


def middle_slices(volume_path: str | Path) -> list[SlicePreview]:
    """The three orthogonal middle slices of the coarsest level, contrast from robust percentiles."""
    from app.pipeline.volume import open_volume

    volume = open_volume(volume_path)
    level = len(volume.levels) - 1
    array = volume.levels[level]
    sz, sy, sx = volume.level_spacing(level)
    z, y, x = (s // 2 for s in array.shape)
    full_z, full_y, full_x = (s // 2 for s in volume.shape)
    planes = [
        (f"z = {full_z} (y × x)", np.asarray(array[z, :, :]), sy / sx),
        (f"y = {full_y} (z × x)", np.asarray(array[:, y, :]), sz / sx),
        (f"x = {full_x} (z × y)", np.asarray(array[:, :, x]), sz / sy),
    ]
    values = np.concatenate([p[1].ravel() for p in planes]).astype(np.float64)
    finite = values[np.isfinite(values)]
    lo, hi = np.percentile(finite, PERCENTILES) if finite.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    previews = []
    for title, plane, aspect in planes:
        scaled = (np.nan_to_num(plane.astype(np.float64), nan=lo) - lo) / (hi - lo)
        image = (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        previews.append(SlicePreview(title, np.ascontiguousarray(image), float(aspect)))
    return previews


def to_pixmap(preview: SlicePreview, box: int = PREVIEW_SIZE) -> QPixmap:
    """A greyscale pixmap fitting in ``box`` x ``box``, with the voxel aspect respected."""
    rows, cols = preview.image.shape
    qimage = QImage(preview.image.data, cols, rows, cols, QImage.Format.Format_Grayscale8).copy()
    height = rows * preview.aspect
    scale = box / max(cols, height)
    size_w = max(1, round(cols * scale))
    size_h = max(1, round(height * scale))
    return QPixmap.fromImage(qimage).scaled(
        size_w, size_h, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation
    )


def _value_label() -> QLabel:
    label = QLabel()
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setWordWrap(True)
    return label


class OverviewPage(JobPage):
    """Name, status, progress, facts, error, timeline and a three-plane preview of a job."""

    title = "Overview"

    def __init__(self, app: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(app, parent)
        self._preview_token = 0
        self._preview_job: int | None = None
        app.scheduler.progress.connect(self._on_progress)

        self.name_label = QLabel()
        font = QFont(self.font())
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        self.name_label.setFont(font)
        self.name_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status_label = QLabel()
        self.status_label.setObjectName("statusBadge")
        header = QHBoxLayout()
        header.addWidget(self.name_label, 1)
        header.addWidget(self.status_label, 0)

        self.error_label = QLabel()
        self.error_label.setObjectName("errorMessage")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setStyleSheet(
            "color: #b71c1c; background: #fdecea; border: 1px solid #f5c2c0; border-radius: 4px; padding: 6px;"
        )
        self.error_label.hide()

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setFormat("%p%")
        self.progress_label = QLabel()
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress_bar, 2)
        progress_row.addWidget(self.progress_label, 3)
        self.progress_widget = QWidget()
        self.progress_widget.setLayout(progress_row)
        progress_row.setContentsMargins(0, 0, 0, 0)
        self.progress_widget.hide()

        self.fields: dict[str, QLabel] = {}
        facts = QFormLayout()
        facts.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        for key, label in (
            ("shape", "Shape (z × y × x):"),
            ("dtype", "Data type:"),
            ("spacing", "Voxel size (z × y × x):"),
            ("source", "Source:"),
            ("folder", "Job folder:"),
            ("note", "Note:"),
            ("created", "Created:"),
            ("updated", "Last updated:"),
        ):
            self.fields[key] = _value_label()
            facts.addRow(label, self.fields[key])

        # Preview of the three middle slices.
        self.preview_box = QGroupBox("Preview: middle slices")
        preview_layout = QHBoxLayout(self.preview_box)
        self.preview_images: list[QLabel] = []
        self.preview_titles: list[QLabel] = []
        for _ in range(3):
            column = QVBoxLayout()
            title = QLabel()
            title.setAlignment(Qt.AlignmentFlag.AlignCenter)
            image = QLabel()
            image.setAlignment(Qt.AlignmentFlag.AlignCenter)
            image.setFixedSize(PREVIEW_SIZE, PREVIEW_SIZE)
            image.setFrameShape(QFrame.Shape.StyledPanel)
            column.addWidget(image)
            column.addWidget(title)
            preview_layout.addLayout(column)
            self.preview_images.append(image)
            self.preview_titles.append(title)
        preview_layout.addStretch(1)
        self.preview_message = QLabel()
        self.preview_message.setStyleSheet("color: palette(mid);")

        # Timeline.
        self.timeline = QTreeWidget()
        self.timeline.setObjectName("timeline")
        self.timeline.setColumnCount(3)
        self.timeline.setHeaderLabels(["Time", "Status", "Message"])
        self.timeline.setRootIsDecorated(False)
        self.timeline.setAlternatingRowColors(True)
        header_view = self.timeline.header()
        header_view.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header_view.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header_view.setStretchLastSection(True)
        timeline_box = QGroupBox("Timeline")
        QVBoxLayout(timeline_box).addWidget(self.timeline)

        self.details = QWidget()
        layout = QVBoxLayout(self.details)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.error_label)
        layout.addWidget(self.progress_widget)
        layout.addLayout(facts)
        layout.addWidget(self.preview_box)
        layout.addWidget(self.preview_message)
        layout.addWidget(timeline_box)
        layout.addStretch(1)
        self.empty_label = QLabel("Select a job in the list, or create one with New job.")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        content = QWidget()
        content_layout = QVBoxLayout(content)
        content_layout.addWidget(self.details)
        content_layout.addWidget(self.empty_label)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self._content = content
        self.job_changed(None)

    # -- hooks -----------------------------------------------------------------
    def job_changed(self, job_id: int | None) -> None:  # noqa: D102
        self._preview_job = None
        self.refresh()

    def status_changed(self, job_id: int, old: str, new: str) -> None:  # noqa: D102
        if job_id != self.job_id:
            return
        if parse_status(new) is S.CONVERTED or parse_status(new) in NO_PREVIEW:
            self._preview_job = None  # a fresh volume, or one being rewritten
        self.refresh()

    def job_updated(self, job_id: int) -> None:  # noqa: D102
        if job_id == self.job_id:
            self.refresh()

    def shutdown(self) -> None:  # noqa: D102
        self._preview_token += 1  # late previews are dropped

    # -- showing -------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the selected job and show it."""
        job = None
        if self.job_id is not None:
            try:
                job = self.app.store.get(self.job_id)
            except JobNotFound:
                job = None
        self.details.setVisible(job is not None)
        self.empty_label.setVisible(job is None)
        if job is None:
            self._clear_preview("")
            return
        status = parse_status(job.status)
        self.name_label.setText(job.name)
        self.status_label.setText(status_label(job.status))
        color = "#c62828" if status in ERRORS else "#1565c0" if is_busy(job.status) else "#2e7d32"
        self.status_label.setStyleSheet(
            f"color: white; background: {color}; border-radius: 8px; padding: 3px 10px; font-weight: bold;"
        )
        if status in ERRORS:
            self.error_label.setText(job.message or "failed (no message was recorded)")
            self.error_label.show()
        else:
            self.error_label.hide()
        busy = is_busy(job.status)
        self.progress_widget.setVisible(busy)
        if busy:
            self._show_progress(float(job.progress or 0.0), job.progress_message or "")
        summary = self.app.store.summary(job)
        self.fields["shape"].setText(format_shape(job.shape) or "not known yet")
        self.fields["dtype"].setText(job.dtype or "not known yet")
        self.fields["spacing"].setText(format_spacing(job.spacing, job.unit) or "not known yet")
        sources = job.sources or []
        if len(sources) > 3:
            source_text = "\n".join(sources[:3]) + f"\n… and {len(sources) - 3} more"
        else:
            source_text = "\n".join(sources) or "–"
        self.fields["source"].setText(source_text)
        self.fields["folder"].setText(summary["path"])
        self.fields["note"].setText(job.note or "–")
        self.fields["created"].setText(local_time(job.created, precise=True))
        self.fields["updated"].setText(local_time(job.updated, precise=True))
        self._show_timeline(job.id)
        self._update_preview(job.id, status)

    def _show_progress(self, fraction: float, message: str) -> None:
        self.progress_bar.setValue(int(round(fraction * 1000)))
        self.progress_label.setText(message)

    def _show_timeline(self, job_id: int) -> None:
        self.timeline.clear()
        for entry in self.app.store.timeline(job_id):
            when = _dt.datetime.fromisoformat(entry.time.rstrip("Z")) if entry.time else None
            change = status_label(entry.to_status)
            if entry.from_status:
                change = f"{status_label(entry.from_status)} → {change}"
            item = QTreeWidgetItem([local_time(when, precise=True), change, entry.message])
            item.setToolTip(2, entry.message)
            if parse_status(entry.to_status) in ERRORS:
                for column in range(3):
                    item.setForeground(column, Qt.GlobalColor.darkRed)
            self.timeline.addTopLevelItem(item)
        count = self.timeline.topLevelItemCount()
        row_height = self.timeline.sizeHintForRow(0) if count else 20
        header_height = self.timeline.header().sizeHint().height()
        self.timeline.setFixedHeight(min(header_height + row_height * max(count, 3) + 8, 320))
        if count:
            self.timeline.scrollToItem(self.timeline.topLevelItem(count - 1))

    # -- preview ---------------------------------------------------------------------
    def _update_preview(self, job_id: int, status: JobStatus) -> None:
        volume_path = self.app.store.workspace.volume_path(job_id)
        if status in NO_PREVIEW or not (volume_path / "zarr.json").exists():
            text = "The preview appears once the scan is converted."
            if status is S.CONVERTING:
                text = "Converting… the preview appears when it is done."
            self._clear_preview(text)
            return
        if self._preview_job == job_id:
            return  # already shown (or on its way)
        self._preview_job = job_id
        self._preview_token += 1
        token = self._preview_token
        self.preview_message.setText("Loading the preview…")
        self.preview_message.show()
        task = BackgroundTask(
            lambda: middle_slices(volume_path),
            lambda previews: self._preview_ready(token, previews),
            lambda message: self._preview_failed(token, message),
        )
        QThreadPool.globalInstance().start(task)

    def _clear_preview(self, text: str) -> None:
        self._preview_token += 1
        for image, title in zip(self.preview_images, self.preview_titles):
            image.clear()
            title.clear()
        self.preview_box.setVisible(False)
        self.preview_message.setText(text)
        self.preview_message.setVisible(bool(text))

    def _preview_ready(self, token: int, previews: list[SlicePreview]) -> None:
        if token != self._preview_token:
            return
        for preview, image, title in zip(previews, self.preview_images, self.preview_titles):
            image.setPixmap(to_pixmap(preview))
            title.setText(preview.title)
        self.preview_box.setVisible(True)
        self.preview_message.hide()

    def _preview_failed(self, token: int, message: str) -> None:
        if token != self._preview_token:
            return
        self._preview_job = None
        self.preview_box.setVisible(False)
        self.preview_message.setText(f"No preview: {message}")
        self.preview_message.show()

    @Slot(int, float, str)
    def _on_progress(self, job_id: int, fraction: float, message: str) -> None:
        if job_id == self.job_id and self.progress_widget.isVisible():
            self._show_progress(fraction, message)

    def has_preview(self) -> bool:
        """Whether the three slices are shown (tests, other pages)."""
        return self.preview_box.isVisible() and all(
            image.pixmap() is not None and not image.pixmap().isNull() for image in self.preview_images
        )
