"""The Annotate page: paint materials on any slice of any plane in an embedded napari view.

Every stroke is written to ``annotations.zarr`` when the mouse is released
(:attr:`AnnotatePage.stroke_committed` follows), the classes' voxel counts and
the job's status (CONVERTED <-> ANNOTATED) are kept up to date.

API for other pages (live preview, segmentation overlays): ``stroke_committed``,
:meth:`current_plane`, :meth:`go_to`, :meth:`set_overlay`, :meth:`remove_overlay`,
:meth:`add_tool_widget`.
"""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path
from typing import Any, Mapping

from PySide6.QtCore import Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView, QButtonGroup, QCheckBox, QColorDialog, QComboBox, QDialog, QDialogButtonBox,
    QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QHeaderView, QInputDialog, QLabel,
    QLineEdit, QMessageBox, QPushButton, QScrollArea, QSpinBox, QSplitter, QStackedWidget, QTableWidget,
    QTableWidgetItem, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget,
)

from app.core.progress import StageError
from app.gui.pages.base import AppContext, JobPage
from app.gui.worker import BackgroundTask

log = logging.getLogger(__name__)
AXES = "zyx"
TOOLS = ("paint", "erase", "fill")
#: Said after a change on disk that strokes cannot undo (an import, a class deleted).
HISTORY_RESET = "Undo history was reset: earlier strokes can no longer be undone."
#: Painted slices listed per plane in the summary (the rest are counted).
MAX_LISTED_SLICES = 400


def _warm_up_zarr() -> None:
    """Read a tiny in-memory zarr array once: zarr's event loop, thread pool and codecs start now,
    not on the first job opened (about 0.1 s)."""
    import numpy as np
    import zarr

    from app.pipeline.volume import default_compressor

    array = zarr.create_array(store=zarr.storage.MemoryStore(), shape=(2, 64, 64), chunks=(1, 64, 64),
                              dtype="uint16", compressors=[default_compressor()])
    array[:] = 1
    np.percentile(np.asarray(array[0]), [0.5, 99.5])


class ImportDialog(QDialog):
    """Choose a label volume, optionally slices of one plane, and a value mapping."""

    def __init__(self, classes: list[tuple[int, str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import labels")
        form = QFormLayout(self)
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("TIFF stack folder, .tif, .npy or .zarr")
        file_button = QPushButton("File…")
        folder_button = QPushButton("Folder…")
        file_button.clicked.connect(self._pick_file)
        folder_button.clicked.connect(self._pick_folder)
        row = QHBoxLayout()
        row.addWidget(self.path_edit, 1)
        row.addWidget(file_button)
        row.addWidget(folder_button)
        form.addRow("Label volume", row)
        self.only_slices = QCheckBox("Only these slices")
        self.axis_combo = QComboBox()
        self.axis_combo.addItems(["z", "y", "x"])
        self.indices_edit = QLineEdit()
        self.indices_edit.setPlaceholderText("e.g. 10,20,30 or 5-9")
        srow = QHBoxLayout()
        srow.addWidget(self.only_slices)
        srow.addWidget(self.axis_combo)
        srow.addWidget(self.indices_edit, 1)
        form.addRow("Slices", srow)
        self.map_edit = QLineEdit()
        self.map_edit.setPlaceholderText("SRC=DST pairs, e.g. 7=2 255=1 (others keep their value)")
        form.addRow("Map values", self.map_edit)
        names = ", ".join(f"{v} {n}" for v, n in classes)
        hint = QLabel(f"Classes: {names}. Value 0 means not painted.")
        hint.setWordWrap(True)
        form.addRow(hint)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _pick_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Label volume", "", "Labels (*.tif *.tiff *.npy);;All files (*)")
        if path:
            self.path_edit.setText(path)

    def _pick_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of TIFF slices or a .zarr")
        if path:
            self.path_edit.setText(path)

    def values(self) -> tuple[str, str | None, list[str]]:
        """(path, slices text like 'z:1,2' or None, mapping items)."""
        slices = None
        if self.only_slices.isChecked():
            slices = f"{self.axis_combo.currentText()}:{self.indices_edit.text()}"
        mapping = self.map_edit.text().replace(",", " ").split()
        return self.path_edit.text().strip(), slices, mapping


class AnnotatePage(JobPage):
    """Paint label classes on the job's volume."""

    title = "Annotate"
    #: A stroke (or undo/redo) is on disk: (axis, index) of the plane it was made on.
    stroke_committed = Signal(int, int)
    #: The classes, their counts or the painted slices changed.
    summary_changed = Signal()

    def __init__(self, app: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(app, parent)
        self.view = None  # VolumeView, created on first use (napari starts in a second or two)
        self.volume = None
        self.buffer = None
        self._pending_job = False
        self._loaded_job: int | None = None
        self._busy = False
        self.last_commit_seconds = 0.0
        self.tool = "paint"
        self.current_value = 0
        self._classes: list[Any] = []
        self._build()
        self._shortcuts()
        self._set_enabled(False)
        from app.gui.painted_planes import PaintedPlanes

        self.painted_planes = PaintedPlanes(self)  # the slices painted on, for the summary
        self.painted_planes.ready.connect(self._render_summary)
        # live preview, "Suggest a slice" and the segmentation layer (issue 4)
        from app.gui.live_preview import attach_live_preview

        self.live_preview = attach_live_preview(self)

    # -- layout ---------------------------------------------------------------
    def _build(self) -> None:
        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        outer.addWidget(splitter)
        self.view_stack = QStackedWidget()
        self.placeholder = QLabel("Select a converted job to annotate it.")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.view_stack.addWidget(self.placeholder)
        splitter.addWidget(self.view_stack)

        panel = QWidget()
        side = QVBoxLayout(panel)
        side.setContentsMargins(6, 6, 6, 6)
        self.job_label = QLabel("")
        self.job_label.setWordWrap(True)
        side.addWidget(self.job_label)

        # view: planes, 3D, slice, contrast
        box = QGroupBox("View")
        lay = QVBoxLayout(box)
        row = QHBoxLayout()
        self.plane_group = QButtonGroup(self)
        self.plane_buttons: dict[int, QPushButton] = {}
        for axis, name in enumerate(AXES):
            button = QPushButton(name)
            button.setCheckable(True)
            button.setToolTip(f"show {name} slices")
            button.clicked.connect(lambda _=False, a=axis: self.set_plane(a))
            self.plane_group.addButton(button, axis)
            self.plane_buttons[axis] = button
            row.addWidget(button)
        self.plane_buttons[0].setChecked(True)
        self.button_3d = QPushButton("3D")
        self.button_3d.setCheckable(True)
        self.button_3d.setToolTip("3D rendering (annotations shown coarse)")
        self.button_3d.toggled.connect(self.set_3d)
        row.addWidget(self.button_3d)
        lay.addLayout(row)
        self.slice_label = QLabel("")
        lay.addWidget(self.slice_label)
        crow = QHBoxLayout()
        self.contrast_low = QDoubleSpinBox()
        self.contrast_high = QDoubleSpinBox()
        for spin in (self.contrast_low, self.contrast_high):
            spin.setDecimals(1)
            spin.setRange(-1e9, 1e9)
            spin.setKeyboardTracking(False)
            spin.valueChanged.connect(self._contrast_edited)
        self.auto_contrast = QPushButton("Auto")
        self.auto_contrast.setToolTip("contrast from the 0.5 and 99.5 percentiles")
        self.auto_contrast.clicked.connect(self.reset_contrast)
        crow.addWidget(QLabel("Contrast"))
        crow.addWidget(self.contrast_low)
        crow.addWidget(self.contrast_high)
        crow.addWidget(self.auto_contrast)
        lay.addLayout(crow)
        side.addWidget(box)

        # tools
        box = QGroupBox("Tools")
        lay = QVBoxLayout(box)
        row = QHBoxLayout()
        self.tool_group = QButtonGroup(self)
        self.tool_buttons: dict[str, QPushButton] = {}
        for tool, tip in zip(TOOLS, ("paint with the class (P)", "erase paint (E)", "fill a region (F)")):
            button = QPushButton(tool.capitalize())
            button.setCheckable(True)
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, t=tool: self.set_tool(t))
            self.tool_group.addButton(button)
            self.tool_buttons[tool] = button
            row.addWidget(button)
        self.tool_buttons["paint"].setChecked(True)
        lay.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Brush"))
        self.brush_spin = QSpinBox()
        self.brush_spin.setRange(1, 500)
        self.brush_spin.setValue(10)
        self.brush_spin.setSuffix(" px")
        self.brush_spin.valueChanged.connect(self._brush_changed)
        row.addWidget(self.brush_spin)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("undo the last stroke (Ctrl+Z)")
        self.undo_button.clicked.connect(self.undo)
        self.redo_button = QPushButton("Redo")
        self.redo_button.setToolTip("redo (Ctrl+Shift+Z)")
        self.redo_button.clicked.connect(self.redo)
        row.addWidget(self.undo_button)
        row.addWidget(self.redo_button)
        lay.addLayout(row)
        side.addWidget(box)

        # tools of other pages (live preview, suggest a slice, segmentation layer): in sight, under the brush
        self.extra_box = QGroupBox("Model")
        self.extra_layout = QVBoxLayout(self.extra_box)
        self.extra_box.setVisible(False)
        side.addWidget(self.extra_box)

        # classes
        box = QGroupBox("Classes (keys 1-9 pick one)")
        lay = QVBoxLayout(box)
        self.class_table = QTableWidget(0, 4)
        self.class_table.setHorizontalHeaderLabels(["Key", "Value", "Name", "Voxels"])
        self.class_table.verticalHeader().setVisible(False)
        self.class_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.class_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.class_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.class_table.horizontalHeader()
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        for col in (0, 1, 3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.class_table.itemSelectionChanged.connect(self._class_selected)
        self.class_table.cellDoubleClicked.connect(self._class_double_clicked)
        self.class_table.setMinimumHeight(130)
        lay.addWidget(self.class_table)
        row = QHBoxLayout()
        self.class_buttons = {}
        for key, text, slot in (
            ("add", "Add…", self._ask_add_class),
            ("rename", "Rename…", self._ask_rename_class),
            ("color", "Colour…", self._ask_recolor_class),
            ("delete", "Delete…", self._ask_delete_class),
        ):
            button = QPushButton(text)
            button.clicked.connect(slot)
            self.class_buttons[key] = button
            row.addWidget(button)
        lay.addLayout(row)
        side.addWidget(box)

        # summary
        box = QGroupBox("Summary (click a slice to go there)")
        lay = QVBoxLayout(box)
        self.summary_tree = QTreeWidget()
        self.summary_tree.setHeaderHidden(True)
        self.summary_tree.setMinimumHeight(160)
        self.summary_tree.itemClicked.connect(self._summary_clicked)
        lay.addWidget(self.summary_tree)
        side.addWidget(box)

        # import / export
        box = QGroupBox("Labels on disk")
        lay = QHBoxLayout(box)
        self.import_button = QPushButton("Import labels…")
        self.import_button.setToolTip("a label volume (TIFF stack, multi-page TIFF, zarr, npy) as annotations")
        self.import_button.clicked.connect(self._ask_import)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("the annotations as TIFF, zarr or npy")
        self.export_button.clicked.connect(self._ask_export)
        lay.addWidget(self.import_button)
        lay.addWidget(self.export_button)
        side.addWidget(box)

        self.message_label = QLabel("")
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        side.addWidget(self.message_label)
        side.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(panel)
        scroll.setMinimumWidth(380)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        splitter.addWidget(scroll)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        splitter.setSizes([900, 360])

    def _shortcuts(self) -> None:
        context = Qt.ShortcutContext.WidgetWithChildrenShortcut
        for sequence, slot in (
            (QKeySequence.StandardKey.Undo, self.undo),
            (QKeySequence("Ctrl+Shift+Z"), self.redo),
            (QKeySequence("P"), lambda: self.set_tool("paint")),
            (QKeySequence("E"), lambda: self.set_tool("erase")),
            (QKeySequence("F"), lambda: self.set_tool("fill")),
        ):
            shortcut = QShortcut(sequence, self)
            shortcut.setContext(context)
            shortcut.activated.connect(slot)
        for n in range(1, 10):
            shortcut = QShortcut(QKeySequence(str(n)), self)
            shortcut.setContext(context)
            shortcut.activated.connect(lambda n=n: self.pick_class_by_key(n))

    def _set_enabled(self, on: bool) -> None:
        for widget in (
            *self.plane_buttons.values(), self.button_3d, self.contrast_low, self.contrast_high,
            self.auto_contrast, *self.tool_buttons.values(), self.brush_spin, self.undo_button,
            self.redo_button, *self.class_buttons.values(), self.import_button, self.export_button,
        ):
            widget.setEnabled(on)

    def _ensure_view(self):
        if self.view is None:
            from app.gui.napari_view import VolumeView

            self.view = VolumeView()
            self.view.labels_edited.connect(self.commit_edits)
            self.view.plane_changed.connect(self._plane_changed)
            self.view_stack.addWidget(self.view)
        return self.view

    def warm_up_steps(self) -> list:
        """:meth:`warm_up` in short steps (the main window runs one per turn of its event loop)."""

        def imports(*names: str):
            return lambda: [importlib.import_module(name) for name in names]

        return [
            imports("zarr", "app.pipeline.annotations", "app.stages.annotation"),
            _warm_up_zarr,
            imports("napari.utils", "napari.components"),
            imports("napari.layers"),
            imports("napari._vispy", "napari._qt"),
            imports("napari.viewer", "napari.window"),
            self._ensure_view,
        ]

    def warm_up(self) -> None:
        """Create the napari viewer (and import zarr) now, so that opening a job later is quick."""
        for step in self.warm_up_steps():
            step()

    # -- jobs -----------------------------------------------------------------
    def job_changed(self, job_id: int | None) -> None:
        self._close_job()
        if job_id is None:
            self._show_placeholder("Select a converted job to annotate it.")
            return
        if self.isVisible():
            self.load_job()
        else:  # a hidden page does no heavy work: open the job when the tab is shown
            self._pending_job = True

    def page_shown(self) -> None:
        if self._pending_job or (self.job_id is not None and self._loaded_job != self.job_id):
            self.load_job()

    def page_hidden(self) -> None:
        self.commit_edits()

    def shutdown(self) -> None:
        self.commit_edits()
        self.painted_planes.close()
        self.live_preview.shutdown()
        if self.view is not None:
            self.view.close_viewer()

    def status_changed(self, job_id: int, old: str, new: str) -> None:
        if job_id != self.job_id:
            return
        self._update_job_label()
        if self.volume is None:  # e.g. the job was converting: open it now, or when the tab is shown
            if self.isVisible():
                self.load_job()
            else:
                self._pending_job = True

    def load_job(self) -> bool:
        """Open the selected job's volume and annotations; returns whether it could."""
        from app.pipeline.annotations import AnnotationBuffer, AnnotationStats, open_annotations
        from app.pipeline.volume import open_volume
        from app.core.statuses import parse_status
        from app.stages.annotation import HAS_VOLUME, record_counts

        self._pending_job = False
        self._close_job()
        if self.job_id is None:
            return False
        store = self.app.store
        try:
            job = store.get(self.job_id)
            if parse_status(job.status) not in HAS_VOLUME:
                raise StageError(f"job {job.id} ({job.name}) is {job.status}: convert it before annotating")
            volume = open_volume(store.workspace.volume_path(job.id))
            array = open_annotations(store.workspace.annotations_path(job.id), volume.shape, create=True)
        except (StageError, LookupError, OSError) as exc:
            self._show_placeholder(f"{exc}")
            self._update_job_label()
            return False
        view = self._ensure_view()
        stats = AnnotationStats.scan(array)
        self.volume = volume
        self._loaded_job = job.id
        if self.view_stack.currentWidget() is not view:  # the canvas gets its size before the camera fits
            self.view_stack.setCurrentWidget(view)
            view.updateGeometry()
            self.view_stack.layout().activate()
        view.show_volume(volume.levels, volume.spacing, reveal=False)
        self.buffer = AnnotationBuffer(array, stats)
        self.painted_planes.open(store.workspace.annotations_path(job.id), lambda: self.buffer.stats.profiles)
        self._refresh_classes()
        view.set_labels(self.buffer, self._colors())
        view.go_to(0, volume.shape[0] // 2)  # open at the middle z slice
        view.reveal()  # the first slice from a coarse level; full resolution follows
        self.view_stack.setCurrentWidget(view)
        self._set_enabled(True)
        self._sync_contrast_widgets()
        self.set_tool(self.tool)
        view.set_brush_size(self.brush_spin.value())
        if self._classes:
            self.select_class(self.current_value if self._value_known(self.current_value) else self._classes[-1].value)
        self.plane_buttons[0].setChecked(True)
        self.button_3d.setChecked(False)
        self._announce(record_counts(store, job.id, self.buffer.stats.class_counts()))
        self._update_class_counts()
        self._update_summary()
        self._update_job_label()
        self._plane_changed(*view.current_plane())
        return True

    def _close_job(self) -> None:
        self.commit_edits()
        self.painted_planes.close()
        self.buffer = None
        self.volume = None
        self._loaded_job = None
        if self.view is not None:
            self.view.clear()
        self._set_enabled(False)

    def _show_placeholder(self, text: str) -> None:
        self.placeholder.setText(text)
        self.view_stack.setCurrentWidget(self.placeholder)
        self.summary_tree.clear()
        self.class_table.setRowCount(0)

    def _update_job_label(self) -> None:
        if self.job_id is None:
            self.job_label.setText("")
            return
        try:
            job = self.app.store.get(self.job_id)
        except LookupError:
            self.job_label.setText("")
            return
        shape = " × ".join(str(s) for s in self.volume.shape) if self.volume else ""
        self.job_label.setText(f"<b>{job.name}</b> (job {job.id}) · {job.status} · {shape}")

    # -- painting ---------------------------------------------------------------
    def commit_edits(self) -> bool:
        """Write unflushed strokes to disk and update counts and status; returns whether any changed."""
        job_id = self._loaded_job
        if self.buffer is None or not self.buffer.dirty or job_id is None:
            return False
        from app.stages.annotation import record_counts

        start = time.perf_counter()
        changed = self.buffer.flush()
        if not changed:
            return False
        change = record_counts(self.app.store, job_id, self.buffer.stats.class_counts())
        self.last_commit_seconds = time.perf_counter() - start
        axis, index = self.view.current_plane()
        self._announce(change, job_id)
        self._update_class_counts()
        self.painted_planes.stroke_on(axis, index)
        self._render_summary()
        self.stroke_committed.emit(axis, index)
        return True

    def _announce(self, change, job_id: int | None = None) -> None:
        job_id = self.job_id if job_id is None else job_id
        if change is None or job_id is None:
            return
        old, new = change
        self._update_job_label()
        self.app.scheduler.status_changed.emit(job_id, old, new)

    def set_tool(self, tool: str) -> None:
        """``paint``, ``erase`` or ``fill``."""
        self.tool = tool
        if tool in self.tool_buttons:
            self.tool_buttons[tool].setChecked(True)
        if self.view is not None and self.buffer is not None:
            self.view.set_tool(tool)

    def _brush_changed(self, size: int) -> None:
        if self.view is not None:
            self.view.set_brush_size(size)

    def set_brush_size(self, size: int) -> None:
        self.brush_spin.setValue(int(size))

    def undo(self) -> bool:
        return bool(self.view is not None and self.buffer is not None and self.view.undo())

    def redo(self) -> bool:
        return bool(self.view is not None and self.buffer is not None and self.view.redo())

    # -- planes ---------------------------------------------------------------------
    def set_plane(self, axis: int) -> None:
        if self.view is None or self.buffer is None:
            return
        if self.button_3d.isChecked():
            self.button_3d.setChecked(False)
        self.view.set_plane(axis)
        self.plane_buttons[axis].setChecked(True)

    def set_3d(self, on: bool) -> None:
        if self.view is None or self.buffer is None:
            return
        self.commit_edits()
        self.view.set_3d(on)
        for tool, button in self.tool_buttons.items():
            button.setEnabled(not on)
        if self.button_3d.isChecked() != on:
            self.button_3d.setChecked(on)

    def current_plane(self) -> tuple[int, int]:
        """(axis, index) of the slice on screen: axis 0 = z, 1 = y, 2 = x."""
        if self.view is None or self.buffer is None:
            return 0, 0
        return self.view.current_plane()

    def go_to(self, axis: int, index: int) -> None:
        """Show slice ``index`` of plane ``axis``."""
        if self.view is None or self.buffer is None:
            return
        if self.button_3d.isChecked():
            self.button_3d.setChecked(False)
        self.view.go_to(axis, index)
        self.plane_buttons[int(axis)].setChecked(True)

    def _plane_changed(self, axis: int, index: int) -> None:
        if self.volume is None:
            return
        count = self.volume.shape[axis]
        painted = ""
        if self.buffer is not None and self.buffer.stats.profiles[axis][index]:
            painted = f" · {int(self.buffer.stats.profiles[axis][index])} painted voxels"
        self.slice_label.setText(f"{AXES[axis]} slice {index} of {count - 1}{painted}")

    # -- contrast -------------------------------------------------------------------
    def _sync_contrast_widgets(self) -> None:
        lo, hi = self.view.contrast
        rlo, rhi = self.view.contrast_range
        for spin in (self.contrast_low, self.contrast_high):
            spin.blockSignals(True)
            spin.setRange(rlo, rhi)
        self.contrast_low.setValue(lo)
        self.contrast_high.setValue(hi)
        for spin in (self.contrast_low, self.contrast_high):
            spin.blockSignals(False)

    def _contrast_edited(self, _value: float) -> None:
        if self.view is not None and self.buffer is not None:
            self.view.set_contrast(self.contrast_low.value(), self.contrast_high.value())

    def set_contrast(self, low: float, high: float) -> None:
        self.view.set_contrast(low, high)
        self._sync_contrast_widgets()

    def reset_contrast(self) -> None:
        """Contrast from robust percentiles of the coarsest level."""
        from app.gui.napari_view import robust_contrast

        if self.volume is not None:
            self.set_contrast(*robust_contrast(self.volume.levels[-1][...]))

    # -- classes ---------------------------------------------------------------------
    def _colors(self) -> dict[int, str]:
        return {c.value: c.color for c in self._classes}

    def _value_known(self, value: int) -> bool:
        return any(c.value == value for c in self._classes)

    def _refresh_classes(self) -> None:
        from app.store.label_classes import list_classes

        self._classes = list_classes(self.app.store, self.job_id) if self.job_id is not None else []
        table = self.class_table
        table.blockSignals(True)
        table.setRowCount(len(self._classes))
        for row, cls in enumerate(self._classes):
            key = QTableWidgetItem(str(row + 1) if row < 9 else "")
            value = QTableWidgetItem(str(cls.value))
            value.setBackground(QColor(cls.color))
            value.setForeground(QColor("black" if QColor(cls.color).lightness() > 128 else "white"))
            flag = " (background)" if cls.is_background and cls.name.lower() != "background" else ""
            name = QTableWidgetItem(cls.name + flag)
            count = QTableWidgetItem(str(cls.voxel_count))
            count.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            for col, item in enumerate((key, value, name, count)):
                table.setItem(row, col, item)
        table.blockSignals(False)
        if self.view is not None and self.buffer is not None:
            self.view.set_label_colors(self._colors())
        if self._classes and not self._value_known(self.current_value):
            self.select_class(self._classes[0].value)
        elif self._value_known(self.current_value):
            self.select_class(self.current_value)

    def _update_class_counts(self) -> None:
        if self.buffer is None:
            return
        counts = self.buffer.stats.class_counts()
        for row, cls in enumerate(self._classes):
            cls.voxel_count = counts.get(cls.value, 0)
            item = self.class_table.item(row, 3)
            if item is not None:
                item.setText(str(cls.voxel_count))

    def select_class(self, value: int) -> None:
        """Paint with class ``value`` from now on."""
        for row, cls in enumerate(self._classes):
            if cls.value == value:
                self.current_value = value
                self.class_table.blockSignals(True)
                self.class_table.selectRow(row)
                self.class_table.blockSignals(False)
                if self.view is not None:
                    self.view.set_selected_label(value)
                return

    def pick_class_by_key(self, n: int) -> None:
        """Key ``n`` (1-9) picks the n-th class of the list."""
        if 1 <= n <= len(self._classes):
            self.select_class(self._classes[n - 1].value)
            if self.tool == "erase":
                self.set_tool("paint")

    def _class_selected(self) -> None:
        rows = self.class_table.selectionModel().selectedRows()
        if rows and rows[0].row() < len(self._classes):
            self.select_class(self._classes[rows[0].row()].value)

    def _selected_class(self):
        for cls in self._classes:
            if cls.value == self.current_value:
                return cls
        return None

    def add_class(self, name: str, color: str | None = None) -> int | None:
        """Add a class; returns its value (None and a message when refused)."""
        from app.store.label_classes import ClassError, add_class

        try:
            cls = add_class(self.app.store, self.job_id, name, color)
        except ClassError as exc:
            self.show_message(str(exc), error=True)
            return None
        self._refresh_classes()
        self.select_class(cls.value)
        self._update_summary()
        self.show_message(f"Added class {cls.value} “{cls.name}”.")
        return cls.value

    def rename_class(self, value: int, name: str) -> bool:
        from app.store.label_classes import ClassError, rename_class

        try:
            rename_class(self.app.store, self.job_id, value, name)
        except ClassError as exc:
            self.show_message(str(exc), error=True)
            return False
        self._refresh_classes()
        self._update_summary()
        return True

    def recolor_class(self, value: int, color: str) -> bool:
        from app.store.label_classes import ClassError, recolor_class

        try:
            recolor_class(self.app.store, self.job_id, value, color)
        except ClassError as exc:
            self.show_message(str(exc), error=True)
            return False
        self._refresh_classes()
        return True

    def delete_class(self, value: int, ask: bool = True) -> bool:
        """Delete a class and unpaint its voxels (after a confirmation when ``ask``)."""
        from app.store.label_classes import ClassError, delete_class, get_class

        try:
            cls = get_class(self.app.store, self.job_id, value)
        except ClassError as exc:
            self.show_message(str(exc), error=True)
            return False
        if ask:
            box = QMessageBox(
                QMessageBox.Icon.Warning, "Delete class",
                f"Delete class {cls.value} “{cls.name}” and unpaint its {cls.voxel_count} voxels?\n"
                "This cannot be undone.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self,
            )
            box.setObjectName("confirmDeleteClass")
            if box.exec() != QMessageBox.StandardButton.Yes:
                return False
        self.commit_edits()
        old_status = self.app.store.get(self.job_id).status
        try:
            removed = delete_class(self.app.store, self.job_id, value)
        except ClassError as exc:
            self.show_message(str(exc), error=True)
            return False
        new_status = self.app.store.get(self.job_id).status
        self._after_disk_change()
        if new_status != old_status:
            self._announce((old_status, new_status))
        self.show_message(f"Deleted class “{cls.name}” ({removed} voxels unpainted). {HISTORY_RESET}")
        return True

    def _after_disk_change(self) -> None:
        """The annotations changed on disk behind the buffer (delete, import): reload."""
        if self.buffer is not None:
            self.buffer.reload()
            self.view.clear_history()
            self.view.refresh_labels()
        self._refresh_classes()
        self._update_class_counts()
        self._update_summary()
        self.stroke_committed.emit(*self.current_plane())

    def _ask_add_class(self) -> None:
        name, ok = QInputDialog.getText(self, "Add class", "Name of the new class:")
        if ok and name.strip():
            self.add_class(name)

    def _ask_rename_class(self) -> None:
        cls = self._selected_class()
        if cls is None:
            return
        name, ok = QInputDialog.getText(self, "Rename class", f"New name of class {cls.value}:", text=cls.name)
        if ok:
            self.rename_class(cls.value, name)

    def _ask_recolor_class(self) -> None:
        cls = self._selected_class()
        if cls is None:
            return
        color = QColorDialog.getColor(QColor(cls.color), self, f"Colour of {cls.name}")
        if color.isValid():
            self.recolor_class(cls.value, color.name())

    def _ask_delete_class(self) -> None:
        cls = self._selected_class()
        if cls is not None:
            self.delete_class(cls.value)

    def _class_double_clicked(self, row: int, col: int) -> None:
        if col == 1:
            self._ask_recolor_class()
        else:
            self._ask_rename_class()

    # -- summary -----------------------------------------------------------------------
    def _update_summary(self) -> None:
        """The paint changed: show it now, and have the slices painted on worked out again."""
        self.painted_planes.changed()
        self._render_summary()

    def _render_summary(self) -> None:
        tree = self.summary_tree
        tree.clear()
        if self.buffer is None:
            return
        stats = self.buffer.stats
        counts = stats.class_counts()
        voxels = QTreeWidgetItem([f"Voxels per class ({stats.total} painted)"])
        names = {c.value: c.name for c in self._classes}
        for value in sorted(set(names) | set(counts)):
            voxels.addChild(QTreeWidgetItem([f"{value} {names.get(value, '(deleted)')}: {counts.get(value, 0)}"]))
        tree.addTopLevelItem(voxels)
        voxels.setExpanded(True)
        painted_on = self.painted_planes.planes
        for axis in range(3):
            holding = stats.painted_slices(axis)
            if painted_on is None:  # not worked out (yet): every slice that holds paint
                slices = holding
            else:  # painted on, and still holding paint (a stroke since may have erased it)
                slices = [i for i in painted_on[axis] if stats.profiles[axis][i]]
            item = QTreeWidgetItem([f"Painted {AXES[axis]} slices: {len(slices)}"])
            item.setData(0, Qt.ItemDataRole.UserRole, (axis, slices[0]) if slices else None)
            for index in slices[:MAX_LISTED_SLICES]:
                child = QTreeWidgetItem([f"{AXES[axis]} {index} ({int(stats.profiles[axis][index])} voxels)"])
                child.setData(0, Qt.ItemDataRole.UserRole, (axis, index))
                item.addChild(child)
            if len(slices) > MAX_LISTED_SLICES:
                item.addChild(QTreeWidgetItem([f"… {len(slices) - MAX_LISTED_SLICES} more"]))
            crossed = len(holding) - len(slices)
            if crossed > 0:
                note = QTreeWidgetItem([f"+{crossed} crossed by paint on other planes"])
                note.setToolTip(0, f"{crossed} more {AXES[axis]} slices hold paint that was laid on slices of "
                                   "the other planes (a stroke on a z slice crosses many y and x slices)")
                item.addChild(note)
            tree.addTopLevelItem(item)
            item.setExpanded(0 < len(slices) <= 20)
        self.summary_changed.emit()

    def summary_items(self, axis: int) -> list[QTreeWidgetItem]:
        """The clickable slice entries of plane ``axis`` in the summary."""
        top = self.summary_tree.topLevelItem(1 + axis)
        children = [top.child(i) for i in range(top.childCount())] if top else []
        return [child for child in children if child.data(0, Qt.ItemDataRole.UserRole)]

    def _summary_clicked(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        target = item.data(0, Qt.ItemDataRole.UserRole)
        if target:
            self.go_to(*target)

    # -- import / export ------------------------------------------------------------------
    def import_labels(self, path: str, slices: str | None = None, mapping: list[str] | None = None,
                      wait: bool = False) -> None:
        """Import a label volume in the background (``slices`` like 'z:1,2', ``mapping`` like ['7=2'])."""
        from app.pipeline.annotations import parse_mapping, parse_slices
        from app.stages.annotation import import_job_labels

        if self.job_id is None or self._busy:
            return
        try:
            chosen = parse_slices(slices) if slices else None
            pairs = parse_mapping(mapping or [])
        except StageError as exc:
            self.show_message(str(exc), error=True)
            return
        self.commit_edits()
        store, job = self.app.store, self.app.store.get(self.job_id)
        old_status = job.status
        self._set_busy(True, f"Importing {Path(path).name}…")

        def done(written) -> None:
            self._set_busy(False, f"Imported {written} labelled voxels from {Path(path).name}. {HISTORY_RESET}")
            self._after_disk_change()
            new_status = store.get(job.id).status
            if new_status != old_status:
                self._announce((old_status, new_status))

        def failed(message: str) -> None:
            self._set_busy(False, f"Import failed: {message}", error=True)

        task = BackgroundTask(lambda: import_job_labels(store, job, path, chosen, pairs), done, failed)
        self._run_task(task, wait)

    def export_labels(self, fmt: str, out: str, wait: bool = False) -> None:
        """Export the annotations (tiff, zarr, npy) in the background."""
        from app.stages.annotation import export_job_annotations

        if self.job_id is None or self._busy:
            return
        self.commit_edits()
        store, job = self.app.store, self.app.store.get(self.job_id)
        self._set_busy(True, f"Exporting to {out}…")
        task = BackgroundTask(
            lambda: export_job_annotations(store, job, fmt, out),
            lambda paths: self._set_busy(False, "Exported " + ", ".join(str(p) for p in paths)),
            lambda message: self._set_busy(False, f"Export failed: {message}", error=True),
        )
        self._run_task(task, wait)

    def _run_task(self, task: BackgroundTask, wait: bool) -> None:
        self._task = task  # keep its signals alive until it reports
        QThreadPool.globalInstance().start(task)
        if wait:
            from PySide6.QtCore import QCoreApplication

            while self._busy:
                QThreadPool.globalInstance().waitForDone(50)
                QCoreApplication.processEvents()

    def _set_busy(self, busy: bool, message: str, error: bool = False) -> None:
        self._busy = busy
        self._set_enabled(not busy and self.buffer is not None)
        if self.view is not None and self.buffer is not None:
            self.view.set_tool("pan" if busy else self.tool)
        self.show_message(message, error)

    def _ask_import(self) -> None:
        dialog = ImportDialog([(c.value, c.name) for c in self._classes], self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            path, slices, mapping = dialog.values()
            if path:
                self.import_labels(path, slices, mapping)

    def _ask_export(self) -> None:
        fmt, ok = QInputDialog.getItem(
            self, "Export annotations", "Format:",
            ["tiff (multi-page file)", "tiff (folder of slices)", "zarr", "npy"], 0, False,
        )
        if not ok:
            return
        if fmt == "tiff (folder of slices)":
            out = QFileDialog.getExistingDirectory(self, "Folder for the TIFF slices")
        else:
            suffix = {"zarr": ".zarr", "npy": ".npy"}.get(fmt, ".tif")
            out, _ = QFileDialog.getSaveFileName(self, "Export annotations", f"annotations{suffix}")
        if out:
            self.export_labels(fmt.split()[0], out)

    # -- messages ---------------------------------------------------------------------------
    def show_message(self, text: str, error: bool = False) -> None:
        self.message_label.setStyleSheet("color: #c62828;" if error else "")
        self.message_label.setText(text)

    # -- API for other pages ------------------------------------------------------------------
    def set_overlay(self, name: str, data: Any, colors: Mapping[int, str] | str | None = None,
                    opacity: float = 0.5, visible: bool = True) -> None:
        """Show ``data`` (a 2D slice of the current plane, a 3D array or a multiscale list) over the volume."""
        if self.view is not None and self.buffer is not None:
            self.view.set_overlay(name, data, colors, opacity, visible)

    def remove_overlay(self, name: str) -> None:
        if self.view is not None:
            self.view.remove_overlay(name)

    def add_tool_widget(self, widget: QWidget) -> None:
        """Put another page's controls (toggles, buttons) in this page's side panel."""
        self.extra_layout.addWidget(widget)
        self.extra_box.setVisible(True)
