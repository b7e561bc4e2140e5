"""The Annotate page in a real Qt window with a real napari viewer (pytest-qt under Xvfb).

One page (and one napari viewer) serves the whole module; each test opens its own job.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox

from app.pipeline import annotations as ann
from app.store.jobs import JobStore
from tests.conftest import ROOT
from tests.pipeline.annotation_helpers import converted_job, phantom

pytestmark = pytest.mark.gui
SHAPE = (40, 300, 64)  # two pyramid levels: (40, 300, 64), (20, 150, 32)


@pytest.fixture(scope="module")
def env(qapp, tmp_path_factory):
    from app.gui.pages.annotate import AnnotatePage
    from app.gui.pages.base import AppContext
    from app.gui.worker import JobScheduler

    store = JobStore(tmp_path_factory.mktemp("annotate_ws"))
    scheduler = JobScheduler(store)
    page = AnnotatePage(AppContext(store, scheduler))
    page.resize(1300, 800)
    page.show()
    page.warm_up()
    yield store, page
    page.shutdown()
    page.close()
    page.deleteLater()
    store.close()


def open_job(env, data=None, name="scan"):
    store, page = env
    job = converted_job(store, phantom(SHAPE) if data is None else data, name=name)
    page.set_job(job.id)
    QApplication.processEvents()
    assert page.buffer is not None
    return store, page, job


def disk(store, job) -> np.ndarray:
    return np.asarray(ann.open_annotations(store.workspace.annotations_path(job.id))[...])


def press(qtbot, page, key, modifiers=Qt.KeyboardModifier.NoModifier):
    """A key press on the canvas, where the user's focus is while painting."""
    page.window().activateWindow()
    qtbot.waitUntil(page.isActiveWindow, timeout=3000)
    page.view.focus_canvas()
    qtbot.keyClick(page.view.canvas_widget(), key, modifiers)


def stroke(page, coords, value, tool="paint"):
    """A stroke through the paint layer's own API: paint/fill calls grouped like a mouse drag."""
    layer = page.view.labels_layer
    page.select_class(value) if value else None
    page.set_tool(tool)
    with layer.block_history():  # napari's draw() wraps a drag the same way; the paint event fires on exit
        for coord in coords:
            if tool == "fill":
                layer.fill(coord, value)
            else:
                layer.paint(coord, 0 if tool == "erase" else value)


def test_viewer_opens_job_lazily_with_robust_contrast(env):
    store, page, job = open_job(env)
    view = page.view
    assert view.isVisible() and page.view_stack.currentWidget() is view
    assert view.image_layer.multiscale and len(view.image_layer.data) == 2
    coarse = np.asarray(page.volume.levels[-1][...])
    lo, hi = np.percentile(coarse, [0.5, 99.5])
    assert view.contrast == pytest.approx((lo, hi), rel=1e-6)
    page.set_contrast(lo, lo + 10)
    assert view.image_layer.contrast_limits == pytest.approx([lo, lo + 10])
    page.reset_contrast()
    assert page.contrast_high.value() == pytest.approx(hi, abs=0.1)
    assert page.current_plane() == (0, SHAPE[0] // 2)
    shot = view.screenshot()
    assert shot.shape[0] > 100 and shot[..., :3].std() > 5  # the slice is rendered, not a blank canvas
    assert [c.value for c in page._classes] == [1, 2]
    assert page.class_table.rowCount() == 2


@pytest.mark.parametrize("axis, index", [(0, 7), (1, 150), (2, 33)])
def test_strokes_land_on_disk_in_each_plane(env, qtbot, axis, index):
    store, page, job = open_job(env)
    page.go_to(axis, index)
    assert page.current_plane() == (axis, index)
    assert page.plane_buttons[axis].isChecked()
    page.set_brush_size(5)
    centre = [SHAPE[0] // 2, 100, SHAPE[2] // 2]
    centre[axis] = index
    other = list(centre)
    shown = [a for a in range(3) if a != axis]
    other[shown[1]] += 4
    with qtbot.waitSignal(page.stroke_committed, timeout=5000) as signal:
        stroke(page, [centre, other], 2)
    assert signal.args == [axis, index]
    labels = disk(store, job)
    painted = np.argwhere(labels)
    assert len(painted) > 10
    assert set(painted[:, axis]) == {index}, "paint left the displayed slice"
    assert labels[tuple(centre)] == 2 and labels[tuple(other)] == 2
    assert np.unique(labels).tolist() == [0, 2]
    # the same voxels the layer shows, and nothing kept in memory afterwards
    assert not page.buffer.dirty
    assert page.buffer.stats.class_counts() == {2: len(painted)}
    assert store.summary(job.id)["annotated_voxels"]["specimen"] == len(painted)
    assert page.last_commit_seconds < 1.0


def test_fill_and_erase_tools(env):
    store, page, job = open_job(env)
    page.go_to(0, 3)
    page.set_brush_size(3)
    square = [[3, y, x] for y in range(10, 21) for x in (10, 20)] + [[3, y, x] for x in range(10, 21) for y in (10, 20)]
    stroke(page, square, 1)
    stroke(page, [[3, 15, 15]], 2, tool="fill")
    labels = disk(store, job)
    assert labels[3, 15, 15] == 2 and labels[3, 12:18, 12:18].min() == 2
    assert labels[3, 30, 30] == 0  # the fill stayed inside the square
    stroke(page, [[3, 15, 15]], 0, tool="erase")
    assert disk(store, job)[3, 15, 15] == 0


def test_undo_redo_buttons_and_keys(env, qtbot):
    store, page, job = open_job(env)
    page.go_to(0, 5)
    page.set_brush_size(4)
    stroke(page, [[5, 50, 30]], 2)
    first = disk(store, job)
    stroke(page, [[5, 60, 30]], 1)
    assert disk(store, job)[5, 60, 30] == 1
    assert page.undo()
    assert np.array_equal(disk(store, job), first)
    assert page.redo()
    assert disk(store, job)[5, 60, 30] == 1
    press(qtbot, page, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(disk(store, job), first)
    press(qtbot, page, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert disk(store, job)[5, 60, 30] == 1
    page.undo_button.click()
    page.undo_button.click()
    assert not disk(store, job).any()
    assert not page.undo()  # nothing left


def test_classes_add_rename_recolor_delete_and_keys(env, qtbot, monkeypatch):
    store, page, job = open_job(env)
    value = page.add_class("bone")
    assert value == 3 and page.class_table.rowCount() == 3
    assert page.add_class("Bone") is None and "already has" in page.message_label.text()
    assert page.rename_class(3, "matrix")
    assert page.class_table.item(2, 2).text() == "matrix"
    assert page.recolor_class(3, "#00ff00")
    assert page.view.labels_layer.colormap.color_dict[3].tolist()[:3] == [0.0, 1.0, 0.0]
    press(qtbot, page, Qt.Key.Key_3)
    assert page.current_value == 3 and page.view.labels_layer.selected_label == 3
    press(qtbot, page, Qt.Key.Key_1)
    assert page.current_value == 1
    page.go_to(0, 9)
    stroke(page, [[9, 40, 20]], 3)
    stroke(page, [[9, 80, 20]], 1)
    assert store.get(job.id).status == "annotated"
    assert (disk(store, job) == 3).any()
    # delete asks first: cancel keeps it, yes deletes it and its voxels
    answers = iter([QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Yes])

    def answer():
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox) and "matrix" in box.text()
        box.button(next(answers)).click()

    QTimer.singleShot(200, answer)
    assert not page.delete_class(3)
    QTimer.singleShot(200, answer)
    with qtbot.waitSignal(page.app.scheduler.status_changed, timeout=5000) as signal:
        assert page.delete_class(3)
    assert signal.args == [job.id, "annotated", "converted"]
    assert "Undo history was reset" in page.message_label.text()
    assert not page.undo(), "strokes before the delete cannot be undone (the user was told)"
    labels = disk(store, job)
    assert not (labels == 3).any() and (labels == 1).any()
    assert page.class_table.rowCount() == 2
    assert [c["name"] for c in store.summary(job.id)["classes"]] == ["background", "specimen"]


def test_status_follows_paint_and_summary_jumps(env, qtbot):
    store, page, job = open_job(env)
    page.go_to(1, 120)
    page.set_brush_size(3)
    stroke(page, [[10, 120, 10]], 1)
    assert store.get(job.id).status == "converted"
    with qtbot.waitSignal(page.app.scheduler.status_changed, timeout=5000) as signal:
        stroke(page, [[30, 120, 50]], 2)
    assert signal.args == [job.id, "converted", "annotated"]
    assert "annotated" in page.job_label.text()
    items = page.summary_items(1)
    assert [item.data(0, Qt.ItemDataRole.UserRole) for item in items] == [(1, 120)]  # at once, on release
    # the z and x slices the two dots cross hold paint, but it was laid on y 120: they are counted, not listed
    assert page.painted_planes.wait()
    assert [item.data(0, Qt.ItemDataRole.UserRole) for item in page.summary_items(1)] == [(1, 120)]
    assert page.summary_items(0) == [] and page.summary_items(2) == []
    crossing = len(set(np.argwhere(disk(store, job))[:, 0]))
    z_top = page.summary_tree.topLevelItem(1)
    assert z_top.text(0) == "Painted z slices: 0"
    assert z_top.child(0).text(0) == f"+{crossing} crossed by paint on other planes"
    # a dot on a z slice: listed at once, and still after the slices painted on are worked out again
    page.go_to(0, 20)
    stroke(page, [[20, 60, 60]], 2)
    assert [i.data(0, Qt.ItemDataRole.UserRole) for i in page.summary_items(0)] == [(0, 20)]
    assert page.painted_planes.wait()
    assert [i.data(0, Qt.ItemDataRole.UserRole) for i in page.summary_items(0)] == [(0, 20)]
    page.go_to(2, 0)
    page._summary_clicked(page.summary_items(1)[0])
    assert page.current_plane() == (1, 120)
    page.go_to(0, 20)
    stroke(page, [[20, 60, 60]], 0, tool="erase")
    assert page.summary_items(0) == []  # erased: no longer listed, even before the next answer
    page.go_to(1, 120)
    stroke(page, [[30, 120, 50]], 0, tool="erase")
    assert store.get(job.id).status == "converted"
    assert store.summary(job.id)["annotated_voxels"]["specimen"] == 0


def test_3d_toggle_and_planes(env):
    store, page, job = open_job(env)
    page.go_to(0, 4)
    stroke(page, [[4, 100, 30]], 2)
    page.set_3d(True)
    assert page.view.is_3d and not page.view.labels_layer.visible
    assert page.view.labels_3d is not None and page.view.labels_3d.data.max() == 2
    assert not page.tool_buttons["paint"].isEnabled()
    page.view.screenshot()
    page.set_plane(2)
    assert not page.view.is_3d and page.view.labels_layer.visible
    assert page.current_plane()[0] == 2 and not page.view.labels_3d.visible


def test_import_export_from_the_page(env, tmp_path):
    store, page, job = open_job(env)
    labels = np.zeros(SHAPE, np.uint8)
    labels[:, :100] = 1
    labels[:, 200:] = 5
    source = tmp_path / "labels.tif"
    tifffile.imwrite(source, labels)
    page.import_labels(str(source), "z:2,3", ["5=2"], wait=True)
    expected = np.zeros(SHAPE, np.uint8)
    expected[2:4] = np.where(labels == 5, 2, labels)[2:4]
    assert np.array_equal(disk(store, job), expected)
    assert page.buffer.stats.class_counts() == {1: int((expected == 1).sum()), 2: int((expected == 2).sum())}
    assert store.get(job.id).status == "annotated"
    assert "Undo history was reset" in page.message_label.text()
    assert [i.data(0, Qt.ItemDataRole.UserRole)[1] for i in page.summary_items(0)] == [2, 3]
    assert page.painted_planes.wait()  # whole z slices imported: no y or x slice was painted on
    assert [i.data(0, Qt.ItemDataRole.UserRole)[1] for i in page.summary_items(0)] == [2, 3]
    assert page.summary_items(1) == [] and page.summary_items(2) == []
    # painting after an import, then an export that holds both
    page.go_to(0, 10)
    stroke(page, [[10, 150, 30]], 2)
    page.export_labels("npy", str(tmp_path / "out.npy"), wait=True)
    out = np.load(tmp_path / "out.npy")
    assert np.array_equal(out, disk(store, job)) and out[10, 150, 30] == 2
    # bad input: a message, nothing changed
    before = disk(store, job)
    np.save(tmp_path / "small.npy", np.ones((3, 3, 3), np.uint8))
    page.import_labels(str(tmp_path / "small.npy"), wait=True)
    assert "small.npy" in page.message_label.text() and "differs" in page.message_label.text()
    page.import_labels(str(source), "x:99", wait=True)
    assert "out of range" in page.message_label.text()
    page.import_labels(str(source), None, [], wait=True)
    assert "map to no class" in page.message_label.text()
    assert np.array_equal(disk(store, job), before)
    assert page.import_button.isEnabled()


def test_overlay_api_and_tool_widgets(env):
    store, page, job = open_job(env)
    page.go_to(1, 20)
    seen = []
    page.stroke_committed.connect(lambda a, i: seen.append((a, i)))
    prediction = np.zeros((SHAPE[0], SHAPE[2]), np.uint8)
    prediction[:, :10] = 2
    page.set_overlay("preview", prediction, {2: "#ff00ff"}, opacity=0.4)
    layer = page.view.overlays["preview"]
    assert layer.data.shape == (SHAPE[0], 1, SHAPE[2]) and layer.translate[1] == 20
    assert page.view.viewer.layers[-1] is page.view.labels_layer  # painting stays on top
    segmentation = [np.zeros(SHAPE, np.uint8), np.zeros(tuple(s // 2 for s in SHAPE), np.uint8)]
    page.set_overlay("segmentation", segmentation, {1: "#00ffff"}, visible=False)
    assert page.view.overlays["segmentation"].multiscale
    page.view.screenshot()
    page.remove_overlay("preview")
    page.remove_overlay("segmentation")
    assert not page.view.overlays
    page.add_tool_widget(QLabel("live preview"))
    assert page.extra_box.isVisibleTo(page)
    stroke(page, [[5, 20, 30]], 1)
    assert seen == [(1, 20)]


def test_job_without_volume_shows_why(env):
    store, page = env
    job = store.create_job("not converted")
    page.set_job(job.id)
    assert page.buffer is None
    assert "convert it before annotating" in page.placeholder.text()
    assert not page.import_button.isEnabled()


@pytest.mark.slow
def test_large_volume_opens_and_paints_in_little_memory(tmp_path):
    """2048 x 2048 x 1024 uint16 (8 GiB if it were dense): open, paint in 3 planes, RSS < 2 GiB."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "e2e" / "annotate_script.py"), "large", str(tmp_path / "ws")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = dict(line.split("=", 1) for line in run.stdout.split() if "=" in line)
    assert int(result["painted_chunks"]) >= 3
    assert float(result["rss_gib"]) < 2.0, result


def test_a_mouse_click_on_the_canvas_is_on_disk_at_release(env, qtbot):
    """The real path: press and release on napari's canvas widget (one brush dab).

    Simulated moves with the button held do not reach napari's drag handler
    under QTest, so drags are covered by the paint-API tests above.
    """
    from PySide6.QtCore import QPoint

    store, page, job = open_job(env)
    page.go_to(0, 12)
    page.select_class(2)
    page.set_tool("paint")
    page.set_brush_size(6)
    canvas = page.view.canvas_widget()
    centre = QPoint(canvas.width() // 2, canvas.height() // 2)
    seen = []
    page.stroke_committed.connect(lambda a, i: seen.append((a, i)))
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=centre)
    assert not disk(store, job).any(), "nothing is written while the button is down"
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=centre + QPoint(60, 0))
    qtbot.waitUntil(lambda: bool(seen), timeout=5000)
    labels = disk(store, job)
    painted = np.argwhere(labels)
    assert seen == [(0, 12)] and len(painted) > 30
    assert set(painted[:, 0]) == {12} and set(labels[labels > 0].tolist()) == {2}


def test_first_slice_comes_from_a_coarse_level_then_full_resolution(env):
    store, page = env
    data = phantom((16, 600, 600))  # levels (16, 600, 600), (8, 300, 300), (4, 150, 150)
    job = converted_job(store, data, name="wide")
    page.set_job(job.id)
    view = page.view
    assert view.shown_level == 2, "the first slice should come from the 150 x 150 level, enlarged"
    assert len(view.image_layer.data) == 3 and view.image_layer.visible
    assert page.current_plane() == (0, 8)
    assert view.wait_full_resolution(20000)
    assert view.shown_level == 0
    assert view.image_layer.scale == pytest.approx([1.0, 1.0, 1.0])
    assert view.image_layer.translate == pytest.approx([0.0, 0.0, 0.0])
    assert np.array_equal(view._levels[0].planes[(0, 8)], data[8]), "the full-resolution plane, read in the background"
    assert view.labels_layer.visible
    shot = view.screenshot()
    assert shot[..., :3].std() > 5
    assert page.current_plane() == (0, 8) and page.slice_label.text().startswith("z slice 8 of 15")
    # another job while the read of this one runs: the late result is dropped, not shown
    page.set_job(job.id)
    first = open_job(env)[2]
    assert view.wait_full_resolution(20000)
    assert view.shape == SHAPE and page._loaded_job == first.id


class BlockWatch:
    """A 10 ms timer that records the longest gap between its ticks (the UI thread's longest stall)."""

    def __init__(self) -> None:
        from PySide6.QtCore import QElapsedTimer

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


def frame_ms(view) -> float:
    """The longest of three plain repaints of the canvas (software OpenGL here: tens of ms a frame)."""
    import time

    canvas, longest = view.canvas_widget(), 0.0
    for _ in range(3):
        start = time.perf_counter()
        canvas.repaint()
        QApplication.processEvents()
        longest = max(longest, 1000 * (time.perf_counter() - start))
    return longest


def test_moving_through_slices_never_reads_full_resolution_on_the_ui_thread(env, qtbot):
    """Slider moves show the coarse plane at once; the 1024 x 1024 plane follows from a background read."""
    import time

    store, page = env
    data = phantom((32, 1024, 1024))  # a level-0 z plane spans 256 chunks: ~0.2 s to read
    job = converted_job(store, data, name="big planes")
    page.set_job(job.id)
    view = page.view
    assert view.wait_full_resolution(20000)
    frame = frame_ms(view)
    dims = view.viewer.dims
    steps = iter([3, 4, 5, 9, 20, 21, 30, 31])
    moves: list[float] = []

    def move() -> None:  # what dragging the slider does, one step per event-loop turn
        index = next(steps, None)
        if index is None:
            return
        start = time.perf_counter()
        dims.set_current_step(0, index)  # napari slices every layer here, on the UI thread
        moves.append(1000 * (time.perf_counter() - start))
        QTimer.singleShot(30, move)

    QApplication.processEvents()
    with BlockWatch() as watch:
        move()
        qtbot.waitUntil(lambda: len(moves) == 8, timeout=20000)
        assert view.wait_full_resolution(20000)
    assert max(moves) < 100, f"slicing took {max(moves):.0f} ms on the UI thread"
    # Each move is followed by one frame that uploads new slice textures: with software OpenGL
    # that frame alone takes up to about twice a plain repaint; a plane read would add ~200 ms.
    assert watch.longest < 100 + 2 * frame, f"the UI thread stalled {watch.longest} ms (a frame: {frame:.0f} ms)"
    assert page.current_plane() == (0, 31) and view.shown_level == 0
    assert np.array_equal(view._levels[0].planes[(0, 31)], data[31]), "the newest plane is read and shown"
    assert set(view._levels[0].planes) == {(0, 31)}, "one full-resolution plane is kept, not every one passed"


def test_hidden_page_does_no_work_until_shown_and_opens_mid_volume(env, qtbot):
    store, page = env
    store_, page_, first = open_job(env)
    page.go_to(0, SHAPE[0] - 1)  # the user looked at the last slice of the previous job
    job = converted_job(store, phantom(SHAPE), name="hidden")
    page.hide()
    try:
        page.set_job(job.id)
        assert page.buffer is None and page.volume is None, "a hidden page must not open the volume"
        page.app.scheduler.status_changed.emit(job.id, "converted", "converted")
        QApplication.processEvents()
        assert page.buffer is None, "a status change must not load a hidden page"
    finally:
        page.show()
    page.page_shown()  # what the main window calls when the tab is shown
    assert page.buffer is not None and page._loaded_job == job.id
    assert page.current_plane() == (0, SHAPE[0] // 2)
    assert page.slice_label.text().startswith(f"z slice {SHAPE[0] // 2} of {SHAPE[0] - 1}")


def test_the_window_warms_the_viewer_up_then_the_tab_opens_a_job_at_once(qtbot, tmp_path):
    """What ``main.py`` does after start-up: the napari viewer is made before the Annotate tab is clicked."""
    import gc
    import time

    from tests.gui.window_support import make_window, stop_window

    store = JobStore(tmp_path / "ws")
    job = converted_job(store, phantom(SHAPE), name="warm")
    window = make_window(qtbot, store)
    try:
        page = window.pages["Annotate"]
        assert page.view is None, "no viewer before the warm-up"
        window.warm_up_pages(delay_ms=0)
        qtbot.waitUntil(lambda: page.view is not None, timeout=60000)
        # once warmed up, what start-up made is left out of garbage collections (no 0.1 s pauses)
        qtbot.waitUntil(lambda: gc.get_freeze_count() > 100_000, timeout=60000)
        window.select_job(job.id)
        assert page.buffer is None, "the hidden tab opens nothing yet"
        start = time.perf_counter()
        window.show_page("Annotate")
        shot = page.view.screenshot()
        assert time.perf_counter() - start < 2.0
        assert page.buffer is not None and page.current_plane() == (0, SHAPE[0] // 2)
        assert shot[..., :3].std() > 5
    finally:
        stop_window(qtbot, window)
        store.close()
