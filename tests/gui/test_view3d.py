"""The 3D page under pytest-qt and Xvfb: real meshes, a real VTK view, real files."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.statuses import JobStatus as S
from app.runner import Runner
from app.stages.mesh import request_mesh
from tests.pipeline.mesh_helpers import add_class, make_segmented_job

pytestmark = pytest.mark.gui

SPACING = (1.0, 1.0, 1.0)
RED, GREEN = "#e02020", "#20c020"


def _two_balls() -> np.ndarray:
    zz, yy, xx = np.mgrid[:40, :48, :72]
    labels = np.ones((40, 48, 72), np.uint8)
    labels[(zz - 20) ** 2 + (yy - 24) ** 2 + (xx - 20) ** 2 < 14**2] = 2
    labels[(zz - 20) ** 2 + (yy - 24) ** 2 + (xx - 52) ** 2 < 14**2] = 3
    return labels


@pytest.fixture
def app_context(store, qtbot):
    from app.gui.pages.base import AppContext
    from app.gui.worker import JobScheduler

    scheduler = JobScheduler(store)
    yield AppContext(store, scheduler)
    scheduler.cancel_all()
    scheduler.wait(20000)


@pytest.fixture
def segmented(store):
    from app.store.models import LabelClass

    job, _ = make_segmented_job(store, _two_balls(), SPACING, unit="mm", name="two balls")
    LabelClass.update(color=RED).where((LabelClass.job == job.id) & (LabelClass.value == 2)).execute()
    add_class(store, job.id, 3, "tooth", GREEN)
    return job


@pytest.fixture
def page(app_context, qtbot):
    from app.gui.pages.view3d import View3DPage

    page = View3DPage(app_context)
    qtbot.addWidget(page)
    page.resize(1200, 700)
    page.show()
    qtbot.waitExposed(page)
    page.page_shown()
    yield page
    page.shutdown()


def _mesh_now(store, job_id, **kw):
    request_mesh(store, job_id, **kw)
    assert Runner(store).run_job(job_id) is S.MESHED


def _dominant(image: np.ndarray, channel: int) -> int:
    """Pixels where one colour channel clearly dominates the other two."""
    rgb = image.astype(int)
    others = [c for c in range(3) if c != channel]
    return int(((rgb[..., channel] > 60) & (rgb[..., channel] > 1.8 * rgb[..., others[0]])
                & (rgb[..., channel] > 1.8 * rgb[..., others[1]])).sum())


def _centre(image: np.ndarray) -> np.ndarray:
    h, w, _ = image.shape  # leave out the corner axes marker (red/green/blue)
    return image[h // 8: 7 * h // 8, w // 4: 3 * w // 4]


def test_renders_surfaces_in_class_colours_with_show_hide_and_opacity(page, segmented, store, qtbot, tmp_path):
    _mesh_now(store, segmented.id, smooth=0.5, decimate=0.5)
    page.set_job(segmented.id)
    qtbot.waitUntil(lambda: page.view is not None and len(page.view.keys()) == 2, timeout=20000)
    assert page.stats.rowCount() == 2 and page.stats.item(0, 5).text() == "yes"
    assert "mm²" in page.stats.item(0, 2).text()
    image = _centre(page.view.capture())
    assert image.std() > 10  # not blank
    assert _dominant(image, 0) > 500 and _dominant(image, 1) > 500
    assert page.view.scale_text.endswith("mm")

    page.set_class_visible(3, False)
    hidden = _centre(page.view.capture())
    assert _dominant(hidden, 1) < 0.05 * _dominant(image, 1)
    page.set_class_visible(3, True)
    page.set_class_opacity(2, 0.3)
    assert page.view.opacity(2) == pytest.approx(0.3)

    page.view.rotate(40, 20)
    page.view.zoom(1.5)
    page.view.pan(0.1, 0.0)
    page.view.reset_view()
    path = page.save_screenshot(tmp_path / "shot.png")
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_surfaces_loaded_while_hidden_appear_when_the_page_is_shown(app_context, segmented, store, qtbot):
    """The window selects a job before the 3D tab is shown: the view must still get the surfaces."""
    from app.gui.pages.view3d import View3DPage

    _mesh_now(store, segmented.id, smooth=0.5, decimate=0.5)
    page = View3DPage(app_context)
    qtbot.addWidget(page)
    page.resize(1200, 700)
    page.set_job(segmented.id)  # hidden: surfaces load, no view yet
    qtbot.waitUntil(lambda: page.stats.rowCount() == 2, timeout=20000)
    assert page.view is None
    page.show()
    qtbot.waitExposed(page)
    page.page_shown()
    assert sorted(page.view.keys()) == [2, 3]
    image = _centre(page.view.capture())
    assert _dominant(image, 0) > 500 and _dominant(image, 1) > 500
    page.shutdown()


def test_mesh_button_runs_in_background_and_shows_the_new_version(page, segmented, store, qtbot):
    page.set_job(segmented.id)
    assert page.mesh_button.isEnabled() and not page.cancel_button.isEnabled()
    page.smooth_box.setValue(0.3)
    page.decimate_box.setValue(0.5)
    page.mesh_button.click()
    qtbot.waitUntil(lambda: store.get(segmented.id).status == S.MESHED.value, timeout=30000)
    qtbot.waitUntil(lambda: page.view is not None and len(page.view.keys()) == 2, timeout=20000)
    assert page.version_box.count() == 1
    assert page.progress.value() == 1000
    page.mesh_button.click()  # re-mesh: a second version
    qtbot.waitUntil(lambda: page.version_box.count() == 2, timeout=30000)


def test_cancel_returns_to_segmented(page, segmented, store, qtbot, app_context):
    page.set_job(segmented.id)
    app_context.scheduler.progress.connect(lambda job_id, f, m: page.cancel_mesh())
    page.mesh_button.click()
    qtbot.waitUntil(lambda: not app_context.scheduler.is_running(segmented.id), timeout=30000)
    assert store.get(segmented.id).status == S.SEGMENTED.value
    assert page.progress.format() == "cancelled"
    assert page.mesh_button.isEnabled()


def test_cancel_right_after_mesh_leaves_nothing_queued(page, segmented, store, qtbot, app_context):
    from app.store.models import Mesh

    page.set_job(segmented.id)
    page.mesh_button.click()
    page.cancel_mesh()  # before or just after a pool thread picks it up
    qtbot.waitUntil(lambda: not app_context.scheduler.is_running(segmented.id), timeout=30000)
    qtbot.waitUntil(lambda: store.get(segmented.id).status in (S.SEGMENTED.value, S.MESHED.value), timeout=10000)
    assert not Mesh.select().where(Mesh.state.in_(["queued", "running"])).exists()
    assert page.mesh_button.isEnabled() and not page.cancel_button.isEnabled()


def test_export_marks_done_and_a_bad_folder_shows_a_clear_error(page, segmented, store, qtbot, tmp_path):
    _mesh_now(store, segmented.id)
    page.set_job(segmented.id)
    qtbot.waitUntil(lambda: page.export_button.isEnabled(), timeout=20000)
    blocked = tmp_path / "plain file"
    blocked.write_text("x")
    page.export_to(blocked / "out", "stl")
    qtbot.waitUntil(lambda: "Export failed" in page.message.text(), timeout=20000)
    assert str(blocked) in page.message.text()
    assert store.get(segmented.id).status == S.MESHED.value
    page.export_to(tmp_path / "out", "obj", combined=True)
    qtbot.waitUntil(lambda: page.message.text().startswith("Exported"), timeout=20000)
    assert len(list((tmp_path / "out").glob("*.obj"))) == 1
    assert store.get(segmented.id).status == S.DONE.value


def test_renders_only_while_shown_and_leaves_no_window(page, segmented, store, qtbot):
    _mesh_now(store, segmented.id)
    page.set_job(segmented.id)
    qtbot.waitUntil(lambda: page.view is not None and len(page.view.keys()) == 2, timeout=20000)
    page.page_hidden()
    before = page.view.renders
    page.set_class_opacity(2, 0.5)
    page.view.reset_view()
    assert page.view.renders == before
    page.page_shown()
    assert page.view.renders > before
    view = page.view
    page.shutdown()
    assert view.finalized and view.render_window is None


def test_unsegmented_job_cannot_be_meshed(page, store):
    job = store.create_job("raw")
    page.set_job(job.id)
    assert not page.mesh_button.isEnabled() and not page.export_button.isEnabled()
    assert "segmented" in page.mesh_button.toolTip()


def _open_sockets() -> int:
    import os

    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
        except OSError:
            pass
    return count


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_finalize_closes_the_render_window_connection(qtbot):
    from app.gui.vtk_view import SurfaceView

    before = _open_sockets()
    view = SurfaceView()
    qtbot.addWidget(view)
    view.resize(300, 200)
    view.show()
    qtbot.waitExposed(view)
    view.set_active(True)
    assert _open_sockets() > before  # VTK opened its own display connection
    view.finalize()
    assert _open_sockets() == before
