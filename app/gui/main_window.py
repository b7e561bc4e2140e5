"""The main window: the job list on the left, the selected job's pages as tabs on the right."""

from __future__ import annotations

import importlib
import logging
import traceback
from pathlib import Path
from typing import Callable, Sequence

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, QThreadPool, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHeaderView,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QStyle,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.memory import freeze_long_lived, return_freed_memory
from app.core.statuses import ERRORS, JobStatus, TransitionError, parse_status
from app.gui.dialogs import NewJobDialog, NewJobRequest, RenameDialog
from app.gui.job_table import JobTableModel, ProgressDelegate, status_label
from app.gui.pages import PAGES
from app.gui.pages.base import AppContext, JobPage
from app.gui.worker import BackgroundTask
from app.store.jobs import QUEUED, JobNotFound

log = logging.getLogger(__name__)
S = JobStatus

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
#: Where a failed stage can be tried again from.
RETRY_FROM = {S.CONVERT_ERROR: S.UPLOADED, S.ERROR: S.PENDING}
#: How often the list is re-read to catch changes made by other processes (the CLI), ms.
REFRESH_MS = 3000
#: How long after start-up the pages warm up (their heavy viewers), ms.
WARM_UP_DELAY_MS = 300
#: How long closing waits for cancelled workers, ms.
CLOSE_WAIT_MS = 5000


def resource_path(name: str) -> Path:
    """A file in ``resources/``."""
    return RESOURCES / name


def app_icon() -> QIcon:
    icon = QIcon()
    for name in ("strata.svg", "strata-256.png"):
        path = resource_path(name)
        if path.exists():
            icon.addFile(str(path))
    return icon


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


class _BrokenPage(JobPage):
    """Stands in for a page that failed to load, so the window still opens."""

    def __init__(self, app: AppContext, title: str, problem: str, parent: QWidget | None = None) -> None:
        super().__init__(app, parent)
        self.title = title
        label = QLabel(f"The {title} page could not be loaded:\n\n{problem}")
        label.setWordWrap(True)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        label.setStyleSheet("color: #b71c1c;")
        QVBoxLayout(self).addWidget(label)


class MainWindow(QMainWindow):
    """Jobs and their pages. Public API for pages: :meth:`select_job`,
    :meth:`current_job_id`, :attr:`pages`, :meth:`show_page`,
    :meth:`add_menu_action`, :meth:`status_message`."""

    def __init__(self, app: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.app = app
        self.store = app.store
        self.scheduler = app.scheduler
        #: The dialog or question box last opened by the window (tests answer it).
        self.active_dialog: QDialog | None = None
        self.pages: dict[str, JobPage] = {}
        self._current_job: int | None = None
        self._shown_page: JobPage | None = None
        self._closing = False
        self._sample_running = False
        self._progress_text: dict[int, str] = {}

        self.setWindowTitle(f"Strata — {self.store.workspace.root}")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.resize(1500, 920)

        self._build_job_list()
        self._build_pages()
        self._build_actions()
        self._build_menus_and_toolbar()
        self.statusBar().showMessage("Ready", 3000)
        self.activity_label = QLabel()
        self.statusBar().addPermanentWidget(self.activity_label)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.job_view)
        splitter.addWidget(self.right_stack)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        self._sized = False
        splitter.setChildrenCollapsible(False)
        self.splitter = splitter
        self.setCentralWidget(splitter)

        self.scheduler.status_changed.connect(self.model.on_status_changed)
        self.scheduler.status_changed.connect(self._on_status_changed)
        self.scheduler.progress.connect(self.model.on_progress)
        self.scheduler.progress.connect(self._on_progress)
        self.scheduler.failed.connect(self._on_failed)
        self.scheduler.finished.connect(self._on_finished)

        self._refresh_timer = QTimer(self)
        self._refresh_timer.setInterval(REFRESH_MS)
        self._refresh_timer.timeout.connect(self.refresh_jobs)
        self._refresh_timer.start()

        self._after_jobs_changed()
        if self.model.rowCount():
            self.select_job(self.model.job_id_at(0))

    # -- construction ---------------------------------------------------------------
    def _build_job_list(self) -> None:
        self.model = JobTableModel(self.store, self)
        view = QTableView()
        view.setObjectName("jobTable")
        view.setModel(self.model)
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        view.setItemDelegateForColumn(JobTableModel.PROGRESS, ProgressDelegate(view))
        view.verticalHeader().hide()
        view.setAlternatingRowColors(True)
        view.setWordWrap(False)
        view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        view.customContextMenuRequested.connect(self._job_context_menu)
        header = view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setHighlightSections(False)
        header.setStretchLastSection(True)
        self._fit_columns(view)
        view.selectionModel().currentRowChanged.connect(self._on_current_row_changed)
        self.model.modelReset.connect(self._restore_selection)
        view.setMinimumWidth(360)
        self.job_view = view

    #: Text each column must fit without eliding (typical widest values).
    COLUMN_SAMPLES = (
        "Shell (micro-CT) 2",
        "Training queued",
        "Progress",
        "1024 × 2048 × 2048",
        "float32",
        "0.5 × 0.5 × 0.5 µm",
        "03 Dec 17:44",
        "03 Dec 17:44",
    )

    def _fit_columns(self, view: QTableView) -> None:
        """Columns wide enough for typical values and their headers."""
        metrics = view.fontMetrics()
        header_metrics = view.horizontalHeader().fontMetrics()
        for column, sample in enumerate(self.COLUMN_SAMPLES):
            title = JobTableModel.COLUMNS[column]
            width = max(metrics.horizontalAdvance(sample), header_metrics.horizontalAdvance(title) + 8) + 12
            view.setColumnWidth(column, width)

    def preferred_list_width(self) -> int:
        """Width of the job list showing every column."""
        view = self.job_view
        return sum(view.columnWidth(c) for c in range(len(JobTableModel.COLUMNS))) + view.frameWidth() * 2 + 2

    def _build_pages(self) -> None:
        self.tabs = QTabWidget()
        self.tabs.setObjectName("jobPages")
        self.tabs.setDocumentMode(True)
        for spec in PAGES:
            page = self._load_page(spec)
            self.pages[page.title] = page
            self.tabs.addTab(page, page.title)
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.welcome = self._make_welcome()
        self.right_stack = QStackedWidget()
        self.right_stack.addWidget(self.welcome)
        self.right_stack.addWidget(self.tabs)

    def _load_page(self, spec: str) -> JobPage:
        module_name, _, class_name = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
            return cls(self.app)
        except Exception as exc:  # noqa: BLE001 - one broken page must not stop the app
            log.error("page %s failed to load:\n%s", spec, traceback.format_exc())
            title = class_name.removesuffix("Page") or spec
            return _BrokenPage(self.app, title, f"{type(exc).__name__}: {exc}")

    def _make_welcome(self) -> QWidget:
        try:
            from app.gui.welcome import WelcomePanel

            panel = WelcomePanel()
            panel.open_sample_requested.connect(self.open_sample)
            panel.new_job_requested.connect(self.new_job)
            return panel
        except Exception:  # noqa: BLE001 - a plain welcome when the panel is not there
            label = QLabel(
                "No job yet.\n\nNew job (Ctrl+N) loads a folder of slices, files or a zip;\n"
                "Open sample creates a job from the sample fossil.\nYou can also drop a folder on the window."
            )
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            return label

    def _action(self, text: str, slot: Callable, shortcuts: Sequence = (), tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcuts:
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
        action.setStatusTip(tip or text)
        action.setToolTip(f"{tip or text} ({QKeySequence(shortcuts[0]).toString()})" if shortcuts else tip or text)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        style = self.style()
        self.new_action = self._action(
            "&New job…", self.new_job, [QKeySequence.StandardKey.New], "Load a folder of slices, files or a zip"
        )
        self.new_action.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_FileDialogNewFolder))
        self.sample_action = self._action(
            "Open &sample", self.open_sample, ["Ctrl+Shift+O"], "Create a job from the sample fossil"
        )
        self.sample_action.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_DialogOpenButton))
        self.rename_action = self._action("&Rename…", self.rename_job, ["F2"], "Rename the selected job")
        self.rename_action.setIcon(
            QIcon.fromTheme("edit-rename", style.standardIcon(QStyle.StandardPixmap.SP_FileDialogDetailedView))
        )
        self.delete_action = self._action(
            "&Delete…", self.delete_job, [QKeySequence.StandardKey.Delete], "Delete the selected job and its files"
        )
        self.delete_action.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_TrashIcon))
        self.cancel_action = self._action(
            "&Cancel work",
            self.cancel_job,
            ["Ctrl+."],
            "Cancel the work running on the selected job (Esc in the job list)",
        )
        self.cancel_action.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_BrowserStop))
        self.retry_action = self._action(
            "Re&try", self.retry_job, ["Ctrl+R"], "Run the failed stage of the selected job again"
        )
        self.retry_action.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_BrowserReload))
        # Delete and F2 act on the job list only, so they never reach a job while typing or painting.
        for action in (self.rename_action, self.delete_action):
            self.removeAction(action)
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.job_view.addAction(action)
        # Esc cancels too, but only in the job list and the Overview: elsewhere (a viewer) it means other things.
        self.cancel_key_action = QAction("Cancel work", self)
        self.cancel_key_action.setShortcut(QKeySequence("Esc"))
        self.cancel_key_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.cancel_key_action.triggered.connect(self.cancel_job)
        self.job_view.addAction(self.cancel_key_action)
        if "Overview" in self.pages:
            self.pages["Overview"].addAction(self.cancel_key_action)
        self.quit_action = self._action("&Quit", self.close, [QKeySequence.StandardKey.Quit], "Quit Strata")
        self.about_action = self._action("&About Strata", self._about)

    def _build_menus_and_toolbar(self) -> None:
        self.menus: dict[str, QMenu] = {}
        file_menu = self._menu("&File")
        file_menu.addActions([self.new_action, self.sample_action])
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        job_menu = self._menu("&Job")
        job_menu.addActions([self.rename_action, self.delete_action])
        job_menu.addSeparator()
        job_menu.addActions([self.cancel_action, self.retry_action])
        help_menu = self._menu("&Help")
        help_menu.addAction(self.about_action)

        toolbar = self.addToolBar("Jobs")
        toolbar.setObjectName("jobsToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addActions([self.new_action, self.sample_action])
        toolbar.addSeparator()
        toolbar.addActions([self.rename_action, self.delete_action, self.cancel_action, self.retry_action])
        self.toolbar = toolbar

    def _menu(self, name: str) -> QMenu:
        key = name.replace("&", "").lower()
        menu = self.menus.get(key)
        if menu is None:
            menu = QMenu(name, self)
            help_menu = self.menus.get("help")
            if help_menu is not None:
                self.menuBar().insertMenu(help_menu.menuAction(), menu)
            else:
                self.menuBar().addMenu(menu)
            self.menus[key] = menu
        return menu

    # -- public API -------------------------------------------------------------------
    def current_job_id(self) -> int | None:
        """The selected job's id, or None."""
        return self._current_job

    def select_job(self, job_id: int | None) -> None:
        """Select a job in the list (None clears the selection) and show its pages."""
        view = self.job_view
        row = self.model.row_of(job_id) if job_id is not None else None
        if row is None:
            view.selectionModel().clearSelection()
            view.selectionModel().setCurrentIndex(QModelIndex(), QItemSelectionModel.SelectionFlag.Clear)
            self._set_current_job(None)
            return
        index = self.model.index(row, 0)
        view.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        )
        view.scrollTo(index)
        self._set_current_job(job_id)

    def show_page(self, title: str) -> JobPage:
        """Bring the page with this title to the front."""
        page = self.pages[title]
        self.tabs.setCurrentWidget(page)
        return page

    def add_menu_action(self, menu_name: str, action: QAction) -> QAction:
        """Add an action to a menu ("File", "Job", "Help", or a new one made before Help)."""
        self._menu(menu_name).addAction(action)
        if not action.parent():
            action.setParent(self)
        self.addAction(action)  # its shortcut works while the window is active
        return action

    def status_message(self, text: str, timeout_ms: int = 6000) -> None:
        """Show a message in the status bar."""
        self.statusBar().showMessage(text, timeout_ms)

    @Slot()
    def refresh_jobs(self) -> None:
        """Re-read the job list (it changes from other processes too)."""
        if self._closing:
            return
        self.model.refresh()
        self._after_jobs_changed()

    # -- job actions ----------------------------------------------------------------
    @Slot()
    def new_job(self, sources: Sequence[str] = ()) -> NewJobDialog:
        """Open the New job dialog (prefilled with ``sources``, e.g. from a drop)."""
        dialog = NewJobDialog(self, [str(s) for s in sources] if sources else ())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.create_job(dialog.request()))
        self._open(dialog)
        return dialog

    def create_job(self, request: NewJobRequest) -> int:
        """Create the job, list and select it, and start its import and conversion."""
        job = self.store.create_job(request.name, request.sources, request.spacing, request.unit)
        self.refresh_jobs()
        self.select_job(job.id)
        if "Overview" in self.pages:
            self.show_page("Overview")
        self.scheduler.submit(job.id)
        self.status_message(f"Job {job.id} “{job.name}” created; importing…")
        return job.id

    @Slot()
    def open_sample(self) -> None:
        """Create the sample job in the background, then convert it."""
        if self._sample_running:
            return
        self._sample_running = True
        self.sample_action.setEnabled(False)
        self.status_message("Making the sample job…", 0)
        store = self.store

        def make() -> int:
            from app.stages.ingest import create_sample_job

            return create_sample_job(store).id

        QThreadPool.globalInstance().start(BackgroundTask(make, self._sample_ready, self._sample_failed))

    def _sample_ready(self, job_id: int) -> None:
        self._sample_running = False
        self.sample_action.setEnabled(True)
        self.refresh_jobs()
        self.select_job(job_id)
        self.scheduler.submit(job_id)
        self.status_message(f"Sample job {job_id} created; converting…")

    def _sample_failed(self, message: str) -> None:
        self._sample_running = False
        self.sample_action.setEnabled(True)
        self.status_message(f"The sample could not be made: {message}")
        box = QMessageBox(QMessageBox.Icon.Warning, "Open sample", f"The sample could not be made:\n{message}",
                          QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._open(box)

    @Slot()
    def rename_job(self) -> RenameDialog | None:
        job_id = self._require_job()
        if job_id is None:
            return None
        dialog = RenameDialog(self.store.get(job_id).name, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self._rename(job_id, dialog.name()))
        self._open(dialog)
        return dialog

    def _rename(self, job_id: int, name: str) -> None:
        try:
            self.store.rename(job_id, name)
        except (ValueError, JobNotFound) as exc:
            self.status_message(str(exc))
            return
        self.model.refresh_job(job_id)
        for page in self.pages.values():
            if page.job_id == job_id:
                page.job_updated(job_id)
        self.status_message(f"Job {job_id} renamed to “{name}”")

    @Slot()
    def delete_job(self) -> QMessageBox | None:
        """Ask, then delete the selected job and its folder."""
        job_id = self._require_job()
        if job_id is None:
            return None
        job = self.store.get(job_id)
        if self.scheduler.is_running(job_id):
            self.status_message(f"Job {job_id} is being worked on: cancel it first (Ctrl+.), then delete it.")
            return None
        folder = self.store.workspace.job_dir(job_id)
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Delete job",
            f"Delete job {job_id} “{job.name}” and all its files?\n\n{folder}\n\nThis cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            self,
        )
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.button(QMessageBox.StandardButton.Yes).setText("Delete")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        yes = box.button(QMessageBox.StandardButton.Yes)
        box.finished.connect(lambda _result: self._delete(job_id) if box.clickedButton() is yes else None)
        self._open(box)
        return box

    def _delete(self, job_id: int) -> None:
        row = self.model.row_of(job_id) or 0
        for page in self.pages.values():
            if page.job_id == job_id:
                page.set_job(None)  # let pages release the job's files first
        try:
            self.store.delete(job_id)
        except (TransitionError, JobNotFound) as exc:
            self.status_message(f"Job {job_id} was not deleted: {exc}")
            self.select_job(job_id)
            return
        self.refresh_jobs()
        next_id = self.model.job_id_at(min(row, self.model.rowCount() - 1))
        self.select_job(next_id)
        self.status_message(f"Job {job_id} deleted")

    @Slot()
    def cancel_job(self) -> bool:
        """Cancel the work running or queued on the selected job."""
        job_id = self._current_job
        if job_id is None:
            return False
        if self.scheduler.cancel(job_id):
            self.status_message(f"Cancelling job {job_id}…")
            return True
        try:
            status = parse_status(self.store.get(job_id).status)
            if status in QUEUED:
                self.scheduler.cancel_queued(job_id)
                self.status_message(f"Job {job_id} taken out of its queue")
                return True
        except (TransitionError, JobNotFound) as exc:
            self.status_message(str(exc))
            return False
        self.status_message(f"Nothing runs on job {job_id}")
        return False

    @Slot()
    def retry_job(self) -> bool:
        """Run a failed import or conversion again."""
        job_id = self._current_job
        if job_id is None:
            return False
        status = parse_status(self.store.get(job_id).status)
        target = RETRY_FROM.get(status)
        if target is None:
            self.status_message(f"Job {job_id} has no failed stage to retry")
            return False
        old = self.store.transition(job_id, target, "retry")
        self.scheduler.status_changed.emit(job_id, old.value, target.value)
        self.scheduler.submit(job_id)
        self.status_message(f"Job {job_id}: trying again")
        return True

    # -- drag and drop ------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if self._dropped_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if self._dropped_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = self._dropped_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        # Open the dialog after the drop has finished (no nested loop inside a drop).
        QTimer.singleShot(0, lambda: self.new_job(paths))

    @staticmethod
    def _dropped_paths(mime) -> list[str]:
        if not mime.hasUrls():
            return []
        urls = mime.urls()
        if not urls or not all(url.isLocalFile() for url in urls):
            return []
        return [url.toLocalFile() for url in urls]

    def warm_up_pages(self, delay_ms: int = WARM_UP_DELAY_MS) -> None:
        """Prepare the pages that have a ``warm_up`` (the Annotate page's napari viewer) once the window is up.

        A page's ``warm_up_steps()`` (callables; default: its ``warm_up``) run one
        per turn of the event loop on the UI thread (PySide's import hook is not
        safe for imports in other threads), so the window stays responsive
        between them; clicking such a tab later shows its content at once.
        """
        steps: list[Callable[[], object]] = []
        for page in self.pages.values():
            if callable(getattr(page, "warm_up_steps", None)):
                steps.extend(page.warm_up_steps())
            elif callable(getattr(page, "warm_up", None)):
                steps.append(page.warm_up)

        def run_next() -> None:
            if self._closing:
                return
            if not steps:
                freeze_long_lived()  # later full collections skip what start-up made (no stutter)
                return_freed_memory()  # napari's start-up leaves much freed memory behind
                return
            step = steps.pop(0)
            try:
                step()
            except Exception:  # noqa: BLE001 - the page then starts on first use, as without warm-up
                log.exception("warming a page up failed")
            QTimer.singleShot(0, run_next)

        QTimer.singleShot(delay_ms, run_next)

    # -- window ---------------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._sized:  # split once the real width is known: the list at most 40 %, pages the rest
            self._sized = True
            list_width = min(self.preferred_list_width(), int(self.width() * 0.4))
            self.splitter.setSizes([list_width, self.width() - list_width])

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        running = self.scheduler.running_jobs()
        if running and not self._closing:
            answer = self.ask(
                "Quit Strata",
                f"Work is running on {len(running)} job(s). Quit anyway?\n\n"
                "The work is cancelled; it starts again from the beginning next time.",
            )
            if not answer:
                event.ignore()
                return
        self._closing = True
        self._refresh_timer.stop()
        self.scheduler.cancel_all()
        self.scheduler.wait(CLOSE_WAIT_MS)
        for page in self.pages.values():
            try:
                page.shutdown()
            except Exception:  # noqa: BLE001 - close the rest anyway
                log.exception("page %s failed to shut down", page.title)
        event.accept()

    def ask(self, title: str, text: str) -> bool:
        """A blocking yes/no question (tests answer ``active_dialog``)."""
        box = QMessageBox(
            QMessageBox.Icon.Question,
            title,
            text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            self,
        )
        box.setDefaultButton(QMessageBox.StandardButton.No)
        self.active_dialog = box
        try:
            return box.exec() == QMessageBox.StandardButton.Yes
        finally:
            self.active_dialog = None
            box.deleteLater()

    # -- internals ---------------------------------------------------------------------
    def _open(self, dialog: QDialog) -> None:
        self.active_dialog = dialog
        dialog.finished.connect(lambda _result: self._dialog_closed(dialog))
        dialog.open()

    def _dialog_closed(self, dialog: QDialog) -> None:
        if self.active_dialog is dialog:
            self.active_dialog = None

    def _require_job(self) -> int | None:
        if self._current_job is None:
            self.status_message("Select a job first")
        return self._current_job

    def _set_current_job(self, job_id: int | None) -> None:
        if job_id == self._current_job:
            return
        self._current_job = job_id
        for page in self.pages.values():
            try:
                page.set_job(job_id)
            except Exception:  # noqa: BLE001 - a page's failure must not break selection
                log.exception("page %s failed to show job %s", page.title, job_id)
        self._update_actions()

    @Slot(QModelIndex, QModelIndex)
    def _on_current_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._set_current_job(self.model.job_id_at(current.row()) if current.isValid() else None)

    @Slot()
    def _restore_selection(self) -> None:
        job_id = self._current_job
        if job_id is not None and self.model.row_of(job_id) is not None:
            QTimer.singleShot(0, lambda: self.select_job(job_id) if self._current_job == job_id else None)
        elif job_id is not None:
            self._set_current_job(None)

    def _after_jobs_changed(self) -> None:
        has_jobs = self.model.rowCount() > 0
        self.right_stack.setCurrentWidget(self.tabs if has_jobs else self.welcome)
        if has_jobs and self._current_job is None:
            self.select_job(self.model.job_id_at(0))
        self._update_actions()

    def _update_actions(self) -> None:
        job_id = self._current_job
        row = self.model.job_row(job_id) if job_id is not None else None
        has = row is not None
        status = parse_status(row.status) if row else None
        running = has and self.scheduler.is_running(job_id)
        self.rename_action.setEnabled(has)
        self.delete_action.setEnabled(has and not running)
        self.cancel_action.setEnabled(bool(running or (status in QUEUED if status else False)))
        self.retry_action.setEnabled(bool(status in RETRY_FROM if status else False) and not running)
        self._show_activity()

    def _job_name(self, job_id: int) -> str:
        row = self.model.job_row(job_id)
        return f"job {job_id} “{row.name}”" if row else f"job {job_id}"

    @Slot(int, str, str)
    def _on_status_changed(self, job_id: int, old: str, new: str) -> None:
        if self.model.row_of(job_id) is None:
            self.refresh_jobs()
        status = parse_status(new)
        if status not in ERRORS:
            self.status_message(f"{_capitalized(self._job_name(job_id))}: {status_label(new).lower()}")
        self._update_actions()

    @Slot(int, float, str)
    def _on_progress(self, job_id: int, fraction: float, message: str) -> None:
        text = f"{_capitalized(self._job_name(job_id))}: {fraction * 100:.0f}% {message}"
        self._progress_text[job_id] = text.rstrip()
        self._show_activity()

    def _show_activity(self) -> None:
        """Progress in the permanent part of the status bar, so messages on the left stay readable."""
        running = self.scheduler.running_jobs()
        for job_id in list(self._progress_text):
            if job_id not in running:
                del self._progress_text[job_id]
        if not running:
            self.activity_label.setText("Idle")
            return
        shown = self._current_job if self._current_job in self._progress_text else next(iter(self._progress_text), None)
        text = self._progress_text.get(shown, "") if shown is not None else ""
        others = len(running) - (1 if text else 0)
        jobs = f"{others} job{'s' if others > 1 else ''}"
        if others:
            text = f"{text}  (+{jobs} more)" if text else f"Working on {jobs}"
        self.activity_label.setText(text[:100])

    @Slot(int, str)
    def _on_failed(self, job_id: int, message: str) -> None:
        self.status_message(f"{_capitalized(self._job_name(job_id))} failed: {message}", 15000)

    @Slot(int)
    def _on_finished(self, job_id: int) -> None:
        self.model.refresh_job(job_id)
        self._update_actions()

    @Slot(int)
    def _on_tab_changed(self, index: int) -> None:
        page = self.tabs.widget(index)
        if self._shown_page is not None and self._shown_page is not page:
            self._shown_page.page_hidden()
        self._shown_page = page if isinstance(page, JobPage) else None
        if self._shown_page is not None:
            self._shown_page.page_shown()

    def _job_context_menu(self, pos) -> None:
        index = self.job_view.indexAt(pos)
        if index.isValid():
            self.select_job(self.model.job_id_at(index.row()))
        menu = QMenu(self)
        menu.addActions([self.rename_action, self.delete_action, self.cancel_action, self.retry_action])
        menu.addSeparator()
        menu.addAction(self.new_action)
        menu.popup(self.job_view.viewport().mapToGlobal(pos))

    def _about(self) -> None:
        from app.gui.help import AboutDialog

        AboutDialog(self).exec()
