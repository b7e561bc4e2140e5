"""Benchmark: opening a 1 GiB uint16 job for annotation, against napari alone (run by hand).

    .venv/bin/python tests/benchmarks/bench_annotate.py [--shape Z Y X] [--keep DIR]

Needs a display (run under ``xvfb-run -a -s "-screen 0 1600x1000x24"``).
Each side runs in its own subprocess, with napari's window already up:

- napari alone (the baseline): read the TIFF stack with tifffile, ``viewer.add_image``,
  render the first slice;
- Strata: the main window as ``main.py`` opens it (the napari viewer made while the
  window is idle), the job selected in the list, then the click on the Annotate tab:
  multiscale levels read lazily, the first slice rendered from a coarse level.

A third process measures a floor: napari's empty window with a tiny Labels layer,
the least any painting in napari needs (with Strata's PySide6 work-arounds).

Reported: seconds to the first rendered slice and resident memory afterwards,
as medians of --runs runs, and ratios; memory before opening is napari's empty
window on one side and Strata's whole window (napari view made, job selected) on the other; then the time from the end of a stroke
(the mouse release) to the stroke being on disk, over --strokes strokes in the three planes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def rss_gib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# -- data -------------------------------------------------------------------------
def make_data(folder: Path, shape: tuple[int, int, int]) -> int:
    """A TIFF stack of a noisy phantom, and a job converted from it (slab by slab)."""
    import tifffile

    from app.core.statuses import JobStatus as S
    from app.pipeline.volume import create_volume, downsample2
    from app.store.jobs import JobStore

    stack = folder / "stack"
    stack.mkdir(parents=True)
    store = JobStore(folder / "ws")
    job = store.create_job("bench", spacing=(1.0, 1.0, 1.0), unit="um")
    levels = create_volume(store.workspace.volume_path(job.id), shape, np.uint16, (1.0, 1.0, 1.0), "um")
    rng = np.random.default_rng(0)
    z, y, x = shape
    yy, xx = np.mgrid[0:y, 0:x]
    slab = 64
    for z0 in range(0, z, slab):
        n = min(slab, z - z0)
        block = np.empty((n, y, x), np.uint16)
        for i in range(n):
            r = 0.3 * min(y, x) * (1 + 0.3 * np.sin((z0 + i) / 40))
            disk = ((yy - y / 2) ** 2 + (xx - x / 2) ** 2) < r**2
            block[i] = (rng.normal(900, 60, (y, x)) + disk * 1800).clip(0, 65535)
            tifffile.imwrite(stack / f"slice_{z0 + i:05d}.tif", block[i])
        level = block
        for index, array in enumerate(levels):
            if index:
                level = downsample2(level)
            f = 2**index
            array[z0 // f : z0 // f + level.shape[0]] = level
    for status in (S.UPLOADING, S.UPLOADED, S.CONVERTING, S.CONVERTED):
        store.transition(job.id, status)
    store.update(job.id, shape=list(shape), dtype="uint16")
    store.close()
    return job.id


# -- the sides (each in its own process) ----------------------------------------------------
def _napari_window():
    """napari's own window, up and drawn once: (QApplication, napari.Viewer)."""
    import napari
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1300, 800)
    app.processEvents()
    viewer.screenshot(canvas_only=True)
    return app, viewer


def side_napari(folder: Path) -> dict:
    import tifffile

    from app.gui.qt_workarounds import guard_none_refcount

    guard_none_refcount()  # the same work-around as the app's (PySide6 6.12 on Python 3.11)
    app, viewer = _napari_window()
    before = rss_gib()
    files = sorted((folder / "stack").glob("*.tif"))
    start = time.perf_counter()
    data = tifffile.imread(files)
    viewer.add_image(data, name="stack")
    viewer.screenshot(canvas_only=True)
    seconds = time.perf_counter() - start
    app.processEvents()
    return {"first_slice_s": seconds, "rss_gib": rss_gib(), "peak_gib": peak_gib(), "rss_before_gib": before}


def side_floor() -> dict:
    """The least a napari-based painter needs: napari's empty window and a tiny Labels layer.

    With the same PySide6 work-arounds as Strata's, so that this is a floor for
    Strata too (a Labels layer brings pandas and scipy.linalg into the process).
    """
    from PySide6 import QtCore  # noqa: F401 - the work-arounds below need PySide6 loaded

    from app.gui.qt_workarounds import apply_qt_workarounds

    apply_qt_workarounds()
    app, viewer = _napari_window()
    viewer.add_labels(np.zeros((4, 64, 64), np.uint8))
    viewer.screenshot(canvas_only=True)
    app.processEvents()
    return {"rss_gib": rss_gib()}


def _spin(app, seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        app.processEvents()
        time.sleep(0.005)


def side_strata(folder: Path, job_id: int, strokes: int) -> dict:
    from PySide6.QtCore import QThreadPool

    from app.gui.main import make_application
    from app.gui.main_window import MainWindow
    from app.gui.pages.base import AppContext
    from app.gui.worker import JobScheduler
    from app.store.jobs import JobStore

    app = make_application()
    store = JobStore(folder / "ws")
    annotations = store.workspace.annotations_path(job_id)
    if annotations.exists():  # every run paints the same strokes on an unpainted job
        shutil.rmtree(annotations)
        from app.stages.annotation import record_counts

        record_counts(store, job_id, {})
    window = MainWindow(AppContext(store, JobScheduler(store)))
    window.show()
    window.warm_up_pages(delay_ms=0)  # what main.py does after start-up
    page = window.pages["Annotate"]
    while page.view is None:
        _spin(app, 0.05)
    window.select_job(job_id)  # the job is selected in the list; the Overview tab shows it
    QThreadPool.globalInstance().waitForDone(10000)
    _spin(app, 1.0)
    before = rss_gib()
    start = time.perf_counter()
    window.show_page("Annotate")  # the click on the Annotate tab
    page.view.screenshot()
    seconds = time.perf_counter() - start  # first slice on screen (a coarse plane, enlarged)
    first_level = page.view.shown_level
    page.view.wait_full_resolution()
    page.view.screenshot()
    full_seconds = time.perf_counter() - start  # the full-resolution slice on screen
    _spin(app, 1.0)  # the page settles: freed memory is handed back 0.5 s after the plane is drawn
    opened_rss = rss_gib()
    heavy = sorted(m for m in ("torch", "sklearn", "vtkmodules") if m in sys.modules)

    # stroke latency: from the release (end of the drag) to the stroke on disk
    committed: list[float] = []
    page.stroke_committed.connect(lambda axis, index: committed.append(time.perf_counter()))
    layer = page.view.labels_layer
    page.set_brush_size(12)
    shape = page.volume.shape
    latencies = []
    for n in range(strokes):
        axis = n % 3
        index = shape[axis] // 2 + 7 * (n // 3)
        page.go_to(axis, index)
        page.view.wait_full_resolution()  # the user looks at the slice before painting
        point = [s // 2 for s in shape]
        point[axis] = index
        page.select_class(1 + n % 2)
        shown = [a for a in range(3) if a != axis]
        commits_before = len(committed)
        with layer.block_history():  # exactly what napari's draw() does between press and release
            for step in range(12):
                p = list(point)
                p[shown[0]] += 3 * step - 30 + n % 20
                p[shown[1]] += 2 * step - 20
                layer.paint(p, 1 + n % 2, refresh=False)
            released = time.perf_counter()
        if len(committed) > commits_before:
            latencies.append(committed[-1] - released)
        _spin(app, 0.02)
    window._closing = True
    page.shutdown()
    return {
        "first_slice_s": seconds, "full_slice_s": full_seconds, "first_level": first_level, "rss_gib": opened_rss,
        "peak_gib": peak_gib(), "rss_before_gib": before, "heavy_modules": heavy,
        "stroke_ms_median": 1000 * statistics.median(latencies), "stroke_ms_max": 1000 * max(latencies),
        "stroke_ms_p95": 1000 * sorted(latencies)[int(0.95 * (len(latencies) - 1))], "strokes": len(latencies),
    }


def run_side(args: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise SystemExit(f"{args[0]} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", nargs=3, type=int, default=(512, 1024, 1024), help="z y x (default: 1 GiB)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--strokes", type=int, default=60)
    parser.add_argument("--keep", help="folder to keep the data in (reused when present)")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--job", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "napari":
        print(json.dumps(side_napari(Path(args.folder))))
        return
    if args.side == "floor":
        print(json.dumps(side_floor()))
        return
    if args.side == "strata":
        print(json.dumps(side_strata(Path(args.folder), args.job, args.strokes)))
        return

    shape = tuple(args.shape)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_annotate_"))
    marker = folder / "job_id"
    if marker.exists():
        job_id = int(marker.read_text())
    else:
        print(f"writing a {np.prod(shape) * 2 / 2**30:.2f} GiB uint16 volume {shape} as TIFFs and as a job ...", flush=True)
        job_id = make_data(folder, shape)
        marker.write_text(str(job_id))
    subprocess.run(["cat", *map(str, sorted((folder / "stack").glob("*.tif")))], stdout=subprocess.DEVNULL)  # warm the page cache
    try:
        napari_runs, strata_runs, floor_runs = [], [], []
        for run in range(args.runs):
            napari_runs.append(run_side(["--side", "napari", "--folder", str(folder)]))
            floor_runs.append(run_side(["--side", "floor"]))
            strata_runs.append(run_side(["--side", "strata", "--folder", str(folder), "--job", str(job_id),
                                         "--strokes", str(args.strokes)]))
            base, ours = napari_runs[-1]["first_slice_s"], strata_runs[-1]["first_slice_s"]
            print(f"run {run + 1}: napari {base:.2f} s, Strata {ours:.2f} s ({base / ours:.1f}x); "
                  f"RSS {napari_runs[-1]['rss_gib']:.2f} / {strata_runs[-1]['rss_gib']:.2f} GiB", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    rows = [
        ("resident memory before (GiB)", med(napari_runs, "rss_before_gib"), med(strata_runs, "rss_before_gib")),
        ("time to first slice (s)", med(napari_runs, "first_slice_s"), med(strata_runs, "first_slice_s")),
        ("time to full-res slice (s)", med(napari_runs, "first_slice_s"), med(strata_runs, "full_slice_s")),
        ("resident memory after (GiB)", med(napari_runs, "rss_gib"), med(strata_runs, "rss_gib")),
        ("peak resident memory (GiB)", med(napari_runs, "peak_gib"), med(strata_runs, "peak_gib")),
        ("memory added by opening (GiB)",
         statistics.median(r["rss_gib"] - r["rss_before_gib"] for r in napari_runs),
         statistics.median(r["rss_gib"] - r["rss_before_gib"] for r in strata_runs)),
    ]
    print(f"\nvolume {shape} uint16 = {np.prod(shape) * 2 / 2**30:.2f} GiB, medians of {args.runs} runs; "
          f"Strata's first slice from pyramid level {strata_runs[-1]['first_level']}, then level 0")
    print(f"{'metric':<30} {'napari alone':>13} {'Strata':>9} {'napari/Strata':>14}")
    for name, base, ours in rows:
        print(f"{name:<30} {base:>13.3f} {ours:>9.3f} {base / ours:>13.1f}x")
    stroke = med(strata_runs, "stroke_ms_median")
    p95 = med(strata_runs, "stroke_ms_p95")
    worst = max(r["stroke_ms_max"] for r in strata_runs)
    count = sum(r["strokes"] for r in strata_runs)
    print(f"{'stroke end -> on disk (ms)':<30} {'':>13} {stroke:>9.1f}   "
          f"(target < 100; p95 {p95:.1f}, worst {worst:.1f} of {count} strokes)")
    quarter, floor = med(napari_runs, "rss_gib") / 4, med(floor_runs, "rss_gib")
    print(f"a quarter of napari alone is {quarter:.3f} GiB; napari's empty window with a 4 x 64 x 64 Labels layer "
          f"(with Strata's PySide6 work-arounds) already takes {floor:.3f} GiB, Strata's whole window with the job "
          f"open {med(strata_runs, 'rss_gib'):.3f} GiB")
    print(f"heavy modules in Strata's process: {strata_runs[-1]['heavy_modules'] or 'none of torch, sklearn, vtk'}")


if __name__ == "__main__":
    main()
