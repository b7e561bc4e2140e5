"""Benchmark: ml4paleo's method (baseline) against our quick and deep models, in one run.

Run by hand: ``.venv/bin/python tests/benchmarks/bench_segment.py [--shape 256,512,512] [--slab 32]``

The baseline is built from the same library calls as ml4paleo: scikit-image's
``multiscale_basic_features`` (intensity, edges, texture, sigma 1 to 32) per
z-slice and a scikit-learn random forest (50 trees, depth 12, all cores) with
background samples thinned 1 in 500. All three learn from the same 5 painted
z-slices of the sample phantom (labels from its ground truth). Reported:
training time, segmentation throughput (voxels/s), Dice per class against the
ground truth, as ratios to the baseline; plus the live preview's latency on a
512 x 512 slice and peak RSS of segmentation for a volume and one twice as large.

By default all three segment the whole volume. ``--slab N`` segments only N
middle z-slices with the baseline and the deep model, to save time (the quick
model is measured on the same slab and on the whole volume; a slab of 32 or
fewer slices is a single block for it, run by one worker on one core, so its
slab figure understates it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from app.pipeline.metrics import dice_per_class  # noqa: E402

PAINTED = 5


def painted_slices(depth: int) -> list[int]:
    return [int(round(depth * (i + 1) / (PAINTED + 1))) for i in range(PAINTED)]


# -- the baseline (ml4paleo's recipe) ------------------------------------------------------
def baseline_features(plane: np.ndarray) -> np.ndarray:
    from skimage.feature import multiscale_basic_features

    return multiscale_basic_features(
        plane.astype(np.float32), intensity=True, edges=True, texture=True, sigma_min=1, sigma_max=32
    )


def baseline_train(image: np.ndarray, truth: np.ndarray, zs: list[int]):
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    rows, labels = [], []
    for z in zs:
        feats = baseline_features(image[z])
        lab = truth[z].ravel()
        keep = (lab != 1) | (rng.random(lab.size) < 1 / 500)  # background thinned 1 in 500
        rows.append(feats.reshape(-1, feats.shape[-1])[keep])
        labels.append(lab[keep])
    forest = RandomForestClassifier(n_estimators=50, max_depth=12, n_jobs=-1, random_state=0)
    forest.fit(np.concatenate(rows), np.concatenate(labels))
    return forest


def baseline_segment(forest, image: np.ndarray) -> np.ndarray:
    out = np.empty(image.shape, np.uint8)
    for z in range(image.shape[0]):
        feats = baseline_features(image[z])
        out[z] = forest.predict(feats.reshape(-1, feats.shape[-1])).reshape(image.shape[1:])
    return out


# -- ours ------------------------------------------------------------------------------------
def our_setup(folder: Path, image: np.ndarray, truth: np.ndarray, zs: list[int]):
    from app.pipeline.annotations import open_annotations
    from app.pipeline.training_data import read_paint
    from app.pipeline.volume import write_volume

    volume = write_volume(folder / "volume.zarr", image)
    annotations = open_annotations(folder / "annotations.zarr", image.shape, create=True)
    for z in zs:
        annotations[z] = truth[z]
    return volume, read_paint(annotations)


def slab_volume(folder: Path, image: np.ndarray, z0: int, z1: int):
    from app.pipeline.volume import write_volume

    return write_volume(folder / f"slab_{z0}_{z1}.zarr", image[z0:z1])


def rss_child(shape: tuple[int, int, int], model_dir: Path, folder: Path) -> float:
    """Peak RSS (MB) of a fresh process segmenting a phantom of ``shape`` (written here) with a saved quick model,
    then cleaning the result up (pieces under 100 voxels, enclosed holes)."""
    from app.pipeline.sample import make_phantom
    from app.pipeline.volume import write_volume

    image, _ = make_phantom(shape, 5)
    path = folder / f"rss_{shape[0]}.zarr"
    write_volume(path, image)
    del image
    code = f"""
import os, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, {str(ROOT)!r})
from app.pipeline.volume import open_volume
from app.pipeline.quick import QuickModel
from app.pipeline.segment import segment_volume
volume = open_volume({str(path)!r})
model = QuickModel.load({str(model_dir)!r})
out = segment_volume(volume.levels[0], model, {str(folder / f"rss_seg_{shape[0]}.zarr")!r})
from app.pipeline.postprocess import CleanUp, clean_array
clean_array(out, model.classes, [1], CleanUp(min_size=100, fill_holes=True), None, {str(folder / "scratch")!r})
# VmHWM (not ru_maxrss, which keeps the parent's peak across fork + exec)
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]
print(int(hwm) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", default="256,512,512")
    parser.add_argument("--slab", type=int, default=0, help="segment only N middle slices with baseline and deep")
    parser.add_argument("--deep-epochs", type=int, default=4)
    parser.add_argument("--deep-steps", type=int, default=40)
    parser.add_argument("--skip-deep", action="store_true")
    parser.add_argument("--extras-only", action="store_true",
                        help="only the live preview latency and the peak-RSS check (after a quick fit)")
    parser.add_argument("--rss-shape", default="128,512,512", help="volume for the RSS check (and twice its depth)")
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))

    from app.pipeline.quick import QuickParams, normalisation_for, train_quick
    from app.pipeline.sample import make_phantom
    from app.pipeline.segment import segment_volume

    folder = Path(tempfile.mkdtemp(prefix="bench_segment_"))
    print(f"phantom {shape}, {PAINTED} painted z-slices, {os.cpu_count()} cores; work in {folder}", flush=True)
    image, truth = make_phantom(shape, 0)
    zs = painted_slices(shape[0])
    volume, paint = our_setup(folder, image, truth, zs)
    norm = normalisation_for(volume)
    depth = shape[0]
    z0, z1 = (0, depth) if not args.slab else (depth // 2 - args.slab // 2, depth // 2 + (args.slab + 1) // 2)
    slab_truth = truth[z0:z1]
    slab_voxels = slab_truth.size
    results: dict[str, dict] = {}

    if args.extras_only:
        model, _ = train_quick(volume.levels[0], paint, QuickParams(), norm)
        model.save(folder / "quick_model")
        extras(folder, zs, args)
        return

    # baseline
    t = time.perf_counter()
    forest = baseline_train(image, truth, zs)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    labels = baseline_segment(forest, image[z0:z1])
    seg_s = time.perf_counter() - t
    results["baseline (ml4paleo)"] = {"train_s": train_s, "vox_s": slab_voxels / seg_s,
                                      "dice": dice_per_class(slab_truth, labels, [1, 2]), "where": f"z {z0}-{z1}"}
    print("baseline", results["baseline (ml4paleo)"], flush=True)
    del forest, labels

    # quick
    t = time.perf_counter()
    model, metrics = train_quick(volume.levels[0], paint, QuickParams(), norm)
    train_s = time.perf_counter() - t
    model.save(folder / "quick_model")
    slab = slab_volume(folder, image, z0, z1) if args.slab else volume
    t = time.perf_counter()
    out = segment_volume(slab.levels[0], model, folder / "quick_slab.zarr")
    seg_s = time.perf_counter() - t
    results["quick"] = {"train_s": train_s, "vox_s": slab_voxels / seg_s,
                        "dice": dice_per_class(slab_truth, out[...], [1, 2]), "where": f"z {z0}-{z1}",
                        "held_out": metrics["held_out"]}
    print("quick", results["quick"], flush=True)
    if args.slab:
        t = time.perf_counter()
        out = segment_volume(volume.levels[0], model, folder / "quick_full.zarr")
        seg_s = time.perf_counter() - t
        results["quick (whole volume)"] = {"train_s": train_s, "vox_s": image.size / seg_s,
                                           "dice": dice_per_class(truth, out[...], [1, 2]), "where": "all"}
        print("quick whole", results["quick (whole volume)"], flush=True)

    # deep
    if not args.skip_deep:
        from app.pipeline.unet import UNetParams, train_unet

        params = UNetParams(epochs=args.deep_epochs, steps_per_epoch=args.deep_steps, patience=99)
        t = time.perf_counter()
        deep, dmetrics = train_unet(volume.levels[0], paint, params, norm)
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        out = segment_volume(slab.levels[0], deep, folder / "deep_slab.zarr", workers=1)
        seg_s = time.perf_counter() - t
        results["deep"] = {"train_s": train_s, "vox_s": slab_voxels / seg_s,
                           "dice": dice_per_class(slab_truth, out[...], [1, 2]), "where": f"z {z0}-{z1}",
                           "iterations": dmetrics["iterations"]}
        print("deep", results["deep"], flush=True)

    base = results["baseline (ml4paleo)"]
    print()
    print(f"{'method':<22} {'train s':>8} {'Mvox/s':>8} {'x base':>7} {'Dice bg':>8} {'Dice spec':>9}  where")
    for name, r in results.items():
        print(f"{name:<22} {r['train_s']:8.1f} {r['vox_s'] / 1e6:8.3f} {r['vox_s'] / base['vox_s']:7.2f} "
              f"{r['dice'][1]:8.4f} {r['dice'][2]:9.4f}  {r['where']}")
    (folder / "results.json").write_text(json.dumps(results, default=str, indent=2))
    extras(folder, zs, args)


def preview_latency(folder: Path, zs: list[int], engine_class) -> dict[str, float]:
    """Seconds from the end of a stroke (on disk) to the preview of a 512 x 512 slice, as the page runs it.

    The page previews the slice on screen once it has stayed there 150 ms, so a
    slice's features are usually ready before its first stroke; the cold case
    (a stroke on a slice whose features were not computed yet) is reported too.
    """
    from app.pipeline.annotations import open_annotations
    from app.pipeline.sample import make_phantom
    from app.pipeline.volume import open_volume

    shape = open_volume(folder / "volume.zarr").shape
    _, truth = make_phantom(shape, 0)
    annotations = open_annotations(folder / "annotations.zarr", shape)
    engine = engine_class(folder / "volume.zarr", folder / "annotations.zarr")

    def timed(axis: int, index: int) -> float:
        t = time.perf_counter()
        engine.update(axis, index)
        return time.perf_counter() - t

    def stroke(z: int, row: int) -> None:  # a 6-pixel-wide stroke across the slice, labels from the truth
        annotations[z, row : row + 6, :] = truth[z, row : row + 6, :]

    result = {"turning the preview on (paint read, painted slices' features)": timed(0, zs[2])}
    new, cold = (zs[1] + zs[2]) // 2, (zs[2] + zs[3]) // 2
    result["moving to a new slice (its features, while the user looks)"] = timed(0, new)
    times = []
    for row in (200, 240, 280, 320):
        stroke(new, row)
        times.append(timed(0, new))
    result["stroke -> preview, first stroke on the slice shown"] = times[0]
    result["stroke -> preview, next strokes (median)"] = float(np.median(times[1:]))
    stroke(cold, 256)
    result["stroke -> preview, slice not previewed before (cold)"] = timed(0, cold)
    return result


def extras(folder: Path, zs: list[int], args) -> None:
    """Live preview latency on a 512 x 512 slice; peak RSS for a volume and one twice as deep."""
    from app.gui.live_preview import PreviewEngine

    preview = preview_latency(folder, zs, PreviewEngine)

    # peak RSS: a volume and one twice as deep
    rss_shape = tuple(int(s) for s in args.rss_shape.split(","))
    double = (rss_shape[0] * 2, rss_shape[1], rss_shape[2])
    rss = {str(rss_shape): rss_child(rss_shape, folder / "quick_model", folder),
           str(double): rss_child(double, folder / "quick_model", folder)}

    print()
    for k, v in preview.items():
        print(f"live preview, 512 x 512 slice, {k}: {v:.3f} s" + ("  (target < 0.5 s)" if "stroke" in k else ""))
    for k, v in rss.items():
        print(f"peak RSS segmenting and cleaning up {k}: {v:.0f} MB")
    (folder / "extras.json").write_text(json.dumps({"preview": preview, "rss": rss}, default=str, indent=2))
    print(f"\nmax RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
