"""The 3D page: make meshes of a segmented job, look at them, measure them, export them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.statuses import JobStatus, parse_status
from app.gui.pages.base import AppContext, JobPage
from app.gui.worker import BackgroundTask

S = JobStatus
STATS_COLUMNS = ("Class", "Triangles", "Area", "Volume", "Pieces", "Closed")


class View3DPage(JobPage):
    """Mesh button with settings, progress and cancel; the 3D view; stats; screenshot; export."""

    title = "3D"

    def __init__(self, app: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(app, parent)
        self.view = None  # the SurfaceView, made on first show (VTK loads lazily)
        self.mesh_id: int | None = None
        self.unit = ""
        self._surfaces: list[tuple[dict[str, Any], Any, Any]] = []
        self._pending_show = False
        self._loading = 0
        self._cancel_requested = False
        self._build()
        app.scheduler.progress.connect(self._on_progress)
        app.scheduler.failed.connect(self._on_failed)
        app.scheduler.finished.connect(self._on_finished)

    # -- layout ----------------------------------------------------------------
    def _build(self) -> None:
        from app.pipeline.mesh import DEFAULT_DECIMATE, DEFAULT_SMOOTH

        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(6, 6, 6, 6)

        make = QGroupBox("Mesh")
        form = QFormLayout(make)
        self.smooth_box = QDoubleSpinBox()
        self.smooth_box.setRange(0.0, 1.0)
        self.smooth_box.setSingleStep(0.1)
        self.smooth_box.setValue(DEFAULT_SMOOTH)
        self.smooth_box.setToolTip("Smoothing strength; 0 = off. Smoothing keeps each surface's volume.")
        self.decimate_box = QDoubleSpinBox()
        self.decimate_box.setRange(0.01, 1.0)
        self.decimate_box.setSingleStep(0.05)
        self.decimate_box.setValue(DEFAULT_DECIMATE)
        self._apply_preferences()
        self.decimate_box.setToolTip("Fraction of triangles to keep; 1 = no decimation. Surfaces stay closed.")
        form.addRow("Smoothing", self.smooth_box)
        form.addRow("Keep triangles", self.decimate_box)
        buttons = QHBoxLayout()
        self.mesh_button = QPushButton("Mesh")
        self.mesh_button.clicked.connect(self.start_mesh)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_mesh)
        buttons.addWidget(self.mesh_button)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        form.addRow(self.progress)
        self.version_box = QComboBox()
        self.version_box.currentIndexChanged.connect(self._version_chosen)
        form.addRow("Version", self.version_box)
        side_layout.addWidget(make)

        surfaces = QGroupBox("Surfaces")
        surfaces_layout = QVBoxLayout(surfaces)
        self.layers = QTableWidget(0, 3)
        self.layers.setHorizontalHeaderLabels(["Show", "Class", "Opacity"])
        self.layers.verticalHeader().setVisible(False)
        self.layers.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.layers.setColumnWidth(0, 44)
        self.layers.setMaximumHeight(130)
        surfaces_layout.addWidget(self.layers)
        self.stats = QTableWidget(0, len(STATS_COLUMNS))
        self.stats.setHorizontalHeaderLabels(STATS_COLUMNS)
        self.stats.verticalHeader().setVisible(False)
        self.stats.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.stats.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        surfaces_layout.addWidget(self.stats)
        side_layout.addWidget(surfaces, 1)

        view_box = QGroupBox("View")
        view_layout = QHBoxLayout(view_box)
        self.reset_button = QPushButton("Reset view")
        self.reset_button.clicked.connect(lambda: self.view and self.view.reset_view())
        self.axes_check = QCheckBox("Axes")
        self.axes_check.setChecked(True)
        self.axes_check.toggled.connect(lambda on: self.view and self.view.set_axes_visible(on))
        self.screenshot_button = QPushButton("Screenshot…")
        self.screenshot_button.clicked.connect(self._ask_screenshot)
        for widget in (self.reset_button, self.axes_check, self.screenshot_button):
            view_layout.addWidget(widget)
        side_layout.addWidget(view_box)

        export = QGroupBox("Export")
        export_layout = QHBoxLayout(export)
        self.format_box = QComboBox()
        self.format_box.addItems(["stl", "obj", "ply", "glb"])
        self.combined_check = QCheckBox("One file")
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self._ask_export)
        for widget in (self.format_box, self.combined_check, self.export_button):
            export_layout.addWidget(widget)
        side_layout.addWidget(export)

        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        side_layout.addWidget(self.message)

        self.view_holder = QWidget()
        self.view_layout = QVBoxLayout(self.view_holder)
        self.view_layout.setContentsMargins(0, 0, 0, 0)
        self.placeholder = QLabel("Segment the job, then press Mesh to see its surfaces here.")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.view_layout.addWidget(self.placeholder)

        splitter = QSplitter()
        splitter.addWidget(side)
        splitter.addWidget(self.view_holder)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([380, 1000])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._update_buttons()

    # -- the view -------------------------------------------------------------------
    def ensure_view(self):
        """The SurfaceView (created on first use; VTK's Qt view loads then)."""
        if self.view is None:
            from app.gui.vtk_view import SurfaceView

            self.view = SurfaceView(self.view_holder)
            self.view_layout.addWidget(self.view)
            self._show_in_view()  # surfaces loaded while the page was hidden
        return self.view

    def page_shown(self) -> None:
        self._pending_show = True
        view = self.ensure_view()
        view.set_active(True)

    def page_hidden(self) -> None:
        self._pending_show = False
        if self.view is not None:
            self.view.set_active(False)

    def shutdown(self) -> None:
        if self.view is not None:
            self.view.finalize()

    # -- job ---------------------------------------------------------------------------
    def _apply_preferences(self) -> None:
        """Start from the mesh smoothing and decimation chosen in Settings."""
        from app.gui.settings import Preferences

        prefs = Preferences.load()
        self.smooth_box.setValue(prefs.mesh_smoothing)
        self.decimate_box.setValue(prefs.mesh_decimation)

    def job_changed(self, job_id: int | None) -> None:
        self.mesh_id = None
        self._set_surfaces([])
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.message.clear()
        if job_id is not None:
            from app.stages.mesh import job_spacing

            try:
                job = self.app.store.get(job_id)
                _, self.unit = job_spacing(self.app.store, job)
            except LookupError:
                self.unit = ""
        self._reload_versions()
        self._update_buttons()

    def status_changed(self, job_id: int, old: str, new: str) -> None:
        if job_id != self.job_id:
            return
        if new == S.MESHED.value:
            self._reload_versions(select_newest=True)
        self._update_buttons()

    def _job_status(self) -> JobStatus | None:
        if self.job_id is None:
            return None
        try:
            return parse_status(self.app.store.get(self.job_id).status)
        except LookupError:
            return None

    def _update_buttons(self) -> None:
        from app.stages.mesh import MESHABLE

        status = self._job_status()
        busy = status in (S.MESHING_QUEUED, S.MESHING)
        self.mesh_button.setEnabled(status in MESHABLE and not busy)
        self.cancel_button.setEnabled(busy)
        has = bool(self._surfaces)
        self.export_button.setEnabled(has and self._loading == 0)
        self.screenshot_button.setEnabled(has)
        self.reset_button.setEnabled(has)
        if status is not None and status not in MESHABLE and not busy and not has:
            self.mesh_button.setToolTip("The job must be segmented first.")
        else:
            self.mesh_button.setToolTip("Make closed surfaces of every class but background.")

    def _reload_versions(self, select_newest: bool = False) -> None:
        from app.stages.mesh import complete_meshes

        self.version_box.blockSignals(True)
        self.version_box.clear()
        meshes = complete_meshes(self.job_id) if self.job_id is not None else []
        for mesh in meshes:
            params = mesh.params or {}
            self.version_box.addItem(
                f"#{mesh.id}: smoothing {params.get('smooth', '?')}, keep {params.get('decimate', '?')}", mesh.id
            )
        self.version_box.blockSignals(False)
        if meshes and (select_newest or self.mesh_id not in [m.id for m in meshes]):
            self.version_box.setCurrentIndex(0)
            self.load_mesh(meshes[0].id)
        elif not meshes:
            self._set_surfaces([])

    @Slot(int)
    def _version_chosen(self, index: int) -> None:
        mesh_id = self.version_box.itemData(index)
        if mesh_id is not None and mesh_id != self.mesh_id:
            self.load_mesh(int(mesh_id))

    def load_mesh(self, mesh_id: int) -> None:
        """Read a mesh version's surfaces in the background, then show them."""
        from app.stages.mesh import find_mesh, load_surfaces

        job_id = self.job_id
        self.mesh_id = mesh_id
        self._loading += 1
        self.message.setText("Loading surfaces…")

        def work():
            return job_id, mesh_id, load_surfaces(find_mesh(job_id, mesh_id))

        def done(result) -> None:
            self._loading -= 1
            got_job, got_mesh, surfaces = result
            if got_job == self.job_id and got_mesh == self.mesh_id:
                self.message.clear()
                self._set_surfaces(surfaces)

        def failed(message: str) -> None:
            self._loading -= 1
            self._show_error(message)

        self.app.scheduler.pool.start(BackgroundTask(work, done, failed))

    def _set_surfaces(self, surfaces: list) -> None:
        self._surfaces = surfaces
        self._fill_tables()
        if self.view is not None:
            self._show_in_view()
        elif surfaces and self._pending_show:
            self.ensure_view()
        self._update_buttons()

    def _show_in_view(self) -> None:
        """Give the VTK view the current surfaces (the view must exist)."""
        surfaces = self._surfaces
        self.view.set_unit(self.unit)
        self.view.set_surfaces(
            [(r["value"], r["name"], r["color"], points, faces) for r, points, faces in surfaces]
        )
        self.view.setVisible(bool(surfaces))
        self.placeholder.setVisible(not surfaces)
        self.view.render()

    def _fill_tables(self) -> None:
        unit = self.unit or "units"
        self.layers.setRowCount(len(self._surfaces))
        self.stats.setRowCount(len(self._surfaces))
        for row, (record, _, _) in enumerate(self._surfaces):
            key = record["value"]
            check = QCheckBox()
            check.setChecked(True)
            check.toggled.connect(lambda on, k=key: self.set_class_visible(k, on))
            self.layers.setCellWidget(row, 0, check)
            name = QTableWidgetItem(record["name"])
            name.setForeground(QColor(record["color"]))
            name.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.layers.setItem(row, 1, name)
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(0, 100)
            slider.setValue(100)
            slider.valueChanged.connect(lambda value, k=key: self.set_class_opacity(k, value / 100))
            self.layers.setCellWidget(row, 2, slider)
            st = record["stats"]
            cells = [
                record["name"],
                f"{st['triangles']:,}",
                f"{st['area']:.4g} {unit}²",
                f"{st['volume']:.4g} {unit}³",
                str(st["pieces"]),
                "yes" if st.get("closed") else f"no ({st.get('boundary_edges', 0)} open edges)",
            ]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 0:
                    item.setForeground(QColor(record["color"]))
                self.stats.setItem(row, column, item)

    def set_class_visible(self, key: int, visible: bool) -> None:
        if self.view is not None and key in self.view.keys():
            self.view.set_visible(key, visible)

    def set_class_opacity(self, key: int, opacity: float) -> None:
        if self.view is not None and key in self.view.keys():
            self.view.set_opacity(key, opacity)

    # -- meshing ---------------------------------------------------------------------------
    def start_mesh(self) -> None:
        """Queue a mesh version with the chosen settings and run it in the background."""
        from app.stages.mesh import request_mesh

        if self.job_id is None:
            return
        try:
            request_mesh(self.app.store, self.job_id, self.smooth_box.value(), self.decimate_box.value())
        except (LookupError, ValueError) as exc:
            self._show_error(str(exc))
            return
        self.message.clear()
        self._cancel_requested = False
        self.progress.setValue(0)
        self.progress.setFormat("queued")
        self.app.scheduler.submit(self.job_id)
        self._update_buttons()

    def cancel_mesh(self) -> None:
        if self.job_id is None:
            return
        self._cancel_requested = True
        if not self.app.scheduler.cancel(self.job_id):
            self._cancel_waiting()
        self.progress.setFormat("cancelling…")

    def _cancel_waiting(self) -> None:
        """Take a mesh request that never started out of the queue."""
        from app.runner import Runner
        from app.stages.mesh import cancel_pending_mesh

        if self._job_status() is not S.MESHING_QUEUED:
            return
        try:
            Runner(self.app.store).cancel_queued(self.job_id)
            cancel_pending_mesh(self.job_id)
        except (LookupError, ValueError) as exc:
            self._show_error(str(exc))

    @Slot(int, float, str)
    def _on_progress(self, job_id: int, fraction: float, message: str) -> None:
        if job_id == self.job_id:
            self.progress.setValue(int(fraction * 1000))
            self.progress.setFormat(f"{fraction * 100:.0f}% {message}")

    @Slot(int, str)
    def _on_failed(self, job_id: int, message: str) -> None:
        if job_id == self.job_id:
            self._show_error(message)

    @Slot(int)
    def _on_finished(self, job_id: int) -> None:
        if job_id != self.job_id:
            return
        status = self._job_status()
        if status is S.MESHING_QUEUED and self._cancel_requested:
            self._cancel_waiting()  # cancelled before a thread picked it up
            status = self._job_status()
        self._cancel_requested = False
        if status is S.MESHED:
            self.progress.setValue(1000)
            self.progress.setFormat("done")
            job = self.app.store.get(job_id)
            if job.message:
                self.message.setStyleSheet("")
                self.message.setText(job.message)
        elif status is not S.MESH_ERROR:
            self.progress.setValue(0)
            self.progress.setFormat("cancelled")
        self._update_buttons()

    def _show_error(self, message: str) -> None:
        self.message.setStyleSheet("color: #e06666;")
        self.message.setText(message)

    # -- screenshot and export ---------------------------------------------------------------
    def _ask_screenshot(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", "strata-3d.png", "PNG image (*.png)")
        if path:
            self.save_screenshot(path)

    def save_screenshot(self, path: str | Path) -> Path | None:
        if self.view is None:
            return None
        try:
            written = self.view.save_screenshot(path)
        except OSError as exc:
            self._show_error(str(exc))
            return None
        self.message.setStyleSheet("")
        self.message.setText(f"Screenshot saved: {written}")
        return written

    def _ask_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export meshes to folder")
        if folder:
            self.export_to(folder, self.format_box.currentText(), self.combined_check.isChecked())

    def export_to(self, folder: str | Path, fmt: str, combined: bool = False) -> None:
        """Export the shown mesh version in the background; the result shows below."""
        from types import SimpleNamespace

        from app.stages.mesh import export_meshes

        if self.job_id is None or self.mesh_id is None:
            return
        store, job_id, mesh_id = self.app.store, self.job_id, self.mesh_id
        args = SimpleNamespace(id=mesh_id, combined=combined)
        self.export_button.setEnabled(False)
        self.message.setStyleSheet("")
        self.message.setText("Exporting…")

        def work():
            job = store.get(job_id)
            old = job.status
            files = export_meshes(store, job, fmt, folder, args)
            return old, store.get(job_id).status, files

        def done(result) -> None:
            old, new, files = result
            self.message.setStyleSheet("")
            self.message.setText("Exported:\n" + "\n".join(str(f) for f in files))
            self.export_button.setEnabled(True)
            if old != new:
                self.app.scheduler.status_changed.emit(job_id, old, new)

        def failed(message: str) -> None:
            self._show_error(f"Export failed: {message}")
            self.export_button.setEnabled(True)

        self.app.scheduler.pool.start(BackgroundTask(work, done, failed))
