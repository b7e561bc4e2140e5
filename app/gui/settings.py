"""Preferences kept with QSettings, and the Settings dialog.

Preferences: the workspace folder, the number of worker threads, the default
model kind (quick | deep), and the default mesh smoothing and decimation.
Choosing another workspace folder offers to copy (or move) the data there; the
copy runs in a worker with progress and cancel, and the window then reopens on
the new folder.
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, QThreadPool, Signal, Slot
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
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core.progress import ProgressContext
from app.core.workspace import APP_NAME, default_workspace
from app.gui.worker import BackgroundTask
from app.store.relocate import is_workspace, relocate_workspace, workspace_has_data

MODEL_KINDS = ("quick", "deep")


def app_settings() -> QSettings:
    """The app's QSettings: an INI file, at ``$STRATA_SETTINGS`` if set (tests, portable use)."""
    path = os.environ.get("STRATA_SETTINGS")
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, APP_NAME, APP_NAME)


def _cpu_count() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass
class Preferences:
    """What the Settings dialog edits; ``workspace`` empty means the default folder."""

    workspace: str = ""
    worker_threads: int = 2
    model_kind: str = "quick"
    #: Smoothing strength, 0 (off) to 1.
    mesh_smoothing: float = 0.5
    #: Fraction of triangles kept by decimation, 1.0 keeps all.
    mesh_decimation: float = 0.25

    @classmethod
    def load(cls, settings: QSettings | None = None) -> "Preferences":
        settings = settings or app_settings()
        base = cls()
        base.worker_threads = min(2, _cpu_count())

        def value(key: str, default, kind):
            raw = settings.value(f"preferences/{key}", default)
            try:
                return kind(raw)
            except (TypeError, ValueError):
                return default

        prefs = cls(
            workspace=str(value("workspace", base.workspace, str) or ""),
            worker_threads=max(1, min(64, value("worker_threads", base.worker_threads, int))),
            model_kind=value("model_kind", base.model_kind, str),
            mesh_smoothing=min(1.0, max(0.0, value("mesh_smoothing", base.mesh_smoothing, float))),
            mesh_decimation=min(1.0, max(0.01, value("mesh_decimation", base.mesh_decimation, float))),
        )
        if prefs.model_kind not in MODEL_KINDS:
            prefs.model_kind = base.model_kind
        return prefs

    def save(self, settings: QSettings | None = None) -> None:
        settings = settings or app_settings()
        for key, value in asdict(self).items():
            settings.setValue(f"preferences/{key}", value)
        settings.sync()


def startup_workspace(explicit: str | os.PathLike | None = None, settings: QSettings | None = None) -> Path:
    """The folder the window opens: ``--workspace``, else ``$STRATA_HOME``, else Settings, else the default."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("STRATA_HOME"):
        return default_workspace()
    chosen = Preferences.load(settings).workspace
    return Path(chosen).expanduser() if chosen else default_workspace()


class _CopySignals(QObject):
    progress = Signal(float, str)


class SettingsDialog(QDialog):
    """Edit the preferences; moving the workspace offers to copy the data.

    ``workspace_changed(path)`` is emitted once the new folder is ready (data
    copied or moved, or an empty or existing workspace chosen);
    ``preferences_changed(prefs)`` on every accepted change.
    """

    workspace_changed = Signal(str)
    preferences_changed = Signal(object)

    COPY, MOVE, EMPTY = "copy", "move", "empty"

    def __init__(
        self,
        current_workspace: str | os.PathLike,
        settings: QSettings | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setObjectName("SettingsDialog")
        self.settings = settings or app_settings()
        self.current_workspace = Path(current_workspace).expanduser().resolve()
        self.prefs = Preferences.load(self.settings)
        self._cancel = threading.Event()
        self._task: BackgroundTask | None = None
        self.busy = False
        self._build()
        self._fill()

    # -- layout ---------------------------------------------------------
    def _build(self) -> None:
        self.workspace_edit = QLineEdit()
        self.workspace_edit.setObjectName("workspace")
        self.workspace_edit.textChanged.connect(self._workspace_edited)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.workspace_edit, 1)
        row.addWidget(browse)

        self.threads = QSpinBox()
        self.threads.setRange(1, max(2, _cpu_count() * 2))
        self.threads.setToolTip("How many stages may run at the same time")
        self.model_kind = QComboBox()
        self.model_kind.addItem("Quick (pixel classifier, seconds)", "quick")
        self.model_kind.addItem("Deep (U-Net, minutes)", "deep")
        self.smoothing = QDoubleSpinBox()
        self.smoothing.setRange(0.0, 1.0)
        self.smoothing.setSingleStep(0.05)
        self.smoothing.setSpecialValueText("off")
        self.smoothing.setToolTip("Surface smoothing strength; 0 turns it off")
        self.decimation = QSpinBox()
        self.decimation.setRange(1, 100)
        self.decimation.setSuffix(" % of triangles kept")
        self.decimation.setToolTip("Decimation target; 100 % keeps every triangle")

        form = QFormLayout()
        form.addRow("Workspace folder", row)
        if os.environ.get("STRATA_HOME"):
            env_note = QLabel("STRATA_HOME is set: it chooses the workspace at start-up, before this setting.")
            env_note.setWordWrap(True)
            env_note.setStyleSheet("color: palette(mid);")
            form.addRow("", env_note)
        form.addRow("Worker threads", self.threads)
        form.addRow("Default model", self.model_kind)
        form.addRow("Mesh smoothing", self.smoothing)
        form.addRow("Mesh decimation", self.decimation)

        self.move_box = QGroupBox("The new folder")
        self.move_note = QLabel()
        self.move_note.setWordWrap(True)
        self.copy_radio = QRadioButton("Copy my jobs there (the old folder stays as it is)")
        self.move_radio = QRadioButton("Move my jobs there (copy, then remove them from the old folder)")
        self.empty_radio = QRadioButton("Start with an empty workspace there")
        self.choice = QButtonGroup(self)
        for button in (self.copy_radio, self.move_radio, self.empty_radio):
            self.choice.addButton(button)
        self.copy_radio.setChecked(True)
        box = QVBoxLayout(self.move_box)
        box.addWidget(self.move_note)
        box.addWidget(self.copy_radio)
        box.addWidget(self.move_radio)
        box.addWidget(self.empty_radio)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.hide()
        self.message = QLabel()
        self.message.setObjectName("settingsMessage")
        self.message.setWordWrap(True)
        self.message.hide()

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.move_box)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(560)

    def _fill(self) -> None:
        self.workspace_edit.setText(str(self.current_workspace))
        self.threads.setValue(self.prefs.worker_threads)
        self.model_kind.setCurrentIndex(max(0, self.model_kind.findData(self.prefs.model_kind)))
        self.smoothing.setValue(self.prefs.mesh_smoothing)
        self.decimation.setValue(round(self.prefs.mesh_decimation * 100))
        self._workspace_edited()

    # -- choices ----------------------------------------------------------
    def chosen_workspace(self) -> Path:
        text = self.workspace_edit.text().strip()
        return Path(text).expanduser().resolve() if text else self.current_workspace

    def chosen_preferences(self) -> Preferences:
        return Preferences(
            workspace=str(self.chosen_workspace()),
            worker_threads=self.threads.value(),
            model_kind=self.model_kind.currentData(),
            mesh_smoothing=round(self.smoothing.value(), 3),
            mesh_decimation=self.decimation.value() / 100.0,
        )

    def set_transfer(self, how: str) -> None:
        """Pick what happens to the data: COPY, MOVE or EMPTY."""
        {self.COPY: self.copy_radio, self.MOVE: self.move_radio, self.EMPTY: self.empty_radio}[how].setChecked(True)

    def transfer(self) -> str:
        if self.move_radio.isChecked():
            return self.MOVE
        return self.EMPTY if self.empty_radio.isChecked() else self.COPY

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Workspace folder", str(self.chosen_workspace()))
        if folder:
            self.workspace_edit.setText(folder)

    def _workspace_edited(self) -> None:
        target = self.chosen_workspace()
        changed = target != self.current_workspace
        self.move_box.setVisible(changed)
        if not changed:
            return
        has_data = workspace_has_data(self.current_workspace)
        if target.is_dir() and is_workspace(target):
            self.move_note.setText(f"{target} already holds a Strata workspace: it opens as it is.")
            for button in (self.copy_radio, self.move_radio):
                button.setEnabled(False)
            self.empty_radio.setText("Open that workspace")
            self.empty_radio.setChecked(True)
            return
        self.empty_radio.setText("Start with an empty workspace there")
        for button in (self.copy_radio, self.move_radio):
            button.setEnabled(has_data)
        if has_data:
            self.move_note.setText(f"Your jobs are in {self.current_workspace}. Take them along?")
            if self.empty_radio.isChecked() and not self.copy_radio.isEnabled():
                self.copy_radio.setChecked(True)
        else:
            self.move_note.setText("The current workspace is empty; Strata starts afresh in the new folder.")
            self.empty_radio.setChecked(True)

    # -- accept -----------------------------------------------------------
    def show_error(self, text: str) -> None:
        self.message.setStyleSheet("color: #b00020;")
        self.message.setText(text)
        self.message.show()

    def accept(self) -> None:  # noqa: D102
        if self.busy:
            return
        prefs = self.chosen_preferences()
        target = self.chosen_workspace()
        if target == self.current_workspace or not self.move_box.isVisible():
            self._finish(prefs, moved=False)
            return
        if target.exists() and not target.is_dir():
            self.show_error(f"{target}: exists and is not a folder")
            return
        how = self.transfer()
        if how == self.EMPTY:
            try:
                target.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self.show_error(f"{target}: cannot create the folder ({exc.strerror or exc})")
                return
            self._finish(prefs, moved=True)
            return
        self._start_copy(prefs, target, move=how == self.MOVE)

    def _start_copy(self, prefs: Preferences, target: Path, move: bool) -> None:
        self.busy = True
        self._cancel.clear()
        self.message.hide()
        self.progress.setValue(0)
        self.progress.show()
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)
        for widget in (self.workspace_edit, self.move_box):
            widget.setEnabled(False)
        signals = _CopySignals(self)
        signals.progress.connect(self._copy_progress)
        self._signals = signals
        ctx = ProgressContext(lambda f, m: signals.progress.emit(f, m), self._cancel)
        source = self.current_workspace

        def work():
            return relocate_workspace(source, target, ctx, move=move)

        self._task = BackgroundTask(
            work,
            on_done=lambda result: self._copy_done(prefs),
            on_error=self._copy_failed,
        )
        QThreadPool.globalInstance().start(self._task)

    @Slot(float, str)
    def _copy_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.progress.setFormat(f"%p%  {message[:60]}")

    def _copy_done(self, prefs: Preferences) -> None:
        self.busy = False
        self.progress.setValue(1000)
        self._finish(prefs, moved=True)

    def _copy_failed(self, message: str) -> None:
        self.busy = False
        self.progress.hide()
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(True)
        for widget in (self.workspace_edit, self.move_box):
            widget.setEnabled(True)
        if self._cancel.is_set():
            self.show_error("Copy cancelled; the workspace stays where it was.")
        else:
            self.show_error(message)

    def reject(self) -> None:  # noqa: D102
        if self.busy:
            self._cancel.set()
            return
        super().reject()

    def _finish(self, prefs: Preferences, moved: bool) -> None:
        if Path(prefs.workspace) == default_workspace().expanduser().resolve():
            prefs.workspace = ""
        prefs.save(self.settings)
        self.prefs = prefs
        self.preferences_changed.emit(prefs)
        if moved:
            self.workspace_changed.emit(str(self.chosen_workspace()))
        super().accept()

    def wait_for_copy(self, msecs: int = 60000) -> bool:
        """Block until a running copy has ended (tests)."""
        return QThreadPool.globalInstance().waitForDone(msecs)

