"""A small driver that opens the Annotate page in its own process (not collected by pytest).

    annotate_script.py kill WORKSPACE JOB_ID   paint strokes, print PAINTED ..., then wait to be killed
    annotate_script.py large WORKSPACE         a 2048 x 2048 x 1024 uint16 job: open, paint 3 planes, print memory
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np


def make_page(workspace):
    from PySide6.QtWidgets import QApplication

    from app.gui.pages.annotate import AnnotatePage
    from app.gui.pages.base import AppContext
    from app.gui.worker import JobScheduler
    from app.store.jobs import JobStore

    app = QApplication.instance() or QApplication([])
    store = JobStore(workspace)
    page = AnnotatePage(AppContext(store, JobScheduler(store)))
    page.resize(1200, 800)
    page.show()
    app.processEvents()
    return app, store, page


def stroke(page, coords, value):
    layer = page.view.labels_layer
    page.select_class(value)
    with layer.block_history():
        for coord in coords:
            layer.paint(coord, value)


def kill_mode(workspace: str, job_id: int) -> None:
    app, store, page = make_page(workspace)
    page.set_job(job_id)
    page.set_brush_size(6)
    page.go_to(1, 20)
    stroke(page, [[10, 20, 10], [10, 20, 20]], 2)
    page.go_to(2, 30)
    stroke(page, [[30, 10, 30], [30, 30, 30]], 1)
    app.processEvents()
    print("PAINTED", flush=True)
    while True:  # the test kills us here, right after the strokes
        app.processEvents()
        time.sleep(0.01)


def rss_gib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def large_mode(workspace: str) -> None:
    from app.core.statuses import JobStatus as S
    from app.pipeline.annotations import stored_chunks
    from app.pipeline.volume import create_volume

    shape = (1024, 2048, 2048)
    app, store, page = make_page(workspace)
    job = store.create_job("large")
    levels = create_volume(store.workspace.volume_path(job.id), shape, np.uint16, (1.0, 1.0, 1.0), "um")
    rng = np.random.default_rng(0)
    for level in levels:  # a little real data where we look; the rest is never written
        level[:64, :64, :64] = rng.integers(0, 4000, (64, 64, 64), dtype=np.uint16)[: level.shape[0], : level.shape[1], : level.shape[2]]
    for status in (S.UPLOADING, S.UPLOADED, S.CONVERTING, S.CONVERTED):
        store.transition(job.id, status)
    start = time.perf_counter()
    page.set_job(job.id)
    page.view.screenshot()
    opened = time.perf_counter() - start
    print(f"opened_rss_gib={rss_gib():.3f}", flush=True)
    page.set_brush_size(40)
    for axis, index in ((0, 512), (1, 1000), (2, 1500)):
        page.go_to(axis, index)
        page.view.screenshot()
        point = [512, 1024, 1024]
        point[axis] = index
        other = list(point)
        other[(axis + 1) % 3] += 300
        print(f"plane_{axis}_shown_rss_gib={rss_gib():.3f}", flush=True)
        stroke(page, [point, other], 2 if axis else 1)
        page.view.screenshot()
        print(f"plane_{axis}_painted_rss_gib={rss_gib():.3f}", flush=True)
    page.set_3d(True)
    page.view.screenshot()
    print(f"3d_rss_gib={rss_gib():.3f}", flush=True)
    page.set_3d(False)
    app.processEvents()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    chunks = len(stored_chunks(page.buffer.array))
    print(f"open_s={opened:.2f} painted_chunks={chunks} rss_gib={rss_gib():.3f} peak_rss_gib={peak:.3f} "
          f"status={store.get(job.id).status} commit_s={page.last_commit_seconds:.4f}", flush=True)
    page.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "kill":
        kill_mode(sys.argv[2], int(sys.argv[3]))
    else:
        large_mode(sys.argv[2])
