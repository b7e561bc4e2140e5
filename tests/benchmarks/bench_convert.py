"""Conversion benchmark (run by hand): ``.venv/bin/python tests/benchmarks/bench_convert.py``.

Generates once into /tmp a folder of 512 TIFF slices of 1024 x 1024 uint16
(1 GiB; smooth structure plus noise) and a folder twice as deep (links to the
same files), then measures, each variant in its own subprocess (MB/s of
uncompressed voxels and the child's peak RSS):

  (a) reading all slices with tifffile alone, with threads (the read limit);
  (b) ml4paleo's web-app conversion rebuilt from the same library calls: slabs of
      64 slices into one zarr array with chunks 512 x 512 x 64 and default Blosc,
      one worker process per core but one;
  (c) ours (app.pipeline.convert), including the pyramid;
  (c2) ours on the volume twice as deep (peak RSS must stay the same);
  (d) ours with zarr-python's writes instead of our parallel chunk writer.

Options: ``--repeat N`` (median of N runs, default 1), ``--data DIR``.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DEPTH, SIDE = 512, 1024
SLAB = 64


def generate(folder: Path, depth: int = DEPTH, side: int = SIDE) -> Path:
    """Slices with smooth structure (a shell in a matrix, slowly changing with z) plus noise."""
    import numpy as np
    import tifffile

    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    yy -= side / 2
    xx -= side / 2
    radius = np.sqrt(yy**2 + xx**2)
    texture = (np.sin(yy / 37.0) * np.cos(xx / 53.0) * 900).astype(np.float32)
    for z in range(depth):
        shell_r = side * (0.25 + 0.1 * np.sin(z / depth * np.pi))
        image = np.where(radius < side * 0.45, 12000.0, 2000.0).astype(np.float32)
        image += texture * np.float32(np.cos(z / 41.0))
        image += 14000.0 * np.exp(-((radius - shell_r) ** 2) / (2 * 6.0**2))
        image += rng.normal(0, 250, size=(side, side)).astype(np.float32)
        tifffile.imwrite(folder / f"slice_{z:04d}.tif", np.clip(image, 0, 65535).astype(np.uint16))
    done.touch()
    return folder


def doubled(folder: Path, target: Path) -> Path:
    """A folder twice as deep: links to the same slices, twice over."""
    if (target / ".complete").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in folder.iterdir() if p.suffix == ".tif")
    for index in range(2 * len(files)):
        link = target / f"slice_{index:04d}.tif"
        if not link.exists():
            link.symlink_to(files[index % len(files)])
    (target / ".complete").touch()
    return target


# -- variants (run in a child process) ----------------------------------------------
def variant_read(folder: Path, out: Path) -> int:
    """(a) tifffile alone, with threads."""
    from concurrent.futures import ThreadPoolExecutor

    import tifffile

    files = sorted(folder.glob("*.tif"))
    with ThreadPoolExecutor(8) as pool:
        return sum(a.nbytes for a in pool.map(lambda f: tifffile.imread(f, maxworkers=1), files))


def _ml4paleo_slab(args) -> int:
    """One worker's job: read 64 slices one by one, write them as a slab of the (x, y, z) array."""
    import numpy as np
    import tifffile
    import zarr

    files, z0, path = args
    array = zarr.open_array(path, mode="r+")
    slab = np.stack([tifffile.imread(f) for f in files])  # (z, y, x)
    array[:, :, z0 : z0 + len(files)] = slab.transpose(2, 1, 0)
    return slab.nbytes


def variant_ml4paleo(folder: Path, out: Path) -> int:
    """(b) ml4paleo's web-app conversion: 64-slice slabs, chunks 512 x 512 x 64, default Blosc."""
    from concurrent.futures import ProcessPoolExecutor

    import tifffile
    import zarr
    from numcodecs import Blosc

    files = sorted(folder.glob("*.tif"))
    first = tifffile.imread(files[0])
    path = str(out / "ml4paleo.zarr")
    zarr.create_array(
        path, shape=(first.shape[1], first.shape[0], len(files)), chunks=(512, 512, SLAB), dtype=first.dtype,
        zarr_format=2, compressors=Blosc(), overwrite=True,
    )
    jobs = [(files[z : z + SLAB], z, path) for z in range(0, len(files), SLAB)]
    workers = max(1, (os.cpu_count() or 2) - 1)
    with ProcessPoolExecutor(workers) as pool:
        return sum(pool.map(_ml4paleo_slab, jobs))


def variant_ours(folder: Path, out: Path) -> int:
    """(c) ours, including the pyramid."""
    from app.pipeline.convert import convert_source
    from app.pipeline.sources import discover

    source = discover([folder])
    volume = convert_source(source, out / "volume.zarr", (1.0, 1.0, 1.0), "um")
    return int(volume.levels[0].nbytes)


def variant_ours_zarr(folder: Path, out: Path) -> int:
    """(d) ours, but writing through zarr-python instead of our parallel chunk writer."""
    from app.pipeline.convert import convert_source
    from app.pipeline.sources import discover

    volume = convert_source(discover([folder]), out / "volume.zarr", (1.0, 1.0, 1.0), "um", writer="zarr")
    return int(volume.levels[0].nbytes)


VARIANTS = {"read": variant_read, "ml4paleo": variant_ml4paleo, "ours": variant_ours, "ours_zarr": variant_ours_zarr}


def child(name: str, folder: Path, out: Path) -> None:
    started = time.perf_counter()
    nbytes = VARIANTS[name](folder, out)
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # worker processes, if any
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    print(json.dumps({"seconds": seconds, "bytes": nbytes, "rss_kib": max(own.ru_maxrss, children.ru_maxrss),
                      "cpu": cpu}))


def measure(name: str, folder: Path, scratch: Path) -> dict:
    out = scratch / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, __file__, "--child", name, "--folder", str(folder), "--out", str(out)],
        capture_output=True, text=True, check=True,
    )
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/tmp/strata_bench"))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child")
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder, args.out)
        return
    print("generating (once) ...", file=sys.stderr)
    single = generate(args.data / f"slices_{DEPTH}")
    double = doubled(single, args.data / f"slices_{2 * DEPTH}")
    scratch = args.data / "out"
    measure("read", single, scratch)  # warm the page cache
    rows = []
    for label, name, folder in (
        ("(a) tifffile read, threads", "read", single),
        ("(b) ml4paleo web-app conversion", "ml4paleo", single),
        ("(c) ours, with pyramid", "ours", single),
        ("(c2) ours, volume twice as deep", "ours", double),
        ("(d) ours, zarr-python writes", "ours_zarr", single),
    ):
        runs = [measure(name, folder, scratch) for _ in range(args.repeat)]
        seconds = statistics.median(r["seconds"] for r in runs)
        nbytes = runs[0]["bytes"]
        rss = max(r["rss_kib"] for r in runs) / 1024
        cpu = statistics.median(r["cpu"] for r in runs)
        rows.append((label, nbytes, seconds, nbytes / seconds / 1e6, rss, cpu / (nbytes / 2**30)))
        print(f"{label}: {seconds:.2f} s", file=sys.stderr)
    base = {r[0][:3]: r[3] for r in rows}
    print(f"\n{'variant':<36} {'GiB':>5} {'s':>7} {'MB/s':>7} {'peak RSS MiB':>13} {'CPU s/GiB':>10} "
          f"{'vs (b)':>7} {'vs (a)':>7}")
    for label, nbytes, seconds, rate, rss, cpu in rows:
        print(f"{label:<36} {nbytes / 2**30:>5.2f} {seconds:>7.2f} {rate:>7.0f} {rss:>13.0f} {cpu:>10.1f} "
              f"{rate / base['(b)']:>6.2f}x {rate / base['(a)']:>6.2f}x")
    print(f"\n{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}; repeat {args.repeat}")


if __name__ == "__main__":
    main()
