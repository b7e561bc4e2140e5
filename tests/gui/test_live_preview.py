"""Live preview and "Suggest a slice" on a real Annotate page (pytest-qt, napari under Xvfb)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QElapsedTimer, QTimer
from PySide6.QtWidgets import QApplication

from app.gui.live_preview import PREVIEW_LAYER, SEGMENTATION_LAYER, PreviewEngine
from app.pipeline.annotations import open_annotations
from app.store.jobs import JobStore
from tests.e2e.segment_helpers import annotated_job

pytestmark = pytest.mark.gui


class BlockWatch:
    """A 10 ms timer that records the longest gap between its ticks (the UI thread's longest stall)."""

    def __init__(self) -> None:
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.longest = 0

    def _tick(self) -> None:
        self.longest = max(self.longest, self.clock.restart())

    def __enter__(self):
        self.clock.start()
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.stop()


@pytest.fixture(scope="module")
def env(qapp, tmp_path_factory):
    from app.gui.pages.annotate import AnnotatePage
    from app.gui.pages.base import AppContext
    from app.gui.worker import JobScheduler

    store = JobStore(tmp_path_factory.mktemp("preview_ws"))
    scheduler = JobScheduler(store)
    page = AnnotatePage(AppContext(store, scheduler))
    page.resize(1200, 800)
    page.show()
    page.warm_up()
    yield store, page
    page.live_preview.wait()
    page.shutdown()
    page.close()
    page.deleteLater()
    store.close()


def open_job(env, slices=(12,)):
    store, page = env
    job, truth = annotated_job(store, shape=(24, 96, 96), slices=slices)
    page.set_job(job.id)
    QApplication.processEvents()
    assert page.buffer is not None
    return store, page, job, truth


def test_a_stroke_updates_the_preview_without_blocking_the_ui(env, qtbot):
    store, page, job, truth = open_job(env)
    preview = page.live_preview
    page.go_to(0, 12)
    tools = page.live_preview_tools
    shown = []
    preview.preview_shown.connect(lambda a, i, s: shown.append((a, i, s)))
    with qtbot.waitSignal(preview.preview_shown, timeout=60000):
        tools.live_toggle.setChecked(True)  # the first one also imports torch and scikit-learn
    layer = page.view.viewer.layers[PREVIEW_LAYER]
    first = np.asarray(layer.data).copy()
    assert set(np.unique(first)) <= {1, 2} and (first == 2).any()
    # a stroke of specimen across background: the preview follows
    with qtbot.waitSignal(preview.preview_shown, timeout=60000):
        labels = page.view.labels_layer
        page.select_class(2)
        page.set_tool("paint")
        with labels.block_history():
            for x in range(5, 90, 3):
                labels.paint((12, 8, x), 2)
    assert len(shown) == 2 and shown[-1][:2] == (0, 12)
    second = np.asarray(page.view.viewer.layers[PREVIEW_LAYER].data)
    assert not np.array_equal(first, second)
    # while a preview is computed (refit + predict in the worker) the UI thread keeps running;
    # measured from the request to the result's arrival, without the napari repaint of a stroke
    # (the worst case: a refit, and the slice's features computed again)
    QApplication.processEvents()
    preview._engine._fitted_on = None
    preview._engine._cache.clear()
    with BlockWatch() as watch:
        with qtbot.waitSignal(preview.computed, timeout=60000):
            preview.request(0, 12)
    assert 0 < watch.longest < 100, f"the UI thread stalled {watch.longest} ms while the preview was computed"
    qtbot.waitUntil(lambda: not preview._running, timeout=10000)
    tools.live_toggle.setChecked(False)
    assert PREVIEW_LAYER not in [layer.name for layer in page.view.viewer.layers]
    assert tools.status.text() == "Live preview off"  # not the last preview's timing


def test_the_preview_follows_the_slice_on_screen(env, qtbot):
    """Moving to another slice previews it (features ready before the first stroke there)."""
    store, page, job, truth = open_job(env)
    preview = page.live_preview
    page.go_to(0, 12)
    with qtbot.waitSignal(preview.preview_shown, timeout=60000):
        page.live_preview_tools.live_toggle.setChecked(True)
    with qtbot.waitSignal(preview.preview_shown, timeout=60000) as blocker:
        page.go_to(0, 5)  # no stroke: the slice on screen is enough
    assert tuple(blocker.args[:2]) == (0, 5)
    assert (0, 5) in preview._engine._cache  # features cached for the next stroke here
    shown = np.asarray(page.view.viewer.layers[PREVIEW_LAYER].data)
    assert (shown == 2).any() and (shown == 1).any()
    page.live_preview_tools.live_toggle.setChecked(False)
    preview.wait()


def test_newest_request_wins(env, qtbot):
    store, page, job, truth = open_job(env)
    preview = page.live_preview
    page.go_to(0, 12)
    preview.enabled = True
    shown = []
    preview.preview_shown.connect(lambda a, i, s: shown.append(preview._serial))
    for _ in range(5):
        preview.request(0, 12)
    last = preview._serial
    qtbot.waitUntil(lambda: bool(shown) and shown[-1] == last and not preview._running, timeout=60000)
    preview.wait()
    QApplication.processEvents()
    assert shown == [last] and preview.dropped >= 3
    preview.enabled = False


def test_suggest_a_slice_jumps_away_from_the_paint(env, qtbot):
    store, page, job, truth = open_job(env, slices=(4, 12))
    with qtbot.waitSignal(page.live_preview.suggested, timeout=60000) as blocker:
        page.live_preview_tools.suggest_button.click()
    axis, index = blocker.args
    assert page.current_plane() == (axis, index)
    assert not (axis == 0 and index in range(2, 15))


def test_segmentation_layer_can_be_shown_and_hidden(env, qtbot):
    from app.runner import Runner
    from app.stages.train import request_training
    from tests.e2e.segment_helpers import FAST_QUICK

    store, page, job, truth = open_job(env, slices=(6, 12, 18))
    request_training(store, job.id, "quick", FAST_QUICK)
    Runner(store).run_job(job.id)
    tools = page.live_preview_tools
    tools.segmentation_toggle.setChecked(True)
    names = [layer.name for layer in page.view.viewer.layers]
    assert SEGMENTATION_LAYER in names
    tools.segmentation_toggle.setChecked(False)
    assert SEGMENTATION_LAYER not in [layer.name for layer in page.view.viewer.layers]


def test_engine_predicts_a_painted_slice(tmp_path):
    store = JobStore(tmp_path / "ws")
    job, truth = annotated_job(store, shape=(16, 64, 64), slices=(8,))
    engine = PreviewEngine(store.workspace.volume_path(job.id), store.workspace.annotations_path(job.id))
    start = time.perf_counter()
    labels = engine.update(0, 8)
    assert labels.shape == (64, 64) and (labels == truth[8]).mean() > 0.95
    again = engine.update(1, 30)  # another plane: features computed for it
    assert again.shape == (16, 64)
    assert time.perf_counter() - start < 60
    store.close()


def test_a_preview_still_running_when_the_window_closes_is_dropped(qapp, tmp_path, qtbot):
    """Closing while a preview is computed: its result never reaches the closed viewer (no error)."""
    from app.gui.pages.annotate import AnnotatePage
    from app.gui.pages.base import AppContext
    from app.gui.worker import JobScheduler

    store = JobStore(tmp_path / "ws")
    page = AnnotatePage(AppContext(store, JobScheduler(store)))
    page.resize(900, 600)
    page.show()
    page.warm_up()
    job, _ = annotated_job(store, shape=(24, 96, 96), slices=(12,))
    page.set_job(job.id)
    QApplication.processEvents()
    preview = page.live_preview
    page.go_to(0, 12)
    preview.set_enabled(True)  # starts the first preview (a fit) in the worker
    assert preview._running
    page.shutdown()  # the window closes meanwhile
    preview.wait()
    for _ in range(20):  # the finished preview's result is delivered now, and dropped
        QApplication.processEvents()
    assert not preview._running and preview.dropped >= 1
    assert page.view.closed and PREVIEW_LAYER not in page.view.overlays
    page.view.set_overlay("late", np.zeros((24, 96, 96), np.uint8))  # what a late caller would do
    assert "late" not in page.view.overlays
    page.close()
    page.deleteLater()
    store.close()
