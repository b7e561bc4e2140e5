"""The welcome shown on the main window while the workspace has no job yet.

Two buttons, "Open sample" and "New job", and two lines on the flow. The
panel only emits signals; the window connects them to its own actions and
swaps the panel for the job view once a job exists (:func:`wants_welcome`).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from app.store.jobs import JobStore

TITLE = "Welcome to Strata"
FLOW_LINES = (
    "Load a scan, paint a few strokes of each material on any slice, and train a model.",
    "Strata segments the whole volume and builds a 3D mesh of every material, ready to export.",
)


def wants_welcome(store: JobStore) -> bool:
    """Whether the workspace is empty, so the welcome should show."""
    return not store.list_jobs()


class WelcomePanel(QWidget):
    """A short welcome with "Open sample" and "New job"."""

    open_sample_requested = Signal()
    new_job_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("WelcomePanel")
        title = QLabel(TITLE)
        font = QFont(title.font())
        font.setPointSizeF(font.pointSizeF() * 1.8)
        font.setBold(True)
        title.setFont(font)
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)

        self.flow = QLabel("\n".join(FLOW_LINES))
        self.flow.setObjectName("welcomeFlow")
        self.flow.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.flow.setWordWrap(True)
        self.flow.setMaximumWidth(640)

        self.sample_button = QPushButton("Open sample")
        self.sample_button.setObjectName("openSample")
        self.sample_button.setToolTip("Create a job from the fossil-like sample that ships with Strata")
        self.sample_button.setDefault(True)
        self.new_button = QPushButton("New job…")
        self.new_button.setObjectName("newJob")
        self.new_button.setToolTip("Load a folder of slices, a TIFF stack, a DICOM series or a zip")
        for button in (self.sample_button, self.new_button):
            button.setMinimumSize(160, 40)
            button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.sample_button.clicked.connect(self.open_sample_requested)
        self.new_button.clicked.connect(self.new_job_requested)

        hint = QLabel("You can also drop a folder or files on the window.")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setStyleSheet("color: palette(mid);")

        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.sample_button)
        buttons.addSpacing(16)
        buttons.addWidget(self.new_button)
        buttons.addStretch(1)

        layout = QVBoxLayout(self)
        layout.addStretch(2)
        layout.addWidget(title)
        layout.addSpacing(12)
        flow_row = QHBoxLayout()
        flow_row.addStretch(1)
        flow_row.addWidget(self.flow, 4)
        flow_row.addStretch(1)
        layout.addLayout(flow_row)
        layout.addSpacing(24)
        layout.addLayout(buttons)
        layout.addSpacing(12)
        layout.addWidget(hint)
        layout.addStretch(3)
