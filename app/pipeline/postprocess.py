"""Optional clean-up of a segmentation: small pieces, enclosed holes, largest piece.

Each class's mask is processed with connected components (6-connectivity):
pieces smaller than ``min_size`` voxels take the label surrounding them most,
holes of a class fully enclosed by it are filled with it, and ``keep_largest``
keeps one piece per class. Background classes are left as they are except as
the filler. Works chunk by chunk on the array on disk, so memory does not grow
with the volume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from app.core.progress import ProgressContext
from app.pipeline.components import Pieces, find_pieces, iter_regions


@dataclass
class CleanUp:
    """Clean-up options of a segmentation (all off by default)."""

    min_size: int = 0
    fill_holes: bool = False
    keep_largest: bool = False

    @property
    def active(self) -> bool:
        return bool(self.min_size > 0 or self.fill_holes or self.keep_largest)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "CleanUp":
        data = data or {}
        return cls(int(data.get("min_size", 0) or 0), bool(data.get("fill_holes")), bool(data.get("keep_largest")))


def clean_labels(
    labels: np.ndarray,
    classes: Sequence[int],
    background: Sequence[int],
    options: CleanUp,
    ctx: ProgressContext | None = None,
    block: Sequence[int] | None = None,
) -> np.ndarray:
    """A cleaned copy of ``labels`` (uint8), by :func:`clean_array` on an in-memory array."""
    import zarr

    data = np.asarray(labels, dtype=np.uint8)
    array = zarr.create_array(zarr.storage.MemoryStore(), shape=data.shape, chunks=tuple(block or data.shape),
                              dtype=np.uint8, fill_value=0, zarr_format=3)
    array[...] = data
    clean_array(array, classes, background, options, ctx)
    return np.asarray(array[...])


def clean_array(
    array,
    classes: Sequence[int],
    background: Sequence[int],
    options: CleanUp,
    ctx: ProgressContext | None = None,
    scratch: str | Path | None = None,
) -> None:
    """Clean a segmentation array (zarr, on disk) in place, one of its chunks at a time.

    Pieces are found across the whole volume (:mod:`app.pipeline.components`),
    so the result does not depend on the chunking; memory holds one chunk and a
    few numbers per piece. ``scratch`` is a folder for the pieces' ids (removed
    afterwards; in memory when None).
    """
    import shutil

    if not options.active:
        return
    ctx = ctx or ProgressContext()
    shape, block = tuple(array.shape), tuple(array.chunks)
    targets = [int(c) for c in classes if int(c) not in set(int(b) for b in background)]
    filler = int(background[0]) if background else None
    steps = len(targets) * (2 if options.fill_holes else 1)
    done = 0

    def step() -> ProgressContext:
        nonlocal done
        part = ctx.sub(done / steps, (done + 1) / steps)
        done += 1
        return part

    def store():
        return None if scratch is None else str(Path(scratch) / f"pieces-{done}.zarr")

    try:
        for value in targets:
            if options.min_size > 0 or options.keep_largest:
                part = step()
                pieces = find_pieces(lambda r: array[r] == value, shape, block, store(), part.sub(0.0, 0.5))
                drop = np.zeros(len(pieces.size), bool)
                if options.min_size > 0:
                    drop |= pieces.size < options.min_size
                if options.keep_largest and pieces.count:
                    drop |= np.arange(len(pieces.size)) != int(np.argmax(pieces.size[1:])) + 1
                drop[0] = False
                if drop.any():
                    into = filler if filler is not None else _neighbour_majority(array, pieces, drop, value, part)
                    _rewrite(array, pieces, drop, into, part.sub(0.75, 1.0), f"class {value}: small pieces")
            if options.fill_holes:
                part = step()
                outside = find_pieces(lambda r: array[r] != value, shape, block, store(), part.sub(0.0, 0.5))
                hole = ~outside.on_border
                hole[0] = False
                if hole.any():
                    _rewrite(array, outside, hole, value, part.sub(0.5, 1.0), f"class {value}: holes")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    ctx.report(1.0, "clean-up done")


def _rewrite(array, pieces: Pieces, chosen: np.ndarray, value: int, ctx: ProgressContext, what: str) -> None:
    """Set the voxels of the chosen pieces to ``value``, chunk by chunk."""
    for region in iter_regions(array.shape, array.chunks, ctx, what):
        where = chosen[pieces.piece_at(region)]
        if where.any():
            data = np.asarray(array[region])
            data[where] = value
            array[region] = data


def _neighbour_majority(array, pieces: Pieces, chosen: np.ndarray, exclude: int, ctx: ProgressContext) -> int:
    """The most common label touching the chosen pieces from outside, other than ``exclude``.

    Counted within each chunk (a piece's neighbours across a chunk face are not
    counted, which matters only for pieces that lie along chunk faces).
    """
    from scipy import ndimage

    counts = np.zeros(256, np.int64)
    for region in iter_regions(array.shape, array.chunks, ctx.sub(0.5, 0.75), "neighbours of small pieces"):
        region_mask = chosen[pieces.piece_at(region)]
        if region_mask.any():
            ring = ndimage.binary_dilation(region_mask) & ~region_mask
            counts += np.bincount(np.asarray(array[region])[ring], minlength=256)
    counts[exclude] = 0
    return int(counts.argmax()) if counts.any() else exclude
