"""ProgressContext and the workspace paths."""

import threading

import pytest

from app.core.progress import Cancelled, ProgressContext
from app.core.workspace import Workspace, default_workspace


def test_report_sub_and_tee():
    seen, teed = [], []
    ctx = ProgressContext(lambda f, m: seen.append((round(f, 3), m)))
    ctx.report(0.5, "half")
    ctx.sub(0.5, 1.0).report(0.5, "three quarters")
    ctx.tee(lambda f, m: teed.append(round(f, 3))).report(2.0)  # clamped
    assert seen == [(0.5, "half"), (0.75, "three quarters"), (1.0, "")]
    assert teed == [1.0]


def test_cancel_from_another_thread_reaches_children():
    ctx = ProgressContext()
    child = ctx.sub(0, 0.5).tee(lambda f, m: None)
    child.check_cancelled()
    threading.Thread(target=ctx.cancel).start()
    ctx._cancel.wait(5)
    with pytest.raises(Cancelled):
        child.check_cancelled()


def test_workspace_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATA_HOME", str(tmp_path / "home"))
    assert default_workspace() == tmp_path / "home"
    ws = Workspace.open()
    assert ws.root == (tmp_path / "home").resolve() and (ws.root / "jobs").is_dir()
    assert ws.volume_path(3) == ws.root / "jobs" / "3" / "volume.zarr"
