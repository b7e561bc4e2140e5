"""The Models page: train quick or deep models, compare their versions, segment with any of them.

Held-out Dice / IoU per class (paint of slices the model did not see) are the
accuracy shown; accuracy on the training paint is shown apart and labelled as
such. Training and segmentation run in the scheduler's workers; this page only
listens to their signals.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.statuses import JobStatus
from app.gui.pages.base import AppContext, JobPage
from app.gui.settings import Preferences

COLUMNS = ["Model", "Kind", "Parameters", "Paint", "Held-out Dice / IoU", "Training-paint accuracy", "Created", "State"]
#: What the progress bar says while nothing runs for the job.
IDLE_FORMAT = "nothing running"


def _params_text(kind: str, params: dict) -> str:
    if kind == "quick":
        scales = ", ".join(f"{s:g}" for s in params.get("scales", [0.7, 1.6, 3.5, 5.0]))
        return f"scales {scales}; {params.get('mode', '2d')}"
    return f"{params.get('slices', 5)} slices in; ≤ {params.get('epochs', 12)} epochs"


def _held_out_text(metrics: dict, names: dict[int, str]) -> str:
    held = (metrics or {}).get("held_out")
    if not held:
        return "not enough painted slices" if metrics else ""
    return "  ".join(
        f"{names.get(int(v), v)} {s['dice']:.3f} / {s['iou']:.3f}" for v, s in held.items()
    )


class ModelsPage(JobPage):
    """Train Quick / Train Deep, the list of model versions, segment with a chosen one."""

    title = "Models"

    def __init__(self, app: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(app, parent)
        self._error_shown = False
        self._build()
        app.scheduler.progress.connect(self._progress)
        app.scheduler.failed.connect(self._failed)
        app.scheduler.finished.connect(self._finished)
        self._set_enabled(False)

    # -- layout --------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        self.job_label = QLabel("No job selected")
        layout.addWidget(self.job_label)

        train_row = QHBoxLayout()
        quick = QGroupBox("Quick model (random forest, seconds)")
        form = QFormLayout(quick)
        self.scales_edit = QLineEdit("0.7, 1.6, 3.5, 5")
        self.scales_edit.setToolTip("Feature scales in voxels (about 0.7 to 10)")
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(["2d", "3d"])
        self.mode_combo.setToolTip("2d: filters within each z-slice; 3d: filters in all three axes")
        self.train_quick_button = QPushButton("Train Quick")
        self.train_quick_button.clicked.connect(lambda: self.train("quick"))
        form.addRow("Scales", self.scales_edit)
        form.addRow("Features", self.mode_combo)
        form.addRow(self.train_quick_button)
        deep = QGroupBox("Deep model (U-Net, minutes)")
        form = QFormLayout(deep)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 500)
        self.epochs_spin.setValue(12)
        self.epochs_spin.setToolTip("At most this many epochs; training stops early on held-out paint")
        self.slices_spin = QSpinBox()
        self.slices_spin.setRange(1, 11)
        self.slices_spin.setSingleStep(2)
        self.slices_spin.setValue(5)
        self.slices_spin.setToolTip("Neighbouring slices given to the network as channels")
        self.train_deep_button = QPushButton("Train Deep")
        self.train_deep_button.clicked.connect(lambda: self.train("deep"))
        self._highlight_preferred_kind(Preferences.load().model_kind)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Slices in", self.slices_spin)
        form.addRow(self.train_deep_button)
        cleanup = QGroupBox("Clean-up of segmentations")
        form = QFormLayout(cleanup)
        self.min_size_spin = QSpinBox()
        self.min_size_spin.setRange(0, 10_000_000)
        self.min_size_spin.setToolTip("Remove pieces smaller than this many voxels (0: keep all)")
        self.fill_holes_check = QCheckBox("Fill enclosed holes")
        self.keep_largest_check = QCheckBox("Keep only the largest piece")
        form.addRow("Min piece size", self.min_size_spin)
        form.addRow(self.fill_holes_check)
        form.addRow(self.keep_largest_check)
        for box in (quick, deep, cleanup):
            train_row.addWidget(box)
        layout.addLayout(train_row)

        progress_row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat(IDLE_FORMAT)
        self.progress_label = QLabel("")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        progress_row.addWidget(self.progress, 2)
        progress_row.addWidget(self.progress_label, 3)
        progress_row.addWidget(self.cancel_button)
        layout.addLayout(progress_row)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        layout.addWidget(QLabel("Model versions (accuracy measured on paint of slices held out from training):"))
        layout.addWidget(self.table, 1)

        actions = QHBoxLayout()
        self.segment_button = QPushButton("Segment with this model")
        self.segment_button.clicked.connect(lambda: self.segment_with(self.selected_model()))
        self.other_job_button = QPushButton("Use a model from another job…")
        self.other_job_button.clicked.connect(self._ask_other_model)
        actions.addWidget(self.segment_button)
        actions.addWidget(self.other_job_button)
        actions.addStretch(1)
        layout.addLayout(actions)
        self.segmentation_label = QLabel("")
        self.message_label = QLabel("")
        self.message_label.setWordWrap(True)
        layout.addWidget(self.segmentation_label)
        layout.addWidget(self.message_label)

    def _set_enabled(self, on: bool) -> None:
        for w in (self.train_quick_button, self.train_deep_button, self.other_job_button):
            w.setEnabled(on)
        busy = self.job_id is not None and self.app.scheduler.is_running(self.job_id)
        self.cancel_button.setEnabled(bool(busy))
        self._update_buttons()

    def _update_buttons(self) -> None:
        row = self.selected_model()
        self.segment_button.setEnabled(self.job_id is not None and row is not None)

    # -- job ---------------------------------------------------------------------------
    def _highlight_preferred_kind(self, kind: str) -> None:
        """The default model kind of Settings: its button in bold, and Ctrl+T trains it."""
        button = self.train_deep_button if kind == "deep" else self.train_quick_button
        font = button.font()
        font.setBold(True)
        button.setFont(font)
        button.setShortcut(QKeySequence("Ctrl+T"))
        button.setToolTip(f"{button.toolTip()} (Ctrl+T: the default model kind in Settings)".strip())

    def job_changed(self, job_id: int | None) -> None:
        self.progress.setValue(0)
        self.progress.setFormat(IDLE_FORMAT)
        self.progress_label.setText("")
        self.show_message("")
        self.refresh()

    def status_changed(self, job_id: int, old: str, new: str) -> None:
        if job_id == self.job_id:
            if new == JobStatus.SEGMENTING.value and not self._error_shown:
                self.show_message("Segmenting the whole volume, block by block…")
            self.refresh()

    def refresh(self) -> None:
        """Reload the job's facts and model versions from the database."""
        from app.store.models import Model, Segmentation

        self.table.setRowCount(0)
        if self.job_id is None:
            self.job_label.setText("No job selected")
            self.segmentation_label.setText("")
            self._set_enabled(False)
            return
        try:
            job = self.app.store.get(self.job_id)
        except LookupError:
            self.job_id = None
            self.refresh()
            return
        self.job_label.setText(f"<b>{job.name}</b> (job {job.id}) · {job.status}")
        names = {c.value: c.name for c in self.app.store.label_classes(job.id)}
        rows = list(Model.select().where(Model.job == job.id).order_by(Model.id.desc()))
        for m in rows:
            r = self.table.rowCount()
            self.table.insertRow(r)
            training = (m.metrics or {}).get("training_accuracy")
            values = [
                str(m.id),
                m.kind,
                _params_text(m.kind, m.params or {}),
                f"{m.n_voxels:,} voxels on {m.n_slices} slice(s)" if m.state == "ready" else "",
                _held_out_text(m.metrics or {}, names),
                f"{training:.3f} (training paint)" if training is not None else "",
                m.created.strftime("%Y-%m-%d %H:%M") if m.created else "",
                m.state,
            ]
            for c, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, m.id)
                self.table.setItem(r, c, item)
        seg = Segmentation.select().where(Segmentation.job == job.id).order_by(Segmentation.id.desc()).first()
        if seg is not None:
            done = f" ({seg.blocks_done}/{seg.blocks_total} blocks)" if seg.state in ("running", "queued") else ""
            self.segmentation_label.setText(
                f"Newest segmentation: {seg.id}, model {seg.model_id}, {seg.state}{done}"
            )
        else:
            self.segmentation_label.setText("No segmentation yet")
        if rows and self.table.currentRow() < 0:
            self.table.selectRow(0)
        self._set_enabled(True)

    def selected_model(self) -> int | None:
        items = self.table.selectedItems()
        return int(items[0].data(Qt.ItemDataRole.UserRole)) if items else None

    # -- actions -------------------------------------------------------------------------
    def cleanup(self) -> dict[str, Any]:
        return {
            "min_size": int(self.min_size_spin.value()),
            "fill_holes": self.fill_holes_check.isChecked(),
            "keep_largest": self.keep_largest_check.isChecked(),
        }

    def train_params(self, kind: str) -> dict[str, Any]:
        from app.pipeline.features import parse_scales

        params: dict[str, Any] = {"cleanup": self.cleanup()}
        if kind == "quick":
            params["scales"] = list(parse_scales(self.scales_edit.text()))
            params["mode"] = self.mode_combo.currentText()
        else:
            params["epochs"] = int(self.epochs_spin.value())
            slices = int(self.slices_spin.value())
            params["slices"] = slices if slices % 2 else slices + 1
        return params

    def train(self, kind: str, extra: dict[str, Any] | None = None) -> bool:
        """Queue a training (then segmentation) of ``kind`` and start it in a worker."""
        from app.stages.train import request_training

        if self.job_id is None:
            return False
        try:
            params = self.train_params(kind) | dict(extra or {})
            row = request_training(self.app.store, self.job_id, kind, params)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.show_message(str(exc), error=True)
            return False
        self.show_message(f"Training {kind} model {row.id}…")
        self._start()
        return True

    def segment_with(self, model_id: int | None) -> bool:
        """Queue a segmentation of this job with ``model_id`` (any job's) and start it."""
        from app.stages.segment import request_segmentation

        if self.job_id is None or model_id is None:
            return False
        try:
            seg = request_segmentation(self.app.store, self.job_id, model_id, self.cleanup())
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.show_message(str(exc), error=True)
            return False
        self.show_message(f"Segmenting with model {model_id} (segmentation {seg.id})…")
        self._start()
        return True

    def other_models(self) -> list[tuple[int, str]]:
        """Ready models of other jobs: (model id, description)."""
        from app.store.models import Job, Model

        rows = (
            Model.select(Model, Job)
            .join(Job)
            .where((Model.state == "ready") & (Model.job != self.job_id))
            .order_by(Model.id.desc())
        )
        return [(m.id, f"model {m.id} ({m.kind}) of job {m.job.id} “{m.job.name}”") for m in rows]

    def _ask_other_model(self) -> None:
        choices = self.other_models()
        if not choices:
            self.show_message("No other job has a trained model yet.")
            return
        text, ok = QInputDialog.getItem(self, "Use a model from another job", "Model:", [c[1] for c in choices], 0, False)
        if ok:
            self.segment_with(next(i for i, label in choices if label == text))

    def cancel(self) -> None:
        if self.job_id is not None and self.app.scheduler.cancel(self.job_id):
            self.show_message("Cancelling…")

    def _start(self) -> None:
        self.progress.setValue(0)
        self.app.scheduler.submit(self.job_id)
        self.refresh()
        self.cancel_button.setEnabled(True)

    # -- worker signals --------------------------------------------------------------------
    def _progress(self, job_id: int, fraction: float, message: str) -> None:
        if job_id != self.job_id:
            return
        self.progress.setFormat("%p%")
        self.progress.setValue(int(fraction * 1000))
        self.progress_label.setText(message)

    def _failed(self, job_id: int, message: str) -> None:
        if job_id == self.job_id:
            self.show_message(message, error=True)

    def _finished(self, job_id: int) -> None:
        if job_id == self.job_id:
            self.refresh()
            self.cancel_button.setEnabled(False)
            job = self.app.store.get(job_id)
            if job.message and not self._error_shown:
                self.show_message(job.message, error=job.status.endswith("error"))

    def show_message(self, text: str, error: bool = False) -> None:
        self._error_shown = error
        self.message_label.setStyleSheet("color: #c62828;" if error else "")
        self.message_label.setText(text)
