"""The Models page in a real Qt window: train, list versions with held-out metrics, segment, reuse, errors."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication

from app.pipeline.annotations import open_annotations
from app.store.jobs import JobStore
from app.store.models import Model, Segmentation
from tests.e2e.segment_helpers import FAST_QUICK, annotated_job

pytestmark = pytest.mark.gui
FAST = {k: v for k, v in FAST_QUICK.items() if k != "scales"}


@pytest.fixture
def env(qapp, tmp_path):
    from app.gui.pages.base import AppContext
    from app.gui.pages.models import ModelsPage
    from app.gui.worker import JobScheduler

    store = JobStore(tmp_path / "ws")
    scheduler = JobScheduler(store)
    page = ModelsPage(AppContext(store, scheduler))
    page.resize(1200, 700)
    page.show()
    yield store, scheduler, page
    scheduler.cancel_all()
    scheduler.wait(60000)
    page.close()
    page.deleteLater()
    store.close()


def wait_idle(qtbot, scheduler, job_id):
    qtbot.waitUntil(lambda: not scheduler.is_running(job_id), timeout=120000)
    QApplication.processEvents()


def test_train_quick_lists_the_version_and_segments(env, qtbot, tmp_path):
    store, scheduler, page = env
    job, _ = annotated_job(store)
    page.set_job(job.id)
    assert page.progress.text() == "nothing running"  # not an idle "0%"
    page.scales_edit.setText("0.7, 1.6, 3.5")
    seen, said = [], []
    scheduler.progress.connect(lambda j, f, m: seen.append(m))
    scheduler.status_changed.connect(lambda j, old, new: said.append((new, page.message_label.text())))
    assert page.train("quick", FAST)
    assert page.message_label.text().startswith("Training quick model")
    wait_idle(qtbot, scheduler, job.id)
    assert ("segmenting", "Segmenting the whole volume, block by block…") in said  # not still "Training …"
    assert store.get(job.id).status == "segmented"
    assert page.progress.text() == "100%"
    assert page.table.rowCount() == 1
    header = [page.table.horizontalHeaderItem(c).text() for c in range(page.table.columnCount())]
    row = {header[c]: page.table.item(0, c).text() for c in range(len(header))}
    assert row["Kind"] == "quick" and "scales 0.7, 1.6, 3.5" in row["Parameters"]
    assert "on 3 slice(s)" in row["Paint"] and "specimen" in row["Held-out Dice / IoU"]
    assert "(training paint)" in row["Training-paint accuracy"] and row["State"] == "ready"
    assert "Held-out" in header[4] and "Training-paint" in header[5]
    assert any("block" in m for m in seen)
    assert "segmentation" in page.segmentation_label.text() and "complete" in page.segmentation_label.text()
    grab = page.grab()
    grab.save(str(tmp_path / "models_page.png"))
    # segment again with the listed version, with clean-up
    page.min_size_spin.setValue(10)
    page.table.selectRow(0)
    assert page.segment_button.isEnabled()
    page.segment_button.click()
    wait_idle(qtbot, scheduler, job.id)
    segs = list(Segmentation.select().where(Segmentation.job == job.id).order_by(Segmentation.id))
    assert [s.state for s in segs] == ["complete", "complete"]
    assert segs[-1].params["cleanup"]["min_size"] == 10


def test_one_class_paint_shows_a_clear_message(env, qtbot):
    store, scheduler, page = env
    job, _ = annotated_job(store, slices=(5,))
    annotations = open_annotations(store.workspace.annotations_path(job.id))
    annotations[5] = np.ones((64, 64), np.uint8)
    page.set_job(job.id)
    page.train("quick", FAST)
    wait_idle(qtbot, scheduler, job.id)
    assert store.get(job.id).status == "annotated"
    assert "only one class" in page.message_label.text() and "c62828" in page.message_label.styleSheet()
    assert page.table.item(0, 7).text() == "failed"


def test_cancel_training_returns_the_job(env, qtbot):
    store, scheduler, page = env
    job, _ = annotated_job(store)
    page.set_job(job.id)
    page.train("deep", {"epochs": 50, "steps_per_epoch": 50, "batch": 2, "patch": 32, "base": 8})
    qtbot.waitUntil(lambda: "iteration" in page.progress_label.text(), timeout=60000)
    page.cancel_button.click()
    wait_idle(qtbot, scheduler, job.id)
    assert store.get(job.id).status == "annotated"
    assert Model.get(Model.job == job.id).state == "cancelled"


def test_use_a_model_from_another_job(env, qtbot):
    from app.runner import Runner
    from app.stages.train import request_training

    store, scheduler, page = env
    first, _ = annotated_job(store, name="first")
    row = request_training(store, first.id, "quick", FAST_QUICK)
    Runner(store).run_job(first.id)
    second, _ = annotated_job(store, name="second", seed=4, slices=(12,))
    page.set_job(second.id)
    choices = page.other_models()
    assert choices and choices[0][0] == row.id and "first" in choices[0][1]
    assert page.segment_with(row.id)
    wait_idle(qtbot, scheduler, second.id)
    assert store.get(second.id).status == "segmented"
    assert Segmentation.get(Segmentation.job == second.id).model_id == row.id
