"""The runner on a real store, with real (small) stage functions defined here."""

import threading
import time

from app.core.progress import ProgressContext, StageError
from app.core.statuses import JobStatus as S
from app.runner import Runner, Stage


def write_marker(store, job, ctx):
    for i in range(5):
        ctx.check_cancelled()
        ctx.report(i / 5, f"step {i}")
    (store.workspace.job_dir(job.id) / "marker.txt").write_text("ok")
    return "marker written"


def wait_for_cancel(store, job, ctx):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        ctx.report(0.5, "waiting")
        time.sleep(0.01)
    raise AssertionError("never cancelled")


def fail_clearly(store, job, ctx):
    raise StageError("slice_0003.tif: truncated image")


def crash(store, job, ctx):
    raise ZeroDivisionError("boom")


def stage(target, error=S.CONVERT_ERROR):
    return (Stage("convert", S.UPLOADED, S.CONVERTING, S.CONVERTED, error, f"tests.core.test_runner:{target}"),)


class Recorder:
    def __init__(self):
        self.events = []

    def status_changed(self, job_id, old, new):
        self.events.append(("status", old, new))

    def progress(self, job_id, fraction, message):
        self.events.append(("progress", round(fraction, 2)))

    def failed(self, job_id, message):
        self.events.append(("failed", message))

    def finished(self, job_id):
        self.events.append(("finished",))


def uploaded_job(store):
    job = store.create_job("a", [])
    store.transition(job.id, S.UPLOADING)
    store.transition(job.id, S.UPLOADED)
    return job


def test_happy_path_emits_statuses_and_progress(store):
    job = uploaded_job(store)
    rec = Recorder()
    status = Runner(store, rec, stage("write_marker")).run_job(job.id)
    assert status is S.CONVERTED
    assert ("status", "uploaded", "converting") in rec.events
    assert ("status", "converting", "converted") in rec.events
    assert ("progress", 0.8) in rec.events
    assert (store.workspace.job_dir(job.id) / "marker.txt").read_text() == "ok"
    assert store.timeline(job.id)[-1].message == "marker written"
    assert store.get(job.id).owner_pid is None


def test_cancel_returns_to_state_before(store):
    job = uploaded_job(store)
    ctx = ProgressContext()
    runner = Runner(store, None, stage("wait_for_cancel"))
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("s", runner.run_job(job.id, ctx)))
    worker.start()
    while store.get(job.id).status != "converting":
        time.sleep(0.01)
    ctx.cancel()
    worker.join(10)
    assert result["s"] is S.UPLOADED
    assert store.get(job.id).status == "uploaded"
    assert "cancelled" in store.timeline(job.id)[-1].message


def test_stage_error_sets_error_status_with_message(store):
    job = uploaded_job(store)
    other = uploaded_job(store)
    rec = Recorder()
    assert Runner(store, rec, stage("fail_clearly")).run_job(job.id) is S.CONVERT_ERROR
    assert store.get(job.id).message == "slice_0003.tif: truncated image"
    assert ("failed", "slice_0003.tif: truncated image") in rec.events
    assert store.get(other.id).status == "uploaded"


def test_unexpected_error_is_recorded_not_raised(store):
    job = uploaded_job(store)
    assert Runner(store, None, stage("crash")).run_job(job.id) is S.CONVERT_ERROR
    assert "ZeroDivisionError" in store.get(job.id).message
    assert "ZeroDivisionError" in (store.workspace.job_dir(job.id) / "error.log").read_text()


def test_error_none_returns_to_previous(store):
    job = store.create_job("a", [])
    for s in (S.UPLOADING, S.UPLOADED, S.CONVERTING, S.CONVERTED, S.ANNOTATED, S.TRAINING_QUEUED):
        store.transition(job.id, s)
    stages = (Stage("train", S.TRAINING_QUEUED, S.TRAINING, S.TRAINED, None, "tests.core.test_runner:fail_clearly"),)
    assert Runner(store, None, stages).run_job(job.id) is S.ANNOTATED
    assert "truncated" in store.get(job.id).message


def test_recover_requeues_dead_owner(store):
    job = uploaded_job(store)
    store.transition(job.id, S.CONVERTING, owner_pid=2**22 + 12345)  # no such process
    recovered = Runner(store).recover()
    assert recovered == [job.id]
    assert store.get(job.id).status == "uploaded"
    assert "interrupted" in store.timeline(job.id)[-1].message


def test_run_until_idle_runs_all_queued(store):
    jobs = [uploaded_job(store) for _ in range(3)]
    done = Runner(store, None, stage("write_marker")).run_until_idle()
    assert sorted(done) == sorted(j.id for j in jobs)
    assert all(store.get(j.id).status == "converted" for j in jobs)


def test_cancel_queued(store):
    job = store.create_job("a", [])
    for s in (S.UPLOADING, S.UPLOADED, S.CONVERTING, S.CONVERTED, S.ANNOTATED, S.TRAINING_QUEUED):
        store.transition(job.id, s)
    Runner(store).cancel_queued(job.id)
    assert store.get(job.id).status == "annotated"
