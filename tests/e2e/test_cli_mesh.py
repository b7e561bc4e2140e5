"""The mesh stage through the runner and the command line: statuses, files, stats, export, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from app.core.progress import ProgressContext
from app.core.statuses import JobStatus as S
from app.pipeline.mesh_io import read_surface_file
from app.runner import Runner
from app.stages.mesh import export_meshes, mesh_info, request_mesh
from app.store.models import Mesh
from tests.pipeline.mesh_helpers import add_class, make_segmented_job, sphere_labels

ROOT = Path(__file__).resolve().parents[2]
SPACING = (2.0, 1.0, 1.5)


def _labels():
    labels, exact = sphere_labels((30, 60, 40), SPACING, 24.0)
    return labels, exact


def cli(workspace, *args):
    env = {**os.environ, "STRATA_HOME": str(workspace)}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_mesh_stage_makes_a_version_and_remeshing_another(store):
    labels, exact = _labels()
    job, seg = make_segmented_job(store, labels, SPACING)
    add_class(store, job.id, 3, "teeth", "#00ff00")  # no voxels: a note, not an error
    request_mesh(store, job.id, smooth=0.5, decimate=0.25)
    assert store.get(job.id).status == S.MESHING_QUEUED.value
    assert Runner(store).run_job(job.id) is S.MESHED
    job = store.get(job.id)
    assert "teeth" in job.message and "no voxels" in job.message
    (first,) = mesh_info(store, job)["meshes"]
    assert first["state"] == "complete" and first["unit"] == "um"
    (surface,) = first["surfaces"]
    assert surface["name"] == "specimen" and surface["stats"]["closed"]
    assert abs(surface["stats"]["volume"] / exact - 1) < 0.02
    assert Path(surface["file"]).is_file()
    assert Path(first["path"]) == store.workspace.mesh_dir(job.id, seg.id, first["id"])

    request_mesh(store, job.id, smooth=0.0, decimate=1.0)
    assert Runner(store).run_job(job.id) is S.MESHED
    versions = mesh_info(store, store.get(job.id))["meshes"]
    assert len(versions) == 2 and versions[0]["path"] != versions[1]["path"]
    assert versions[1]["surfaces"][0]["stats"]["triangles"] > 3 * surface["stats"]["triangles"]
    assert Path(surface["file"]).is_file()  # the older version is kept


def test_cancel_returns_to_segmented(store):
    labels, _ = _labels()
    job, _ = make_segmented_job(store, labels, SPACING)
    mesh = request_mesh(store, job.id, 0.5, 1.0)
    ctx = ProgressContext(cancel_event=threading.Event())
    ctx_seen = []

    def on_progress(fraction, message):
        ctx_seen.append(fraction)
        ctx.cancel()

    assert Runner(store).run_job(job.id, ctx.tee(on_progress)) is S.SEGMENTED
    assert store.get(job.id).status == S.SEGMENTED.value
    assert Mesh.get_by_id(mesh.id).state == "cancelled"
    assert not store.workspace.mesh_dir(job.id, mesh.segmentation_id, mesh.id).exists()


def test_unwritable_mesh_folder_gives_mesh_error_and_keeps_older_meshes(store):
    labels, _ = _labels()
    job, seg = make_segmented_job(store, labels, SPACING)
    request_mesh(store, job.id)
    assert Runner(store).run_job(job.id) is S.MESHED
    good = mesh_info(store, store.get(job.id))["meshes"][0]
    # the next version's folder cannot be made: a plain file sits where it belongs
    blocker = store.workspace.mesh_dir(job.id, seg.id, good["id"] + 1)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("in the way")
    request_mesh(store, job.id, smooth=0.2)
    assert Runner(store).run_job(job.id) is S.MESH_ERROR
    job = store.get(job.id)
    assert str(blocker) in job.message and "could not write the meshes" in job.message
    assert all(Path(s["file"]).is_file() for s in good["surfaces"])
    assert blocker.read_text() == "in the way"
    # the job can be meshed again from the error state
    blocker.unlink()
    request_mesh(store, job.id)
    assert Runner(store).run_job(job.id) is S.MESHED


def test_missing_segmentation_file_is_a_clear_error(store):
    import shutil

    labels, _ = _labels()
    job, seg = make_segmented_job(store, labels, SPACING)
    request_mesh(store, job.id)
    shutil.rmtree(seg.path)
    assert Runner(store).run_job(job.id) is S.MESH_ERROR
    message = store.get(job.id).message
    assert seg.path in message and "missing" in message


def test_request_needs_a_segmented_job(store):
    from app.core.statuses import TransitionError

    job = store.create_job("fresh")
    with pytest.raises(TransitionError, match="once it is segmented"):
        request_mesh(store, job.id)
    labels, _ = _labels()
    job, _ = make_segmented_job(store, labels, SPACING, name="s")
    with pytest.raises(ValueError, match="smoothing"):
        request_mesh(store, job.id, smooth=3)
    assert store.get(job.id).status == S.SEGMENTED.value


def test_export_marks_done_and_unwritable_folder_fails_cleanly(store, tmp_path):
    labels, _ = _labels()
    job, _ = make_segmented_job(store, labels, SPACING, name="Ammonite 1")
    request_mesh(store, job.id)
    Runner(store).run_job(job.id)
    blocked = tmp_path / "a file"
    blocked.write_text("x")
    with pytest.raises(OSError, match="could not export the meshes") as info:
        export_meshes(store, store.get(job.id), "stl", blocked / "out")
    assert str(blocked) in str(info.value)
    assert store.get(job.id).status == S.MESHED.value
    files = export_meshes(store, store.get(job.id), "ply", tmp_path / "out")
    assert [f.name for f in files] == ["Ammonite_1_specimen.ply"]
    assert store.get(job.id).status == S.DONE.value


def test_cli_mesh_meshes_export(workspace, tmp_path):
    from app.store.jobs import JobStore

    labels, exact = _labels()
    store = JobStore(workspace)
    job, _ = make_segmented_job(store, labels, SPACING, name="cli")
    store.close()

    run = cli(workspace, "mesh", str(job.id), "--smooth", "0.4", "--decimate", "0.3")
    assert run.returncode == 0, run.stderr
    assert "specimen" in run.stdout and "closed" in run.stdout

    run = cli(workspace, "meshes", "cli", "--json")
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    (version,) = info["meshes"]
    assert version["params"]["smooth"] == 0.4 and version["params"]["decimate"] == 0.3
    stats = version["surfaces"][0]["stats"]
    assert stats["closed"] and abs(stats["volume"] / exact - 1) < 0.02

    z, y, x = np.nonzero(labels == 2)
    step = np.array(SPACING[::-1])
    lo = np.array([x.min(), y.min(), z.min()]) * step - step / 2
    hi = np.array([x.max(), y.max(), z.max()]) * step + step / 2
    for fmt in ("stl", "obj", "ply"):
        out = tmp_path / fmt
        run = cli(workspace, "export", "cli", "--what", "meshes", "--format", fmt, "--out", str(out))
        assert run.returncode == 0, run.stderr
        (path,) = [Path(line) for line in run.stdout.split()]
        points, faces = read_surface_file(path)
        assert len(faces) == stats["triangles"]
        # smoothed and decimated: within one voxel of the labels' bounds
        assert np.all(np.abs(points.min(axis=0) - lo) <= step)
        assert np.all(np.abs(points.max(axis=0) - hi) <= step)
    run = cli(workspace, "export", "cli", "--what", "meshes", "--format", "obj", "--combined",
              "--out", str(tmp_path / "all"))
    assert run.returncode == 0 and run.stdout.strip().endswith(".obj")
    run = cli(workspace, "jobs", "--json")
    assert run.returncode == 0


def test_cli_errors_are_one_line(workspace, tmp_path):
    from app.store.jobs import JobStore

    store = JobStore(workspace)
    job = store.create_job("fresh")
    store.close()
    run = cli(workspace, "mesh", str(job.id))
    assert run.returncode == 1 and run.stderr.startswith("error:") and "segmented" in run.stderr
    run = cli(workspace, "export", str(job.id), "--what", "meshes", "--format", "stl", "--out", str(tmp_path))
    assert run.returncode == 1 and "no meshes yet" in run.stderr
    run = cli(workspace, "meshes", str(job.id))
    assert run.returncode == 0 and "no meshes" in run.stdout
