"""Streaming conversion of a scan to the multiscale zarr volume of :mod:`app.pipeline.volume`.

The scan is read in slabs of ``CHUNK[0]`` slices (with the next slab read
while the current one is compressed), each level keeps a small accumulation
buffer, and finished rows of chunks are compressed with Blosc in parallel
threads and written straight into the zarr v3 store as chunk files
(byte-identical to what zarr-python writes, several times faster). Memory use
depends on the slice size, not on the number of slices. The volume is written
into a temporary folder beside the target and renamed at the end, so a cancel
or a crash never leaves a half volume under the real name.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from app.core.progress import ProgressContext
from app.pipeline.readers import SlabReader
from app.pipeline.sources import ScanSource
from app.pipeline.volume import CHUNK, Volume, create_volume, downsample2, level_shapes, open_volume

PARTIAL_SUFFIX = ".partial"
#: Compressed chunks smaller than this may be all zeros (checked, then not written).
TINY_CHUNK = 4096


def encode_threads() -> int:
    """Threads compressing chunks (Blosc releases the GIL)."""
    return max(2, os.cpu_count() or 2)


def _blosc():
    from numcodecs import Blosc

    # Must match app.pipeline.volume.default_compressor() (checked by the tests).
    return Blosc(cname="lz4", clevel=5, shuffle=Blosc.BITSHUFFLE, blocksize=0)


class ChunkWriter:
    """Writes rows of chunks of one level straight into a zarr v3 array folder."""

    def __init__(self, array_dir: Path, shape: Sequence[int], chunks: Sequence[int], dtype, pool: ThreadPoolExecutor):
        self.dir = array_dir
        self.shape = tuple(int(s) for s in shape)
        self.chunks = tuple(int(c) for c in chunks)
        self.dtype = np.dtype(dtype)
        self.pool = pool
        self.codec = _blosc()
        self.grid = tuple(-(-s // c) for s, c in zip(self.shape, self.chunks))
        self._local = threading.local()

    def write_row(self, z_index: int, block: np.ndarray) -> list[Future]:
        """Queue the chunks of row ``z_index`` (``block`` holds its slices); returns futures."""
        cz, cy, cx = self.chunks
        for y_index in range(self.grid[1]):
            (self.dir / "c" / str(z_index) / str(y_index)).mkdir(parents=True, exist_ok=True)
        return [self.pool.submit(self._write_strip, z_index, y_index, block) for y_index in range(self.grid[1])]

    def _buffer(self) -> np.ndarray:
        """This thread's reusable chunk buffer (little-endian, C order): no allocation per chunk."""
        buffer = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = np.empty(self.chunks, dtype=self.dtype.newbyteorder("<"))
            self._local.buffer = buffer
        return buffer

    def _write_strip(self, z_index: int, y_index: int, block: np.ndarray) -> None:
        cz, cy, cx = self.chunks
        y0 = y_index * cy
        folder = self.dir / "c" / str(z_index) / str(y_index)
        for x_index in range(self.grid[2]):
            x0 = x_index * cx
            part = block[:, y0 : y0 + cy, x0 : x0 + cx]
            chunk = self._buffer()
            if part.shape != (cz, cy, cx):
                chunk.fill(0)  # edge chunks are stored whole, padded with the fill value
                chunk[: part.shape[0], : part.shape[1], : part.shape[2]] = part
            else:
                np.copyto(chunk, part)
            data = self.codec.encode(chunk)
            if len(data) < TINY_CHUNK and not chunk.any():
                continue  # an empty chunk reads back as the fill value (0), as zarr does
            with open(folder / str(x_index), "wb") as handle:
                handle.write(data)


def downsample_parallel(block: np.ndarray, pool: ThreadPoolExecutor, step: int = 8) -> np.ndarray:
    """:func:`downsample2` of a slab, computed in z-pieces on the pool (same result)."""
    step += step % 2  # pieces of even depth keep the 2x2x2 pairs aligned
    if block.shape[0] <= step:
        return downsample2(block)
    out_shape = tuple((s + 1) // 2 for s in block.shape)
    out = np.empty(out_shape, dtype=block.dtype)

    def piece(z0: int) -> None:
        part = downsample2(block[z0 : z0 + step])
        out[z0 // 2 : z0 // 2 + part.shape[0]] = part

    list(pool.map(piece, range(0, block.shape[0], step)))
    return out


class _Level:
    """One pyramid level: its writer and the slices waiting to fill a row of chunks."""

    def __init__(self, writer: ChunkWriter) -> None:
        self.writer = writer
        self.pending: list[np.ndarray] = []
        self.count = 0
        self.next_row = 0

    def take(self, n: int) -> np.ndarray:
        block = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        head, tail = block[:n], block[n:]
        self.pending = [tail] if len(tail) else []
        self.count = len(tail)
        return head


class ZarrRowWriter(ChunkWriter):
    """The same rows written through zarr-python (``array[z0:z1] = row``), for comparison."""

    def write_row(self, z_index: int, block: np.ndarray) -> list[Future]:
        import zarr

        array = zarr.open_array(str(self.dir), mode="r+")
        z0 = z_index * self.chunks[0]

        def store() -> None:
            array[z0 : z0 + len(block)] = block

        return [self.pool.submit(store)]


WRITERS = {"chunks": ChunkWriter, "zarr": ZarrRowWriter}


class PyramidWriter:
    """Feeds slabs into level 0 and, downsampled, into every coarser level."""

    def __init__(self, root: Path, shapes: list[tuple[int, ...]], chunks: list[tuple[int, ...]], dtype,
                 pool: ThreadPoolExecutor, writer: str = "chunks") -> None:
        self.pool = pool
        kind = WRITERS[writer]
        self.levels = [
            _Level(kind(root / str(i), shp, chk, dtype, pool)) for i, (shp, chk) in enumerate(zip(shapes, chunks))
        ]
        self.futures: list[Future] = []

    def feed(self, level: int, block: np.ndarray, final: bool = False) -> None:
        state = self.levels[level]
        if len(block):
            state.pending.append(block)
            state.count += len(block)
        rows = state.writer.chunks[0]
        while state.count >= rows or (final and state.count):
            row = state.take(min(rows, state.count))
            self.futures += state.writer.write_row(state.next_row, row)
            state.next_row += 1
            if level + 1 < len(self.levels):
                self.feed(level + 1, downsample_parallel(row, self.pool))
        if final and level + 1 < len(self.levels):
            self.feed(level + 1, np.empty((0,) + block.shape[1:], block.dtype), final=True)

    def drain(self, keep: int = 0) -> None:
        """Wait for queued chunk writes until at most ``keep`` remain (raises their errors)."""
        while len(self.futures) > keep:
            self.futures.pop(0).result()

    def cancel(self) -> None:
        for future in self.futures:
            future.cancel()
        self.futures.clear()


def _remove_partials(dest: Path) -> None:
    for stale in dest.parent.glob(dest.name + PARTIAL_SUFFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)


def convert_source(
    source: ScanSource,
    dest: str | Path,
    spacing: Sequence[float],
    unit: str,
    ctx: ProgressContext | None = None,
    read_threads: int | None = None,
    write_threads: int | None = None,
    writer: str = "chunks",
) -> Volume:
    """Convert ``source`` into the multiscale volume ``dest`` (replaced only on success).

    ``writer`` is "chunks" (compressed chunk files written in parallel threads)
    or "zarr" (zarr-python's own writes; slower, kept for the benchmark).
    """
    ctx = ctx or ProgressContext()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_partials(dest)
    tmp = dest.with_name(f"{dest.name}{PARTIAL_SUFFIX}-{os.getpid()}")
    shape = tuple(int(s) for s in source.shape)
    dtype = np.dtype(source.dtype)
    shapes = level_shapes(shape)
    chunks = [tuple(min(c, s) for c, s in zip(CHUNK, shp)) for shp in shapes]
    started = time.monotonic()
    pool = ThreadPoolExecutor(write_threads or encode_threads(), thread_name_prefix="strata-encode")
    prefetch = ThreadPoolExecutor(1, thread_name_prefix="strata-prefetch")
    reader = SlabReader(source, read_threads)
    pyramid: PyramidWriter | None = None
    try:
        create_volume(tmp, shape, dtype, spacing, unit)
        pyramid = PyramidWriter(tmp, shapes, chunks, dtype, pool, writer)
        depth = shape[0]
        slab = chunks[0][0]
        bounds = [(z, min(z + slab, depth)) for z in range(0, depth, slab)]
        ctx.report(0.0, f"converting {depth} slices")
        pending = prefetch.submit(reader.read_slab, *bounds[0])
        for index, (z0, z1) in enumerate(bounds):
            ctx.check_cancelled()
            block = pending.result()
            pyramid.drain()  # the previous slab's chunks are written: at most two slabs in memory
            if index + 1 < len(bounds):
                pending = prefetch.submit(reader.read_slab, *bounds[index + 1])
            pyramid.feed(0, block, final=index + 1 == len(bounds))
            ctx.report(z1 / depth * 0.99, f"slice {z1} of {depth}")
        pyramid.drain()
        ctx.check_cancelled()
        _replace(tmp, dest)
        ctx.report(1.0, f"converted in {time.monotonic() - started:.1f} s")
    except BaseException:
        if pyramid is not None:
            pyramid.cancel()
        prefetch.shutdown(wait=True, cancel_futures=True)
        pool.shutdown(wait=True, cancel_futures=True)
        reader.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prefetch.shutdown(wait=True)
    pool.shutdown(wait=True)
    reader.close()
    return open_volume(dest)


def _replace(tmp: Path, dest: Path) -> None:
    """Put the finished volume in place of any older one."""
    old = None
    if dest.exists():
        old = dest.with_name(f"{dest.name}{PARTIAL_SUFFIX}-old-{os.getpid()}")
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
