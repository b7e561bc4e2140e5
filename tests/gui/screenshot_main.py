"""Make docs/screenshot-main.png: the main window with the sample job converted.

Run by hand under Xvfb::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python tests/gui/screenshot_main.py [OUT.png [ERROR.png]]

It fills a throw-away workspace with the sample job, the real shell scan of
../shared/data (when present) and a job whose folder is empty (to show an
error), converts them with the app's own stages, selects the sample and grabs
the window.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main(out: Path, error_out: Path | None = None) -> int:
    from PySide6.QtWidgets import QApplication

    from app.gui.main import make_application
    from app.gui.main_window import MainWindow
    from app.gui.pages.base import AppContext
    from app.gui.worker import JobScheduler
    from app.stages.ingest import create_sample_job
    from app.store.jobs import JobStore

    app = make_application()
    workspace = Path(tempfile.mkdtemp(prefix="strata-shot-"))
    store = JobStore(workspace)
    empty = workspace / "incoming" / "scan_0419"
    empty.mkdir(parents=True)
    store.create_job("scan_0419", [str(empty)])
    shell = ROOT.parent / "shared" / "data" / "microct" / "shell_225x128x128.tif"
    if shell.exists():
        store.create_job("Shell (micro-CT)", [str(shell)])
    sample = create_sample_job(store)
    scheduler = JobScheduler(store)
    window = MainWindow(AppContext(store, scheduler))
    window.resize(1580, 940)
    window.show()
    scheduler.start_queued()
    deadline = time.monotonic() + 300
    while scheduler.running_jobs() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.05)
    window.refresh_jobs()
    window.select_job(sample.id)
    window.show_page("Overview")
    overview = window.pages["Overview"]
    deadline = time.monotonic() + 60
    while not overview.has_preview() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.05)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    ok = window.grab().save(str(out))
    print(f"{out}: {'saved' if ok else 'NOT saved'}; statuses:",
          [(j.name, j.status) for j in store.list_jobs()])
    if error_out is not None:  # the job that failed, for a look at the error view
        window.select_job(store.find("scan_0419").id)
        for _ in range(10):
            app.processEvents()
            time.sleep(0.02)
        window.grab().save(str(error_out))
    window.close()
    QApplication.processEvents()
    return 0 if ok else 1


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshot-main.png"
    sys.exit(main(target, Path(sys.argv[2]) if len(sys.argv) > 2 else None))
