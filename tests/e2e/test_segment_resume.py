"""Train -> segment through the runner and the CLI; resume after a kill; cancel; model reuse; bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
import zarr

from app.cli import main as cli_main
from app.core.progress import ProgressContext
from app.core.statuses import JobStatus
from app.pipeline.annotations import open_annotations
from app.pipeline.metrics import dice_per_class
from app.pipeline.segment import blocks_done, markers_dir
from app.runner import Runner
from app.stages.segment import request_segmentation
from app.stages.train import request_training
from app.store.models import Model, Segmentation
from tests.conftest import ROOT
from tests.e2e.segment_helpers import FAST_QUICK, annotated_job

S = JobStatus


def test_train_then_segment_through_the_runner(store):
    job, truth = annotated_job(store)
    row = request_training(store, job.id, "quick", FAST_QUICK)
    assert store.get(job.id).status == "training_queued"
    status = Runner(store).run_job(job.id)
    assert status is S.SEGMENTED, store.get(job.id).message
    model = Model.get_by_id(row.id)
    assert model.state == "ready" and model.n_slices == 3 and model.n_voxels == 3 * 64 * 64
    assert model.metrics["held_out"]["2"]["dice"] > 0.5
    seg = Segmentation.get(Segmentation.job == job.id)
    assert seg.state == "complete" and seg.model_id == row.id
    labels = zarr.open_array(seg.path, mode="r")[...]
    assert dice_per_class(truth, labels, [1, 2])[2] > 0.85
    statuses = [e.to_status for e in store.timeline(job.id)]
    assert statuses[-4:] == ["training", "trained", "segmenting", "segmented"]
    summary = store.summary(job.id)
    assert summary["models"][0]["id"] == row.id and summary["segmentations"][0]["path"] == seg.path


def test_resegment_with_clean_up_and_cancel(store):
    job, _ = annotated_job(store)
    request_training(store, job.id, "quick", FAST_QUICK)
    Runner(store).run_job(job.id)
    seg = request_segmentation(store, job.id, cleanup={"min_size": 20, "fill_holes": True}, block=(4, 32, 32))
    ctx = ProgressContext()

    def cancel_soon(fraction, message):
        if fraction > 0.2:
            ctx.cancel()

    status = Runner(store).run_job(job.id, ctx.tee(cancel_soon))
    assert status is S.SEGMENTED  # back to the state before
    assert Segmentation.get_by_id(seg.id).state == "cancelled"
    assert not os.path.exists(seg.path) and not markers_dir(seg.path).exists()
    again = request_segmentation(store, job.id, cleanup={"min_size": 20, "fill_holes": True})
    assert Runner(store).run_job(job.id) is S.SEGMENTED
    assert Segmentation.get_by_id(again.id).state == "complete"


def test_paint_of_one_class_leaves_the_job_as_it_was(store):
    job, _ = annotated_job(store)
    annotations = open_annotations(store.workspace.annotations_path(job.id))
    annotations[...] = np.where(annotations[...] > 0, 1, 0).astype(np.uint8)
    request_training(store, job.id, "quick", FAST_QUICK)
    status = Runner(store).run_job(job.id)
    job = store.get(job.id)
    assert status is S.ANNOTATED
    assert "only one class" in job.message and "annotations.zarr" in job.message
    assert Model.get(Model.job == job.id).state == "failed"
    assert np.count_nonzero(annotations[...]) == 3 * 64 * 64  # nothing lost


def test_deep_model_on_a_volume_too_small(store):
    job, _ = annotated_job(store, shape=(6, 12, 12), slices=(2, 3))
    request_training(store, job.id, "deep", {"epochs": 1})
    assert Runner(store).run_job(job.id) is S.ANNOTATED
    assert "too small for the deep model" in store.get(job.id).message


def test_model_reuse_across_jobs_and_a_mismatched_model(store):
    first, _ = annotated_job(store, name="first")
    row = request_training(store, first.id, "quick", FAST_QUICK)
    Runner(store).run_job(first.id)
    second, truth = annotated_job(store, seed=3, name="second", slices=(12,))
    request_segmentation(store, second.id, model_id=row.id)
    assert Runner(store).run_job(second.id) is S.SEGMENTED
    seg = Segmentation.get(Segmentation.job == second.id)
    assert dice_per_class(truth, zarr.open_array(seg.path)[...], [1, 2])[2] > 0.8
    # a model expecting 3 channels cannot segment a one-channel volume
    meta_path = os.path.join(Model.get_by_id(row.id).path, "model.json")
    meta = json.load(open(meta_path))
    meta["channels"] = 3
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(Exception, match="expects 3 channel"):
        request_segmentation(store, second.id, model_id=row.id)
    assert store.get(second.id).status == "segmented"
    assert Segmentation.select().where(Segmentation.job == second.id).count() == 1


def test_cli_train_models_and_export(workspace, store, tmp_path, capsys):
    job, _ = annotated_job(store)
    assert cli_main(["train", str(job.id), "--model", "quick", "--scales", "0.7,1.6,3.5", "--min-size", "10"]) == 0
    out = capsys.readouterr().out
    assert "held-out" in out and "segmentation" in out
    assert cli_main(["models", str(job.id), "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    assert models[0]["kind"] == "quick" and models[0]["metrics"]["held_out"]
    tif = tmp_path / "seg.tif"
    assert cli_main(["export", str(job.id), "--what", "segmentation", "--format", "tiff", "--out", str(tif)]) == 0
    with tifffile.TiffFile(tif) as t:
        assert t.imagej_metadata["spacing"] == 2.0 and t.imagej_metadata["unit"] == "micron"
        assert t.asarray().shape == (24, 64, 64)
    assert cli_main(["export", str(job.id), "--what", "segmentation", "--format", "png", "--out", str(tmp_path / "png")]) == 0
    assert len(list((tmp_path / "png").glob("*.png"))) == 24
    assert cli_main(["export", str(job.id), "--what", "segmentation", "--format", "zarr", "--out", str(tmp_path / "s.zarr")]) == 0
    assert zarr.open_array(str(tmp_path / "s.zarr")).attrs["strata"]["spacing"] == [2.0, 1.0, 1.0]
    assert cli_main(["segment", str(job.id), "--model", "999"]) == 1
    assert "no model with id 999" in capsys.readouterr().err


RESUME_SCRIPT = """
import sys
from app.runner import Runner
from app.store.jobs import JobStore
store = JobStore(sys.argv[1])
Runner(store).run_job(int(sys.argv[2]))
"""


def test_segmentation_resumes_after_a_kill(store, workspace):
    job, truth = annotated_job(store, shape=(16, 48, 48), slices=(4, 8, 12))
    row = request_training(store, job.id, "quick", FAST_QUICK | {"cleanup": {}})
    Runner(store).run_job(job.id, follow=False)  # train only
    assert Model.get_by_id(row.id).state == "ready"
    Segmentation.delete().where(Segmentation.job == job.id).execute()
    seg = request_segmentation(store, job.id, block=(1, 48, 48))  # 16 blocks
    proc = subprocess.Popen(
        [sys.executable, "-c", RESUME_SCRIPT, str(workspace), str(job.id)],
        cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 120
        while blocks_done(seg.path) < 3:
            assert proc.poll() is None, "the segmentation ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = blocks_done(seg.path)
    assert 3 <= done_before < 16
    assert store.get(job.id).status == "segmenting"
    runner = Runner(store)
    assert runner.recover() == [job.id]
    assert store.get(job.id).status == "trained"
    assert runner.queued_jobs() == [job.id]
    assert runner.run_job(job.id) is S.SEGMENTED
    seg = Segmentation.get_by_id(seg.id)
    assert seg.state == "complete" and blocks_done(seg.path) == 16
    assert "resumed" in store.get(job.id).message
    labels = zarr.open_array(seg.path)[...]
    # identical to an uninterrupted run with another block size
    fresh = request_segmentation(store, job.id, block=(16, 48, 48))
    runner.run_job(job.id)
    assert np.array_equal(labels, zarr.open_array(Segmentation.get_by_id(fresh.id).path)[...])
