"""Connected pieces (6-connectivity) of a mask too large for memory, found block by block.

Each block is labelled on its own (scipy), its labels made unique by an offset
and kept in a scratch zarr array; pieces that touch across a block face are
merged with a graph's connected components. Memory: one block, the faces of one
layer of blocks, and a few numbers per piece.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import zarr

from app.core.progress import ProgressContext

Region = tuple[slice, slice, slice]


def block_regions(shape: Sequence[int], block: Sequence[int]) -> list[Region]:
    """The blocks of a grid over ``shape``, in raster order (z, then y, then x)."""
    starts = itertools.product(*(range(0, n, b) for n, b in zip(shape, block)))
    return [tuple(slice(a, min(a + b, n)) for a, b, n in zip(s, block, shape)) for s in starts]  # type: ignore[misc]


@dataclass
class Pieces:
    """The pieces of a mask: ``piece_at(region)`` numbers every voxel's piece (0: not in the mask)."""

    ids: zarr.Array  # block-unique ids, 0 outside the mask
    piece_of_id: np.ndarray  # id -> piece number; piece 0 is "not in the mask"
    size: np.ndarray  # voxels per piece
    on_border: np.ndarray  # per piece: touches a face of the whole volume

    @property
    def count(self) -> int:
        return len(self.size) - 1

    def piece_at(self, region: Region) -> np.ndarray:
        return self.piece_of_id[np.asarray(self.ids[region])]


def _scratch_array(shape, block, store) -> zarr.Array:
    return zarr.create_array(
        store if store is not None else zarr.storage.MemoryStore(),
        shape=tuple(shape), chunks=tuple(min(b, n) for b, n in zip(block, shape)),
        dtype=np.uint32, fill_value=0, zarr_format=3, overwrite=True,
    )


def find_pieces(
    mask_of: Callable[[Region], np.ndarray],
    shape: Sequence[int],
    block: Sequence[int],
    store=None,
    ctx: ProgressContext | None = None,
) -> Pieces:
    """Connected pieces of the mask ``mask_of(region)`` gives block by block.

    ``store`` holds the scratch ids (a folder path for large volumes; in memory when None).
    """
    from scipy import ndimage
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ctx = ctx or ProgressContext()
    shape = tuple(int(n) for n in shape)
    ids = _scratch_array(shape, block, store)
    regions = block_regions(shape, block)
    sizes: list[np.ndarray] = [np.zeros(1, np.int64)]
    border: list[np.ndarray] = [np.zeros(1, bool)]
    edges: list[np.ndarray] = []
    high_faces: dict[tuple[int, tuple[int, int, int]], np.ndarray] = {}  # (axis, next block's start) -> face
    offset = 0
    for i, region in enumerate(regions):
        ctx.check_cancelled()
        ctx.report(i / len(regions), f"pieces, block {i + 1} of {len(regions)}")
        mask = np.asarray(mask_of(region), dtype=bool)
        local, n = ndimage.label(mask)
        found = local.astype(np.uint32)
        if n:
            found[mask] += np.uint32(offset)
            ids[region] = found
            sizes.append(np.bincount(local[mask], minlength=n + 1)[1:].astype(np.int64))
            border.append(_touching_the_volume_faces(local, region, shape, n))
        start = tuple(r.start for r in region)
        for axis in range(3):
            low = high_faces.pop((axis, start), None)
            if low is not None and n:
                edges.append(_touching_pairs(low, found.take(0, axis)))
            if region[axis].stop < shape[axis]:
                nxt = list(start)
                nxt[axis] = region[axis].stop
                high_faces[(axis, tuple(nxt))] = found.take(-1, axis).copy()
        offset += n
    size_per_id = np.concatenate(sizes)
    border_per_id = np.concatenate(border)
    pairs = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(offset + 1, offset + 1))
    _, piece_of_id = connected_components(graph, directed=False)
    piece_of_id = _zero_first(piece_of_id)
    count = int(piece_of_id.max()) + 1
    size = np.bincount(piece_of_id, weights=size_per_id, minlength=count).astype(np.int64)
    on_border = np.bincount(piece_of_id, weights=border_per_id, minlength=count) > 0
    ctx.report(1.0, f"{count - 1} pieces")
    return Pieces(ids, piece_of_id.astype(np.int64), size, on_border)


def _zero_first(numbers: np.ndarray) -> np.ndarray:
    """Renumber so id 0 (outside the mask, never joined to anything) is piece 0."""
    zero = numbers[0]
    out = numbers.copy()
    out[numbers == zero] = 0
    out[numbers == 0] = zero
    return out


def _touching_the_volume_faces(local: np.ndarray, region: Region, shape, n: int) -> np.ndarray:
    """Per local label 1..n: does it touch a face of the whole volume?"""
    touches = np.zeros(n, bool)
    for axis, r in enumerate(region):
        for side, at_face in ((0, r.start == 0), (-1, r.stop == shape[axis])):
            if at_face:
                face = local.take(side, axis)
                touches[face[face > 0] - 1] = True
    return touches


def _touching_pairs(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Unique (id, id) pairs of mask voxels facing each other across a block face."""
    both = (low > 0) & (high > 0)
    if not both.any():
        return np.zeros((0, 2), np.int64)
    pairs = np.stack([low[both], high[both]], 1).astype(np.int64)
    return np.unique(pairs, axis=0)


def iter_regions(shape: Sequence[int], block: Sequence[int], ctx: ProgressContext, what: str) -> Iterator[Region]:
    """The block regions with progress and cancel between blocks."""
    regions = block_regions(shape, block)
    for i, region in enumerate(regions):
        ctx.check_cancelled()
        ctx.report(i / len(regions), f"{what}, block {i + 1} of {len(regions)}")
        yield region
    ctx.report(1.0, what)
