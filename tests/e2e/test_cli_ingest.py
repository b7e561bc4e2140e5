"""The command line end to end, through subprocesses: new, sample, run, jobs, status, rename,
delete, exit codes, and recovery after the process is killed during a conversion."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

from tests.conftest import ROOT
from tests.pipeline import scan_fixtures as fx


def cli(workspace: Path, *args: str, check: bool = True, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("STRATA_HOME", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args, "--workspace", str(workspace)],
        cwd=cwd, capture_output=True, text=True, env=env, timeout=300,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def jobs(workspace: Path) -> dict[int, dict]:
    return {job["id"]: job for job in json.loads(cli(workspace, "jobs", "--json").stdout)}


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_new_run_jobs_status_rename_delete(tmp_path):
    ws = tmp_path / "ws"
    data = fx.volume((70, 20, 24), "uint16")
    fx.write_slices(tmp_path / "ammonite", data)
    job_id = int(cli(ws, "new", str(tmp_path / "ammonite"), "--spacing", "2", "1", "1", "--unit", "um").stdout)
    listed = jobs(ws)[job_id]
    assert listed["name"] == "ammonite" and listed["status"] == "uploaded"

    run = cli(ws, "run", "--until-idle")
    assert f"job {job_id}: converted" in run.stderr
    job = jobs(ws)[job_id]
    for key in ("id", "name", "status", "progress", "shape", "dtype", "spacing", "unit", "message", "path"):
        assert key in job
    assert job["status"] == "converted" and job["progress"] == 1.0
    assert (job["shape"], job["dtype"], job["spacing"], job["unit"]) == ([70, 20, 24], "uint16", [2.0, 1.0, 1.0], "um")
    assert Path(job["path"], "volume.zarr").is_dir()

    status = json.loads(cli(ws, "status", str(job_id), "--json").stdout)
    assert [e["to_status"] for e in status["timeline"]] == ["pending", "uploading", "uploaded", "converting", "converted"]
    assert all(e["time"] for e in status["timeline"])
    text = cli(ws, "status", "ammonite").stdout
    assert "timeline:" in text and "converted" in text

    cli(ws, "rename", str(job_id), "Ammonite 7")
    assert jobs(ws)[job_id]["name"] == "Ammonite 7"
    line = cli(ws, "jobs").stdout
    assert "Ammonite 7" in line and "70x20x24" in line

    cli(ws, "delete", "Ammonite 7")
    assert job_id not in jobs(ws) and not Path(job["path"]).exists()
    assert (tmp_path / "ammonite" / "slice_0.tif").exists()  # the user's files stay


def test_failures_exit_non_zero_with_one_line(tmp_path):
    ws = tmp_path / "ws"
    (tmp_path / "empty").mkdir()
    done = cli(ws, "new", str(tmp_path / "empty"), "--name", "nothing", check=False)
    assert str(tmp_path / "empty") in one_error_line(done)
    job_id = int(done.stdout)
    assert jobs(ws)[job_id]["status"] == "error"
    assert "empty" in jobs(ws)[job_id]["message"]

    assert "--spacing" in one_error_line(cli(ws, "new", str(tmp_path), "--spacing", "0", "1", "1", check=False))
    assert "no job" in one_error_line(cli(ws, "status", "999", check=False))
    assert "no job" in one_error_line(cli(ws, "rename", "999", "x", check=False))
    assert "no job" in one_error_line(cli(ws, "delete", "999", check=False))
    assert cli(ws, "frobnicate", check=False).returncode != 0

    # a conversion failure: the job was imported, then a slice went missing
    paths = fx.write_slices(tmp_path / "scan", fx.volume((5, 8, 8)))
    good = int(cli(ws, "new", str(tmp_path / "scan")).stdout)
    paths[3].unlink()
    run = cli(ws, "run", "--until-idle", check=False)
    assert run.returncode == 1
    assert f"error: job {good} (convert_error): {paths[3]}" in run.stderr
    assert jobs(ws)[good]["status"] == "convert_error"


def test_sample_command(tmp_path):
    ws = tmp_path / "ws"
    job_id = int(cli(ws, "sample").stdout)
    cli(ws, "run", "--until-idle")
    job = jobs(ws)[job_id]
    assert job["name"] == "Sample fossil" and job["status"] == "converted"
    assert job["shape"] == [128, 256, 256] and job["dtype"] == "uint16" and job["unit"] == "um"


def _status(db: Path, job_id: int) -> tuple[str, float]:
    with sqlite3.connect(db, timeout=10) as con:
        row = con.execute("select status, progress from job where id = ?", (job_id,)).fetchone()
    return row[0], row[1]


def _start_run_and_wait_until_converting(ws: Path, job_id: int) -> subprocess.Popen:
    env = {**os.environ}
    env.pop("STRATA_HOME", None)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "run", "--until-idle", "--workspace", str(ws)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status, _ = _status(ws / "strata.db", job_id)
        if status == "converting" and list((ws / "jobs" / str(job_id)).glob("volume.zarr.partial*")):
            return process  # the conversion has begun writing
        if process.poll() is not None:
            break
        time.sleep(0.01)
    process.kill()
    raise AssertionError("the conversion ended (or never started) before it could be interrupted")


def test_ctrl_c_cancels_and_a_kill_converts_again_from_the_start(tmp_path):
    ws = tmp_path / "ws"
    base = fx.volume((1, 512, 512), "uint16")[0]
    data = np.empty((512, 512, 512), np.uint16)
    for z in range(512):
        data[z] = np.roll(base, z, axis=1)
    tifffile.imwrite(tmp_path / "big.tif", data)
    job_id = int(cli(ws, "new", str(tmp_path / "big.tif")).stdout)
    db = ws / "strata.db"
    job_dir = ws / "jobs" / str(job_id)

    # Ctrl+C: the conversion is cancelled cleanly, back to "uploaded", nothing half-written
    process = _start_run_and_wait_until_converting(ws, job_id)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"job {job_id}: cancelled, back to uploaded" in stderr
    assert _status(db, job_id)[0] == "uploaded"
    assert sorted(p.name for p in job_dir.iterdir()) == ["source"]

    # SIGKILL: the job is left "converting"; the next run recovers it
    process = _start_run_and_wait_until_converting(ws, job_id)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert _status(db, job_id)[0] == "converting"
    assert list(job_dir.glob("volume.zarr.partial*")), "the killed run left its partial volume"

    again = cli(ws, "run", "--until-idle")
    assert f"job {job_id}: interrupted earlier, queued again" in again.stderr
    job = jobs(ws)[job_id]
    assert job["status"] == "converted"
    timeline = json.loads(cli(ws, "status", str(job_id), "--json").stdout)["timeline"]
    moves = [(e["from_status"], e["to_status"]) for e in timeline]
    assert ("converting", "uploaded") in moves and moves[-1] == ("converting", "converted")
    assert sorted(p.name for p in (ws / "jobs" / str(job_id)).iterdir()) == ["source", "volume.zarr"]
    from app.pipeline.volume import open_volume

    volume = open_volume(ws / "jobs" / str(job_id) / "volume.zarr")
    assert volume.shape == (512, 512, 512)
    for z in (0, 300, 511):
        np.testing.assert_array_equal(volume.levels[0][z], data[z])
    assert [level.shape for level in volume.levels][-1] == (256, 256, 256)


def test_relative_source_paths_work_from_another_folder(tmp_path):
    ws = tmp_path / "ws"
    fx.write_slices(tmp_path / "scans" / "snail", fx.volume((4, 8, 8)))
    job_id = int(cli(ws, "new", "snail", "--name", "Snail", cwd=tmp_path / "scans").stdout)
    cli(ws, "run", "--until-idle")  # from the project folder
    job = jobs(ws)[job_id]
    assert job["status"] == "converted" and job["sources"] == [str(tmp_path / "scans" / "snail")]
