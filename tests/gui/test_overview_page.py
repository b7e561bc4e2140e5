"""The Overview page: facts, the error in red, the timeline, and the three-plane preview."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.statuses import JobStatus as S
from app.gui.pages.base import AppContext
from app.gui.pages.overview import OverviewPage, middle_slices
from app.gui.worker import JobScheduler
from app.pipeline.volume import write_volume
from tests.gui.window_support import phantom

pytestmark = pytest.mark.gui


@pytest.fixture
def page(qtbot, store):
    scheduler = JobScheduler(store)
    widget = OverviewPage(AppContext(store, scheduler))
    qtbot.addWidget(widget)
    widget.resize(900, 800)
    widget.show()
    yield widget
    widget.shutdown()


def converted_job(store, data, spacing=(1.0, 1.0, 1.0), unit="um"):
    job = store.create_job("converted", ["/scans/fossil.tif"], spacing, unit)
    for status in (S.UPLOADING, S.UPLOADED, S.CONVERTING):
        store.transition(job.id, status)
    write_volume(store.workspace.volume_path(job.id), data, spacing, unit)
    store.update(job.id, shape=list(data.shape), dtype=str(data.dtype))
    store.transition(job.id, S.CONVERTED, "converted in 0.1 s")
    return job


def test_error_message_in_red_and_the_timeline(qtbot, page, store):
    job = store.create_job("bad scan", ["/data/slices"])
    store.transition(job.id, S.UPLOADING)
    message = "/data/slices/slice_0007.tif: truncated image (expected 2097152 bytes, found 1024)"
    store.transition(job.id, S.ERROR, message)
    page.set_job(job.id)
    assert page.error_label.isVisible()
    assert page.error_label.text() == message
    assert "color: #b71c1c" in page.error_label.styleSheet()
    assert page.status_label.text() == "Error"
    timeline = store.timeline(job.id)
    assert page.timeline.topLevelItemCount() == len(timeline) == 3
    last = page.timeline.topLevelItem(2)
    assert last.text(1) == "Uploading → Error" and last.text(2) == message
    assert page.fields["source"].text() == "/data/slices"
    assert not page.has_preview()
    assert "converted" in page.preview_message.text()


def test_status_change_updates_the_page_live(qtbot, page, store):
    job = store.create_job("live", [])
    page.set_job(job.id)
    assert not page.error_label.isVisible() and page.timeline.topLevelItemCount() == 1
    old = store.transition(job.id, S.UPLOADING)
    page.app.scheduler.status_changed.emit(job.id, old.value, S.UPLOADING.value)
    assert page.status_label.text() == "Uploading"
    assert page.progress_widget.isVisible()
    page.app.scheduler.progress.emit(job.id, 0.5, "reading slice 50 of 100")
    assert page.progress_bar.value() == 500
    assert page.progress_label.text() == "reading slice 50 of 100"
    assert page.timeline.topLevelItemCount() == 2


def test_preview_of_the_three_middle_slices(qtbot, page, store):
    data = phantom((40, 64, 96))
    job = converted_job(store, data, spacing=(2.0, 0.5, 0.5))
    page.set_job(job.id)
    qtbot.waitUntil(page.has_preview, timeout=10000)
    titles = [t.text() for t in page.preview_titles]
    assert titles == ["z = 20 (y × x)", "y = 32 (z × x)", "x = 48 (z × y)"]
    xy, zx, zy = (label.pixmap() for label in page.preview_images)
    assert xy.width() == 200 and abs(xy.height() - 200 * 64 / 96) <= 1
    # z is 4x coarser than x: 40 slices of 2 um against 96 columns of 0.5 um.
    assert abs(zx.height() / zx.width() - (40 * 2.0) / (96 * 0.5)) < 0.02
    assert page.fields["shape"].text() == "40 × 64 × 96"
    assert page.fields["spacing"].text() == "2 × 0.5 × 0.5 µm"
    image = xy.toImage()
    centre = image.pixelColor(xy.width() // 2, xy.height() // 2).value()
    corner = image.pixelColor(3, 3).value()
    assert centre > 200 and corner < 120  # the bright ball over the dark matrix


def test_middle_slices_read_the_coarsest_level_with_robust_contrast(tmp_path):
    data = np.zeros((300, 40, 40), dtype=np.float32)
    data[:, 10:30, 10:30] = 1.0
    data[150, 0, 0] = 1e9  # one hot voxel must not flatten the contrast
    write_volume(tmp_path / "v.zarr", data)
    previews = middle_slices(tmp_path / "v.zarr")
    assert [p.image.shape for p in previews] == [(20, 20), (150, 20), (150, 20)]
    assert all(p.image.dtype == np.uint8 for p in previews)
    assert previews[0].image.max() == 255 and previews[0].image.min() == 0


def test_no_job_selected(qtbot, page, store):
    page.set_job(None)
    assert not page.details.isVisible() and page.empty_label.isVisible()
