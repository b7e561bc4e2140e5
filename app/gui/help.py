"""The Help menu: keyboard shortcuts, and an About box with version, licences and citation."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QMainWindow,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import __version__

CITATION = (
    "During, Matelsky et al., \u201cAutomated segmentation of synchrotron-scanned fossils\u201d, "
    "Fossil Record 28, 2025."
)
ORIGIN = (
    "Strata brings the workflow of the ml4paleo web application to the desktop. "
    "If Strata helps your research, please cite the method's origin:"
)


@dataclass(frozen=True)
class Component:
    """A bundled component: the distribution to ask for its version, and its licence."""

    name: str
    distribution: str
    licence: str


#: What a standalone Strata bundles, with each project's licence.
COMPONENTS = (
    Component("Python", "", "PSF License"),
    Component("Qt for Python (PySide6, Qt 6)", "PySide6-Essentials", "LGPL-3.0 (dynamically linked, replaceable)"),
    Component("napari", "napari", "BSD-3-Clause"),
    Component("VisPy", "vispy", "BSD-3-Clause"),
    Component("VTK", "vtk", "BSD-3-Clause"),
    Component("PyTorch", "torch", "BSD-3-Clause"),
    Component("NumPy", "numpy", "BSD-3-Clause"),
    Component("SciPy", "scipy", "BSD-3-Clause"),
    Component("scikit-image", "scikit-image", "BSD-3-Clause"),
    Component("scikit-learn", "scikit-learn", "BSD-3-Clause"),
    Component("zarr", "zarr", "MIT"),
    Component("numcodecs (Blosc, Zstd, LZ4)", "numcodecs", "MIT; bundled codecs BSD"),
    Component("tifffile", "tifffile", "BSD-3-Clause"),
    Component("imagecodecs", "imagecodecs", "BSD-3-Clause"),
    Component("pydicom", "pydicom", "MIT"),
    Component("pynrrd", "pynrrd", "MIT"),
    Component("NiBabel", "nibabel", "MIT"),
    Component("Peewee", "peewee", "MIT"),
    Component("platformdirs", "platformdirs", "MIT"),
    Component("psutil", "psutil", "BSD-3-Clause"),
)

#: (group, keys, what) shown besides the window's own actions.
STATIC_SHORTCUTS = (
    ("Annotate", "P or 2", "Paint brush"),
    ("Annotate", "E or 1", "Eraser"),
    ("Annotate", "F or 4", "Fill"),
    ("Annotate", "L or 5", "Pick the material under the cursor"),
    ("Annotate", "Z or 6", "Pan and zoom"),
    ("Annotate", "[ and ]", "Smaller / larger brush"),
    ("Annotate", "- and =", "Previous / next material"),
    ("Annotate", "Ctrl+Z, Ctrl+Shift+Z", "Undo / redo a stroke"),
    ("Annotate", "Space (hold)", "Pan and zoom while painting"),
    ("View", "Left / Right arrow", "Previous / next slice"),
    ("View", "Ctrl+Y", "Toggle 2D / 3D"),
)


def component_version(component: Component) -> str:
    if not component.distribution:
        return platform.python_version()
    try:
        return metadata.version(component.distribution)
    except metadata.PackageNotFoundError:
        return "bundled"


def window_shortcuts(window: QWidget | None) -> list[tuple[str, str, str]]:
    """(group, keys, what) for every action of the window that has a shortcut."""
    rows: list[tuple[str, str, str]] = []
    if window is None:
        return rows
    seen = set()
    for action in window.findChildren(QAction):
        keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts() if not s.isEmpty())
        text = action.text().replace("&", "").rstrip(".…")
        if not keys or not text or (keys, text) in seen:
            continue
        seen.add((keys, text))
        rows.append(("Window", keys, text))
    rows.sort(key=lambda r: r[2].lower())
    return rows


def _table(headers: list[str], rows: list[tuple[str, ...]]) -> QTableWidget:
    table = QTableWidget(len(rows), len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(value))
    header = table.horizontalHeader()
    for c in range(len(headers) - 1):
        header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(len(headers) - 1, QHeaderView.ResizeMode.Stretch)
    return table


class ShortcutsDialog(QDialog):
    """Every keyboard shortcut: the window's actions and the annotation viewer's keys."""

    def __init__(self, window: QWidget | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent or window)
        self.setWindowTitle("Keyboard shortcuts")
        self.rows = window_shortcuts(window) + list(STATIC_SHORTCUTS)
        self.table = _table(["Where", "Keys", "What"], self.rows)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(520, 520)


class AboutDialog(QDialog):
    """Version, what Strata is, the citation of the method's origin and the bundled licences."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About Strata")
        head = QLabel(
            f"<h2>Strata {__version__}</h2>"
            "<p>Tomography scans to labelled volumes and 3D meshes, from a few painted slices.</p>"
            f"<p>Python {platform.python_version()} on {platform.system()} {platform.machine()}</p>"
        )
        head.setObjectName("aboutHead")
        head.setWordWrap(True)

        about = QWidget()
        cite_label = QLabel(f"<p>{ORIGIN}</p><p><b>{CITATION}</b></p>")
        cite_label.setObjectName("citation")
        cite_label.setWordWrap(True)
        cite_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        copy = QPushButton("Copy citation")
        copy.clicked.connect(self.copy_citation)
        box = QVBoxLayout(about)
        box.addWidget(cite_label)
        box.addWidget(copy, 0, Qt.AlignmentFlag.AlignLeft)
        box.addStretch(1)

        self.licences = _table(
            ["Component", "Version", "Licence"],
            [(c.name, component_version(c), c.licence) for c in COMPONENTS],
        )
        licence_note = QLabel(
            "Strata itself is MIT-licensed. Qt libraries are used under the LGPL-3.0 as shared "
            "libraries in the application folder, which you may replace with your own build."
        )
        licence_note.setWordWrap(True)
        licences = QWidget()
        lbox = QVBoxLayout(licences)
        lbox.addWidget(self.licences)
        lbox.addWidget(licence_note)

        tabs = QTabWidget()
        tabs.addTab(about, "Citation")
        tabs.addTab(licences, "Licences")
        self.tabs = tabs
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(head)
        layout.addWidget(tabs, 1)
        layout.addWidget(buttons)
        self.resize(620, 560)

    def copy_citation(self) -> None:
        QGuiApplication.clipboard().setText(CITATION)


def help_actions(window: QMainWindow) -> list[QAction]:
    """The Help menu's actions, parented to ``window``."""
    shortcuts = QAction("&Keyboard shortcuts…", window)
    shortcuts.setShortcut(QKeySequence(QKeySequence.StandardKey.HelpContents))
    shortcuts.triggered.connect(lambda: ShortcutsDialog(window).exec())
    about = QAction("&About Strata…", window)
    about.setMenuRole(QAction.MenuRole.AboutRole)
    about.triggered.connect(lambda: AboutDialog(window).exec())
    return [shortcuts, about]


def install_help_menu(window: QMainWindow) -> list[QAction]:
    """Add the Help menu to a window (through ``add_menu_action`` when it has one)."""
    actions = help_actions(window)
    add = getattr(window, "add_menu_action", None)
    if callable(add):
        for action in actions:
            add("&Help", action)
    else:
        menu = window.menuBar().addMenu("&Help")
        menu.addActions(actions)
    return actions
