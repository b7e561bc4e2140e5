"""JobStore on a real SQLite file: jobs, transitions, timeline, summaries, migrations."""

import sqlite3
import threading

import pytest

from app.core.statuses import JobStatus as S
from app.core.statuses import TransitionError
from app.store.db import MIGRATIONS, schema_version
from app.store.jobs import JobNotFound, JobStore


def walk(store, job_id, *statuses):
    for status in statuses:
        store.transition(job_id, status)


def test_database_pragmas_and_schema(store):
    assert store.workspace.db_path.is_file()
    con = sqlite3.connect(store.workspace.db_path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"job", "statusevent", "labelclass", "model", "segmentation", "mesh"} <= tables
    assert schema_version(store.db) == len(MIGRATIONS)
    assert store.db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1


def test_reopening_keeps_data(workspace):
    first = JobStore(workspace)
    job = first.create_job("shell", ["/data/shell.tif"], (1.0, 0.5, 0.5), "um")
    first.close()
    again = JobStore(workspace)
    loaded = again.get(job.id)
    assert (loaded.name, loaded.spacing, loaded.unit) == ("shell", [1.0, 0.5, 0.5], "um")


def test_new_job_has_default_classes_and_folder(store):
    job = store.create_job("a", [])
    assert [c.name for c in store.label_classes(job.id)] == ["background", "specimen"]
    assert store.workspace.job_dir(job.id).is_dir()
    assert store.get(job.id).status == "pending"


def test_transition_records_timeline_and_previous(store):
    job = store.create_job("a", [])
    walk(store, job.id, S.UPLOADING, S.UPLOADED, S.CONVERTING)
    assert store.get(job.id).previous_status == "uploaded"
    store.transition(job.id, S.CONVERTED, "done")
    timeline = store.timeline(job.id)
    assert [e.to_status for e in timeline] == ["pending", "uploading", "uploaded", "converting", "converted"]
    assert timeline[-1].message == "done" and timeline[-1].from_status == "converting"
    assert store.get(job.id).previous_status is None


def test_disallowed_transition_raises_and_changes_nothing(store):
    job = store.create_job("a", [])
    with pytest.raises(TransitionError):
        store.transition(job.id, S.MESHED)
    assert store.get(job.id).status == "pending"
    assert len(store.timeline(job.id)) == 1


def test_expect_makes_claim_exclusive(store):
    job = store.create_job("a", [])
    walk(store, job.id, S.UPLOADING, S.UPLOADED)
    results = []

    def claim():
        try:
            store.transition(job.id, S.CONVERTING, expect=S.UPLOADED)
            results.append("won")
        except TransitionError:
            results.append("lost")

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["lost", "lost", "lost", "won"]


def test_find_rename_delete(store):
    a = store.create_job("alpha", [])
    b = store.create_job("beta", [])
    assert store.find("beta").id == b.id
    assert store.find(str(a.id)).id == a.id
    store.rename(a.id, "gamma")
    assert store.find("gamma").id == a.id
    with pytest.raises(ValueError):
        store.rename(a.id, "  ")
    (store.workspace.job_dir(a.id) / "x.bin").write_bytes(b"1")
    store.delete(a.id)
    assert not store.workspace.job_dir(a.id).exists()
    with pytest.raises(JobNotFound):
        store.get(a.id)
    assert store.get(b.id).name == "beta"
    assert [j.id for j in store.list_jobs()] == [b.id]


def test_list_is_newest_first(store):
    ids = [store.create_job(f"j{i}", []).id for i in range(3)]
    assert [j.id for j in store.list_jobs()] == ids[::-1]


def test_summary_fields(store):
    job = store.create_job("a", ["/x"], (2, 1, 1), "um")
    summary = store.summary(job.id)
    for key in ("id", "name", "status", "progress", "shape", "dtype", "spacing", "unit", "message", "path",
                "classes", "annotated_voxels", "models", "segmentations"):
        assert key in summary
    assert summary["status"] == "pending" and summary["spacing"] == [2, 1, 1]
