"""Kill the app right after a stroke: on restart the stroke is there (a real process, SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from app.pipeline import annotations as ann
from app.store.jobs import JobStore
from tests.conftest import ROOT
from tests.pipeline.annotation_helpers import converted_job, phantom

pytestmark = pytest.mark.gui


def test_strokes_survive_sigkill_right_after_release(tmp_path):
    workspace = tmp_path / "ws"
    store = JobStore(workspace)
    job = converted_job(store, phantom((40, 48, 56)))
    store.close()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "e2e" / "annotate_script.py"), "kill", str(workspace), str(job.id)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 240
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line or line.startswith("PAINTED"):
                break
        assert line.startswith("PAINTED"), proc.stderr.read() if proc.poll() is not None else "no PAINTED line"
        os.kill(proc.pid, signal.SIGKILL)  # no flush, no clean-up, no atexit
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # restart: what the page would read back
    store = JobStore(workspace)
    array = ann.open_annotations(store.workspace.annotations_path(job.id))
    buffer = ann.AnnotationBuffer(array)
    labels = np.asarray(buffer[:, :, :])
    # stroke 1: class 2 on y slice 20 from (10, 10) to (10, 20); stroke 2: class 1 on x slice 30
    painted_2, painted_1 = np.argwhere(labels == 2), np.argwhere(labels == 1)
    assert len(painted_2) > 20 and set(painted_2[:, 1]) == {20}
    assert labels[10, 20, 10] == 2 and labels[10, 20, 20] == 2
    assert len(painted_1) > 20 and set(painted_1[:, 2]) == {30}
    assert labels[30, 10, 30] == 1 and labels[30, 30, 30] == 1
    summary = store.summary(job.id)
    assert summary["annotated_voxels"] == {"background": len(painted_1), "specimen": len(painted_2)}
    assert summary["status"] == "annotated"
    store.close()
