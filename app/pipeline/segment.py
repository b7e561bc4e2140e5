"""Segment a whole volume block by block: no seams, bounded memory, parallel, resumable.

Each block is read with the model's margin (its features' or network's reach),
so labels do not depend on the block size. The output is a zarr v3 array of
uint8 whose chunks are the blocks, so parallel workers never share a chunk.
A block, once written, is recorded by an empty marker file in
``<segmentation>.blocks/``; a killed run resumes with the blocks not marked.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np
import zarr

from app.core.progress import Cancelled, ProgressContext
from app.pipeline.features import read_padded
from app.pipeline.volume import default_compressor

DEFAULT_BLOCK = (8, 256, 256)


class BlockModel(Protocol):
    """What segmentation needs of a model."""

    classes: list[int]

    def margin(self) -> tuple[int, int, int]: ...
    def block_multiple(self) -> tuple[int, int, int]: ...
    def predict_padded(self, padded: np.ndarray) -> np.ndarray: ...


def fit_block(block: Sequence[int], shape: Sequence[int], multiple: Sequence[int]) -> tuple[int, int, int]:
    """A block shape no larger than needed, rounded up to the model's multiple."""
    out = []
    for b, s, m in zip(block, shape, multiple):
        b = min(int(b), int(s))
        out.append(max(m, int(math.ceil(b / m)) * m))
    return tuple(out)  # type: ignore[return-value]


def block_starts(shape: Sequence[int], block: Sequence[int]) -> list[tuple[int, int, int]]:
    return list(itertools.product(*(range(0, s, b) for s, b in zip(shape, block))))


def markers_dir(out_path: str | Path) -> Path:
    path = Path(out_path)
    return path.with_name(path.name + ".blocks")


def _marker(folder: Path, start: Sequence[int]) -> Path:
    return folder / "_".join(str(v) for v in start)


def open_output(out_path: str | Path, shape, block, attrs: dict | None = None) -> zarr.Array:
    """The segmentation array: created, or reopened to resume (keeping its block size)."""
    path = Path(out_path)
    if (path / "zarr.json").is_file():
        return zarr.open_array(str(path), mode="r+")
    path.parent.mkdir(parents=True, exist_ok=True)
    array = zarr.create_array(
        str(path),
        shape=tuple(shape),
        chunks=tuple(block),
        dtype=np.uint8,
        fill_value=0,
        compressors=[default_compressor()],
        zarr_format=3,
        overwrite=True,
    )
    if attrs:
        array.attrs.update(attrs)
    return array


def blocks_done(out_path: str | Path) -> int:
    folder = markers_dir(out_path)
    return len(os.listdir(folder)) if folder.is_dir() else 0


def segment_volume(
    array,
    model: BlockModel,
    out_path: str | Path,
    block: Sequence[int] | None = None,
    workers: int | None = None,
    ctx: ProgressContext | None = None,
    attrs: dict | None = None,
    on_block: Callable[[int, int], None] | None = None,
) -> zarr.Array:
    """Label every voxel of ``array`` (a volume's level 0) with ``model`` into ``out_path``.

    ``block`` defaults to the model's ``preferred_block()`` if it has one, else
    :data:`DEFAULT_BLOCK`. Returns the output array. ``on_block(done, total)`` is called after each
    block. Raises :class:`Cancelled` (with finished blocks kept) on cancel.
    """
    ctx = ctx or ProgressContext()
    shape = tuple(array.shape)
    if block is None:
        preferred = getattr(model, "preferred_block", None)
        block = preferred() if preferred else DEFAULT_BLOCK
    block = fit_block(block, shape, model.block_multiple())
    out = open_output(out_path, shape, block, attrs)
    block = tuple(out.chunks)
    folder = markers_dir(out_path)
    folder.mkdir(parents=True, exist_ok=True)
    starts = block_starts(shape, block)
    done_names = set(os.listdir(folder))
    todo = [s for s in starts if _marker(folder, s).name not in done_names]
    total = len(starts)
    done = total - len(todo)
    margin = model.margin()
    workers = workers or default_workers()
    lock = threading.Lock()

    def run(start: tuple[int, int, int]) -> None:
        stop = tuple(min(a + b, n) for a, b, n in zip(start, block, shape))
        padded = read_padded(array, start, stop, margin)
        labels = model.predict_padded(padded)
        out[tuple(slice(a, b) for a, b in zip(start, stop))] = labels
        _marker(folder, start).touch()

    ctx.report(done / total if total else 1.0, f"block {done} of {total}")
    with _thread_budget(workers), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segment") as pool:
        pending: set[Future] = set()
        queue: Iterator = iter(todo)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < workers + 1:
                    ctx.check_cancelled()
                    nxt = next(queue, None)
                    if nxt is None:
                        exhausted = True
                        break
                    pending.add(pool.submit(run, nxt))
                if not pending:
                    break
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()
                    with lock:
                        done += 1
                    ctx.report(done / total, f"block {done} of {total}")
                    if on_block is not None:
                        on_block(done, total)
                ctx.check_cancelled()
        except BaseException:
            for future in pending:
                future.cancel()
            wait(pending)
            raise
    return out


def default_workers() -> int:
    from app.pipeline.quick import cpu_count

    return max(1, min(cpu_count(), 4))


class _thread_budget:
    """Split the cores between block workers (torch's intra-op threads), restored afterwards."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.saved: int | None = None

    def __enter__(self):
        import torch

        from app.pipeline.quick import cpu_count

        self.saved = torch.get_num_threads()
        torch.set_num_threads(max(1, cpu_count() // max(1, self.workers)))
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.saved:
            torch.set_num_threads(self.saved)


def clear_output(out_path: str | Path) -> None:
    """Remove a segmentation's array and its block markers."""
    import shutil

    shutil.rmtree(Path(out_path), ignore_errors=True)
    shutil.rmtree(markers_dir(out_path), ignore_errors=True)


__all__ = ["segment_volume", "open_output", "blocks_done", "clear_output", "Cancelled", "DEFAULT_BLOCK"]
