"""Copying and moving a workspace: real SQLite, real zarr, real files."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.progress import Cancelled, ProgressContext, StageError
from app.core.statuses import JobStatus
from app.pipeline.annotations import open_annotations, write_region
from app.pipeline.volume import open_volume, write_volume
from app.store.jobs import JobStore
from app.store.models import Model, Segmentation
from app.store.relocate import is_workspace, relocate_workspace


def make_workspace(root):
    """A workspace with one job: a volume, paint, a model, a segmentation and a mesh file."""
    store = JobStore(root)
    job = store.create_job("Ammonite", spacing=(1.0, 1.0, 1.0), unit="um")
    ws = store.workspace
    rng = np.random.default_rng(0)
    write_volume(ws.volume_path(job.id), rng.integers(0, 255, (8, 16, 16), dtype=np.uint8), (1, 1, 1), "um")
    annotations = open_annotations(ws.annotations_path(job.id), (8, 16, 16), create=True)
    write_region(annotations, (slice(3, 4), slice(2, 6), slice(2, 6)), 1)
    write_region(annotations, (slice(3, 4), slice(9, 12), slice(9, 12)), 2)
    paint = np.asarray(annotations[:])
    model = Model.create(job=job, kind="quick", path=str(ws.model_dir(job.id, 1)), state="ready")
    ws.model_dir(job.id, model.id).mkdir(parents=True)
    (ws.model_dir(job.id, model.id) / "model.json").write_text('{"kind": "quick"}')
    seg = Segmentation.create(job=job, model=model, path=str(ws.segmentation_path(job.id, 1)), state="complete")
    write_volume(ws.segmentation_path(job.id, seg.id), (paint > 0).astype(np.uint8) + 1, (1, 1, 1), "um")
    store.update(job.id, sources=[str(ws.source_dir(job.id) / "scan.tif")])
    store.close()
    return job.id, paint


def test_copy_keeps_the_job_with_its_paint_and_results(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    job_id, paint = make_workspace(old)
    fractions = []
    result = relocate_workspace(old, new, ProgressContext(lambda f, m: fractions.append(f)))
    assert result.jobs == 1 and result.files > 0 and not result.moved
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert is_workspace(old), "a copy leaves the old workspace in place"

    store = JobStore(new)
    try:
        job = store.find("Ammonite")
        assert job.id == job_id
        ws = store.workspace
        np.testing.assert_array_equal(open_annotations(ws.annotations_path(job_id))[:], paint)
        summary = store.summary(job)
        assert summary["models"][0]["path"].startswith(str(new.resolve()))
        seg_path = summary["segmentations"][0]["path"]
        assert seg_path.startswith(str(new.resolve()))
        assert open_volume(seg_path).levels[0][3, 3, 3] == 2
        assert summary["sources"][0].startswith(str(new.resolve()))
        assert [e.to_status for e in store.timeline(job_id)] == [JobStatus.PENDING.value]
    finally:
        store.close()


def test_move_empties_the_old_folder(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    job_id, paint = make_workspace(old)
    result = relocate_workspace(old, new, move=True)
    assert result.moved
    assert not is_workspace(old)
    assert not (old / "jobs" / str(job_id)).exists()
    store = JobStore(new)
    try:
        np.testing.assert_array_equal(open_annotations(store.workspace.annotations_path(job_id))[:], paint)
    finally:
        store.close()


def test_cancel_leaves_nothing_behind(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    make_workspace(old)
    ctx = ProgressContext()
    ctx.cancel()
    with pytest.raises(Cancelled):
        relocate_workspace(old, new, ctx, move=True)
    assert not new.exists()
    assert is_workspace(old) and any((old / "jobs").iterdir())


@pytest.mark.parametrize("where", ["inside", "occupied", "file", "same"])
def test_bad_targets_name_the_folder(tmp_path, where):
    old = tmp_path / "old"
    make_workspace(old)
    target = {
        "inside": old / "sub",
        "occupied": tmp_path / "other",
        "file": tmp_path / "a-file",
        "same": old,
    }[where]
    if where == "occupied":
        JobStore(target).close()
    if where == "file":
        target.write_text("x")
    with pytest.raises(StageError) as info:
        relocate_workspace(old, target)
    assert str(target.resolve()) in str(info.value)
    assert is_workspace(old)


def test_not_a_workspace(tmp_path):
    with pytest.raises(StageError, match="no Strata workspace"):
        relocate_workspace(tmp_path / "nothing", tmp_path / "new")


def test_running_job_blocks_the_move(tmp_path):
    old = tmp_path / "old"
    make_workspace(old)
    store = JobStore(old)
    job = store.find("Ammonite")
    store.transition(job.id, JobStatus.UPLOADING)
    store.close()
    with pytest.raises(StageError, match="running"):
        relocate_workspace(old, tmp_path / "new")
    assert not (tmp_path / "new").exists()
