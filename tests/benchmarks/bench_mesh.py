"""Benchmark: our meshing against ml4paleo's pipeline and scikit-image, time to files on disk.

Run by hand: ``.venv/bin/python tests/benchmarks/bench_mesh.py [--shape 256 512 512]``.

On the sample phantom's labels (app.pipeline.sample.make_phantom; 1 background,
2 specimen) stored as a zarr segmentation (chunks 64^3), each method runs in
its own subprocess, reading the labels and writing a combined STL and OBJ:

* ``ml4paleo``: its v1 web app's chunked mesher rebuilt from the same library
  calls: per 512-cube chunk, ``zmesh.Mesher((1, 1, 1)).mesh(close=False)``,
  ``get_mesh`` with its simplification (factor 50, max error 10), vertices
  reordered to x, y, z and offset, an ASCII STL per chunk written
  triangle by triangle, then the chunk files read back and combined into one
  binary STL and one OBJ written vertex by vertex. It gets the specimen as
  its only label (background 0), as its segmentations have it.
* ``skimage``: ``skimage.measure.marching_cubes`` of each non-background class
  mask (padded, so closed), files written with our numpy writers.
* ``ours``: :func:`app.pipeline.mesh.mesh_labels` (blocks, smoothing,
  decimation to no more triangles than ml4paleo's), then the same two files.

Reported per method: seconds to files on disk, triangles, boundary and
non-manifold edges of the combined STL (vertices welded by position), peak
RSS. Needs ``zmesh`` (a benchmark-only dependency: ``pip install zmesh``).
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

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SPACING = (1.0, 1.0, 1.0)
ML4PALEO_CHUNK = 512


# -- helpers run in the children -------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _check_stl(path: Path) -> dict:
    from app.pipeline.mesh import edge_counts
    from app.pipeline.mesh_io import read_stl

    _, faces = read_stl(path)
    counts = edge_counts(faces)
    return {"triangles": int(len(faces)), "boundary_edges": counts["boundary_edges"],
            "nonmanifold_edges": counts["nonmanifold_edges"]}


def run_ml4paleo(labels_path: Path, out: Path) -> None:
    import zarr
    from zmesh import Mesher

    labels = zarr.open_array(str(labels_path), mode="r")
    shape = labels.shape
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("_*.stl"):  # chunk files of an earlier run
        stale.unlink()
    ids: set[int] = set()
    c = ML4PALEO_CHUNK
    for z0 in range(0, shape[0], c):
        for y0 in range(0, shape[1], c):
            for x0 in range(0, shape[2], c):
                block = (np.asarray(labels[z0:z0 + c, y0:y0 + c, x0:x0 + c]) == 2).astype(np.uint8)
                if block.max() == 0:
                    continue
                mesher = Mesher((1, 1, 1))
                mesher.mesh(block, close=False)
                meshes = {}
                for obj_id in mesher.ids():
                    ids.add(obj_id)
                    meshes[obj_id] = mesher.get_mesh(
                        obj_id, normals=False, simplification_factor=50, max_simplification_error=10
                    )
                    mesher.erase(obj_id)
                mesher.clear()
                for obj_id, mesh in meshes.items():
                    # vertices come out (z, y, x): reverse to (x, y, z), flip winding, offset the chunk
                    vertices = mesh.vertices[:, ::-1] + np.array([x0, y0, z0], np.float32)
                    faces = mesh.faces[:, ::-1]
                    # ASCII STL written one triangle at a time, as a Python loop does
                    with open(out / f"_{obj_id}_{z0}_{y0}_{x0}.stl", "w") as handle:
                        handle.write("solid chunk\n")
                        for face in faces:
                            handle.write("facet normal 0 0 0\n outer loop\n")
                            for p in vertices[face]:
                                handle.write(f"  vertex {p[0]:e} {p[1]:e} {p[2]:e}\n")
                            handle.write(" endloop\nendfacet\n")
                        handle.write("endsolid chunk\n")
    from app.pipeline.mesh_io import write_stl

    for obj_id in ids:
        triangles = []
        for path in sorted(out.glob(f"_{obj_id}_*.stl")):
            with open(path) as handle:
                corners = [[float(v) for v in line.split()[1:4]] for line in handle if line.lstrip().startswith("vertex")]
            triangles.append(np.asarray(corners, np.float32).reshape(-1, 3, 3))
        combined = np.concatenate(triangles)
        flat = combined.reshape(-1, 3)
        write_stl(out / f"{obj_id}.combined.stl", [("x", flat, np.arange(len(flat)).reshape(-1, 3))])
        with open(out / f"{obj_id}.combined.obj", "w") as handle:
            for tri in combined:
                for p in tri:
                    handle.write(f"v {p[0]} {p[1]} {p[2]}\n")
            for i in range(len(combined)):
                handle.write(f"f {3 * i + 1} {3 * i + 2} {3 * i + 3}\n")


def run_skimage(labels_path: Path, out: Path) -> None:
    import zarr
    from skimage.measure import marching_cubes

    from app.pipeline.mesh_io import write_obj, write_stl

    labels = np.asarray(zarr.open_array(str(labels_path), mode="r")[...])
    out.mkdir(parents=True, exist_ok=True)
    for value in (2,):
        mask = np.pad(labels == value, 1).astype(np.uint8)
        verts, faces, _, _ = marching_cubes(mask, 0.5, spacing=SPACING, allow_degenerate=False)
        points = (verts[:, ::-1] - 1).astype(np.float32)
        parts = [(f"class{value}", points, faces)]
        write_stl(out / f"{value}.combined.stl", parts)
        write_obj(out / f"{value}.combined.obj", parts)


def run_ours(labels_path: Path, out: Path, smooth: float, decimate: float) -> None:
    import zarr

    from app.pipeline.mesh import ClassSpec, mesh_labels
    from app.pipeline.mesh_io import write_obj, write_stl

    labels = zarr.open_array(str(labels_path), mode="r")
    out.mkdir(parents=True, exist_ok=True)
    result = mesh_labels(labels, SPACING, [ClassSpec(2, "specimen")], smooth, decimate)
    for surface in result.surfaces:
        parts = [(surface.name, surface.points, surface.faces)]
        write_stl(out / f"{surface.value}.combined.stl", parts)
        write_obj(out / f"{surface.value}.combined.obj", parts)


def child(args: argparse.Namespace) -> None:
    out = Path(args.out)
    start = time.perf_counter()
    if args.run == "ml4paleo":
        run_ml4paleo(Path(args.labels), out)
    elif args.run == "skimage":
        run_skimage(Path(args.labels), out)
    else:
        run_ours(Path(args.labels), out, args.smooth, args.decimate)
    seconds = time.perf_counter() - start
    rss = _peak_rss_mb()
    checks = [_check_stl(p) for p in sorted(out.glob("*.combined.stl"))]
    result = {
        "seconds": seconds,
        "peak_rss_mb": rss,
        "triangles": sum(c["triangles"] for c in checks),
        "boundary_edges": sum(c["boundary_edges"] for c in checks),
        "nonmanifold_edges": sum(c["nonmanifold_edges"] for c in checks),
    }
    print("RESULT " + json.dumps(result))


# -- the parent --------------------------------------------------------------------


def prepare(shape: tuple[int, int, int], seed: int, folder: Path) -> Path:
    """The phantom's labels as a zarr segmentation (cached)."""
    import zarr

    path = folder / f"phantom_{'x'.join(map(str, shape))}_{seed}.zarr"
    if not (path / "zarr.json").exists():
        from app.pipeline.sample import make_phantom

        print(f"making the phantom {shape} ...", flush=True)
        _, labels = make_phantom(shape, seed)
        array = zarr.create_array(str(path), shape=labels.shape, dtype=np.uint8, chunks=(64, 64, 64),
                                  fill_value=0, overwrite=True)
        array[...] = labels
    return path


def run_child(method: str, labels: Path, out: Path, **kw) -> dict:
    cmd = [sys.executable, __file__, "--run", method, "--labels", str(labels), "--out", str(out)]
    for key, value in kw.items():
        cmd += [f"--{key}", str(value)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{method} failed:\n{proc.stdout}\n{proc.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[256, 512, 512])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "strata_bench_mesh"))
    parser.add_argument("--smooth", type=float, default=0.5)
    parser.add_argument("--decimate", type=float, default=None,
                        help="our fraction of triangles (default: to stay at or under ml4paleo's count)")
    parser.add_argument("--run", choices=["ml4paleo", "skimage", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--labels", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        child(args)
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    labels = prepare(tuple(args.shape), args.seed, work)
    results = {}
    for method in ("ml4paleo", "skimage"):
        print(f"running {method} ...", flush=True)
        results[method] = run_child(method, labels, work / f"out_{method}")
    decimate = args.decimate
    if decimate is None:
        # marching cubes at full size has about as many triangles as our unreduced surface
        # (our estimate of the kept fraction runs up to ~10 % low: aim 10 % under)
        decimate = min(1.0, 0.9 * results["ml4paleo"]["triangles"] / results["skimage"]["triangles"])
    print(f"running ours (smooth {args.smooth}, keep {decimate:.4f} of the triangles) ...", flush=True)
    results["ours"] = run_child("ours", labels, work / "out_ours", smooth=args.smooth, decimate=decimate)

    base = results["ml4paleo"]
    print(f"\nphantom {tuple(args.shape)} labels, seed {args.seed}; combined STL + OBJ on disk")
    header = f"{'method':<10} {'seconds':>8} {'speed-up':>9} {'triangles':>10} {'tri ratio':>9} {'boundary':>9} {'non-manif':>9} {'peak RSS MB':>11}"
    print(header)
    print("-" * len(header))
    for method, r in results.items():
        print(
            f"{method:<10} {r['seconds']:8.2f} {base['seconds'] / r['seconds']:8.2f}x {r['triangles']:10d} "
            f"{r['triangles'] / base['triangles']:9.3f} {r['boundary_edges']:9d} {r['nonmanifold_edges']:9d} "
            f"{r['peak_rss_mb']:11.0f}"
        )
    print("\nspeed-up and tri ratio are relative to ml4paleo's pipeline (target: >= 4x at <= 1.0).")


if __name__ == "__main__":
    main()
