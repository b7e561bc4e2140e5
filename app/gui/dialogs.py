"""Dialogs of the main window: a new job from a folder, files or a zip; renaming a job."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

FOLDER, FILES, ZIP = "folder", "files", "zip"
KIND_LABELS = {
    FOLDER: "Folder of slices (TIFF, PNG, JPEG, BMP or DICOM)",
    FILES: "One or more files (multi-page TIFF, DICOM, NRRD, NIfTI)",
    ZIP: "Zip archive",
}
#: Units offered for a typed voxel size: (label, stored value).
UNITS = (("µm", "um"), ("nm", "nm"), ("mm", "mm"), ("voxel", ""))
ERROR_STYLE = "color: #c62828;"


@dataclass(frozen=True)
class NewJobRequest:
    """What the New job dialog asks for."""

    name: str
    sources: list[str]
    spacing: tuple[float, float, float] | None
    unit: str


def suggest_name(sources: Sequence[str | os.PathLike]) -> str:
    """A job name from the sources: the pipeline's rule, else the folder or file name."""
    paths = [str(s) for s in sources]
    if not paths:
        return ""
    try:
        from app.pipeline.sources import default_job_name

        return default_job_name(paths)
    except Exception:  # noqa: BLE001 - the pipeline's rule is optional here
        pass
    first = Path(paths[0])
    name = first.name if first.is_dir() else first.name.split(".")[0]
    return name or "Untitled"


def guess_kind(paths: Sequence[str | os.PathLike]) -> str:
    """Which kind of source a list of dropped paths is."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        return FOLDER
    if len(paths) == 1 and str(paths[0]).lower().endswith(".zip"):
        return ZIP
    return FILES


def check_sources(kind: str, paths: Sequence[str]) -> str:
    """An empty string when the chosen sources can be imported, else what is wrong."""
    if not paths:
        missing = {FOLDER: "Choose a folder of slices.", FILES: "Choose one or more files.", ZIP: "Choose a zip file."}
        return missing[kind]
    for text in paths:
        path = Path(text)
        if not path.exists():
            return f"{path} does not exist."
        if not os.access(path, os.R_OK):
            return f"{path} cannot be read (permission denied)."
    if kind == FOLDER:
        if len(paths) != 1 or not Path(paths[0]).is_dir():
            return "Choose one folder."
        if not any(not p.name.startswith(".") for p in Path(paths[0]).iterdir()):
            return f"The folder {paths[0]} is empty."
    elif kind == ZIP:
        if len(paths) != 1 or not Path(paths[0]).is_file() or not paths[0].lower().endswith(".zip"):
            return "Choose one .zip file."
    else:
        for text in paths:
            if Path(text).is_dir():
                return f"{text} is a folder: choose 'Folder of slices' for it."
            if Path(text).stat().st_size == 0:
                return f"{text} is empty (0 bytes)."
    return ""


class _CheckedDialog(QDialog):
    """A dialog whose OK button is enabled only while ``problem()`` finds nothing wrong."""

    message_label: QLabel
    buttons: QDialogButtonBox

    def problem(self) -> str:
        """What is missing or wrong, as a sentence ("" when nothing is)."""
        return ""

    @Slot()
    def validate(self) -> str:
        """Show the problem, if any, and enable OK only when there is none."""
        problem = self.problem()
        self.message_label.setText(problem)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problem)
        return problem

    def accept(self) -> None:  # noqa: D102
        if self.validate():
            return
        super().accept()


class NewJobDialog(_CheckedDialog):
    """Create a job: pick the scan, name it, and optionally give its voxel size."""

    def __init__(self, parent: QWidget | None = None, sources: Sequence[str] = ()) -> None:
        super().__init__(parent)
        self.setWindowTitle("New job")
        self.setMinimumWidth(560)
        self._name_edited = False
        self._sources: list[str] = []

        # Kind of source.
        self.kind_buttons: dict[str, QRadioButton] = {}
        self._kind_group = QButtonGroup(self)
        kind_box = QGroupBox("Scan to load")
        kind_layout = QVBoxLayout(kind_box)
        for kind, label in KIND_LABELS.items():
            button = QRadioButton(label)
            button.setObjectName(f"kind_{kind}")
            self.kind_buttons[kind] = button
            self._kind_group.addButton(button)
            kind_layout.addWidget(button)
            button.toggled.connect(self._kind_toggled)

        self.source_list = QListWidget()
        self.source_list.setObjectName("sources")
        self.source_list.setMaximumHeight(90)
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self.browse)
        row = QHBoxLayout()
        row.addWidget(self.source_list, 1)
        row.addWidget(self.browse_button, 0, Qt.AlignmentFlag.AlignTop)
        kind_layout.addLayout(row)

        # Name.
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("name")
        self.name_edit.setPlaceholderText("a name for the job")
        self.name_edit.textEdited.connect(self._on_name_edited)
        self.name_edit.textChanged.connect(self.validate)

        # Voxel size.
        self.spacing_box = QGroupBox("Voxel size (only when the files carry none)")
        self.spacing_box.setCheckable(True)
        self.spacing_box.setChecked(False)
        self.spacing_spins: list[QDoubleSpinBox] = []
        spacing_row = QHBoxLayout(self.spacing_box)
        for axis in "zyx":
            spin = QDoubleSpinBox()
            spin.setObjectName(f"spacing_{axis}")
            spin.setDecimals(4)
            spin.setRange(0.0001, 1e6)
            spin.setValue(1.0)
            spin.setAccessibleName(f"voxel size {axis}")
            spacing_row.addWidget(QLabel(f"{axis}:"))
            spacing_row.addWidget(spin, 1)
            self.spacing_spins.append(spin)
        self.unit_combo = QComboBox()
        self.unit_combo.setObjectName("unit")
        for label, value in UNITS:
            self.unit_combo.addItem(label, value)
        spacing_row.addWidget(QLabel("unit:"))
        spacing_row.addWidget(self.unit_combo)

        self.message_label = QLabel()
        self.message_label.setObjectName("message")
        self.message_label.setStyleSheet(ERROR_STYLE)
        self.message_label.setWordWrap(True)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Create job")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        form.addRow("Name:", self.name_edit)
        layout = QVBoxLayout(self)
        layout.addWidget(kind_box)
        layout.addLayout(form)
        layout.addWidget(self.spacing_box)
        layout.addWidget(self.message_label)
        layout.addWidget(self.buttons)
        self.kind_buttons[FOLDER].setChecked(True)
        if sources:
            self.set_sources(sources)
        self.validate()

    # -- state ---------------------------------------------------------------
    @property
    def kind(self) -> str:
        for kind, button in self.kind_buttons.items():
            if button.isChecked():
                return kind
        return FOLDER

    def set_kind(self, kind: str) -> None:
        self.kind_buttons[kind].setChecked(True)

    def sources(self) -> list[str]:
        return list(self._sources)

    def set_sources(self, paths: Sequence[str | os.PathLike], kind: str | None = None) -> None:
        """Choose the scan (from Browse, a drop, or a test); the kind follows unless given."""
        self._sources = [str(p) for p in paths]
        self.kind_buttons[kind or guess_kind(self._sources)].setChecked(True)
        self.source_list.clear()
        self.source_list.addItems(self._sources)
        if not self._name_edited:
            self.name_edit.setText(suggest_name(self._sources))
        self.validate()

    def set_spacing(self, spacing: tuple[float, float, float] | None, unit: str = "um") -> None:
        self.spacing_box.setChecked(spacing is not None)
        if spacing is not None:
            for spin, value in zip(self.spacing_spins, spacing):
                spin.setValue(float(value))
            index = self.unit_combo.findData(unit)
            self.unit_combo.setCurrentIndex(max(index, 0))

    def request(self) -> NewJobRequest:
        spacing = None
        unit = ""
        if self.spacing_box.isChecked():
            spacing = tuple(spin.value() for spin in self.spacing_spins)
            unit = self.unit_combo.currentData() or ""
        return NewJobRequest(self.name_edit.text().strip(), self.sources(), spacing, unit)  # type: ignore[arg-type]

    # -- validation ------------------------------------------------------------
    def problem(self) -> str:
        """What is missing or wrong; the Create button is enabled only when nothing is."""
        problem = check_sources(self.kind, self._sources)
        if not problem and not self.name_edit.text().strip():
            problem = "Give the job a name."
        return problem

    # -- slots -------------------------------------------------------------------
    @Slot(bool)
    def _kind_toggled(self, checked: bool) -> None:
        if checked and self._sources and guess_kind(self._sources) != self.kind:
            self._sources = []
            self.source_list.clear()
        if checked:
            self.validate()

    @Slot(str)
    def _on_name_edited(self, _text: str) -> None:
        self._name_edited = True

    @Slot()
    def browse(self) -> None:
        """Pick the scan with the platform's file dialog."""
        start = self._sources[0] if self._sources else str(Path.home())
        if self.kind == FOLDER:
            folder = QFileDialog.getExistingDirectory(self, "Folder of slices", start)
            paths = [folder] if folder else []
        elif self.kind == ZIP:
            path, _ = QFileDialog.getOpenFileName(self, "Zip archive", start, "Zip archives (*.zip)")
            paths = [path] if path else []
        else:
            paths, _ = QFileDialog.getOpenFileNames(
                self,
                "Scan files",
                start,
                "Scans (*.tif *.tiff *.dcm *.nrrd *.nhdr *.nii *.nii.gz *.png *.jpg *.jpeg *.bmp);;All files (*)",
            )
        if paths:
            self.set_sources(paths, self.kind)


class RenameDialog(_CheckedDialog):
    """Give a job another name."""

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Rename job")
        self.setMinimumWidth(380)
        self.name_edit = QLineEdit(name)
        self.name_edit.setObjectName("name")
        self.name_edit.selectAll()
        self.message_label = QLabel()
        self.message_label.setStyleSheet(ERROR_STYLE)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Rename")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.name_edit.textChanged.connect(self.validate)
        form = QFormLayout()
        form.addRow("New name:", self.name_edit)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.message_label)
        layout.addWidget(self.buttons)
        self.validate()

    def name(self) -> str:
        return self.name_edit.text().strip()

    def problem(self) -> str:  # noqa: D102
        return "" if self.name() else "A job's name cannot be empty."
