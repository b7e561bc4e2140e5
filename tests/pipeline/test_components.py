"""Blockwise connected pieces and the chunk-by-chunk clean-up agree with whole-volume scipy."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from scipy import ndimage

from app.core.progress import Cancelled, ProgressContext
from app.pipeline.components import find_pieces
from app.pipeline.postprocess import CleanUp, clean_array, clean_labels


def blobs(shape=(30, 41, 37), seed=0, threshold=0.55) -> np.ndarray:
    """Random smooth blobs: many pieces of many sizes, some crossing every block face."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), 1.5)
    return field > np.quantile(field, threshold)


@pytest.mark.parametrize("block", [(7, 16, 13), (30, 41, 37), (1, 41, 5)])
def test_pieces_found_block_by_block_are_scipys_pieces(block):
    mask = blobs()
    expected, count = ndimage.label(mask)
    pieces = find_pieces(lambda r: mask[r], mask.shape, block)
    found = pieces.piece_at(tuple(slice(0, n) for n in mask.shape))
    assert pieces.count == count
    # the same partition: each scipy piece is exactly one of ours and the other way round
    pairs = np.unique(np.stack([expected[mask], found[mask]], 1), axis=0)
    assert len(pairs) == count and len(np.unique(pairs[:, 1])) == count
    assert (found[~mask] == 0).all()
    sizes = np.bincount(expected.ravel())[pairs[:, 0]]
    assert np.array_equal(pieces.size[pairs[:, 1]], sizes)
    faces = np.zeros(mask.shape, bool)
    faces[[0, -1]] = faces[:, [0, -1]] = faces[:, :, [0, -1]] = True
    touching = set(np.unique(expected[faces & mask]))
    assert {int(a) for a, b in pairs if pieces.on_border[b]} == touching


def test_clean_up_does_not_depend_on_the_chunks():
    mask = blobs(seed=1)
    labels = np.where(mask, 2, 1).astype(np.uint8)
    labels[blobs(seed=2, threshold=0.8) & ~mask] = 3
    for options in (CleanUp(min_size=40), CleanUp(fill_holes=True), CleanUp(keep_largest=True),
                    CleanUp(min_size=40, fill_holes=True)):
        whole = clean_labels(labels, [1, 2, 3], [1], options)
        chunked = clean_labels(labels, [1, 2, 3], [1], options, block=(7, 16, 13))
        assert np.array_equal(whole, chunked), options
    # against scipy on the whole volume: small pieces of classes 2 and 3 become background
    small = np.zeros(labels.shape, bool)
    for value in (2, 3):
        pieces, _ = ndimage.label(labels == value)
        small |= (np.bincount(pieces.ravel()) < 40)[pieces] & (pieces > 0)
    out = clean_labels(labels, [1, 2, 3], [1], CleanUp(min_size=40), block=(7, 16, 13))
    assert small.any() and (out[small] == 1).all() and np.array_equal(out[~small], labels[~small])


def test_holes_are_filled_across_chunks_and_open_cavities_are_not():
    labels = np.ones((20, 20, 20), np.uint8)
    labels[2:18, 2:18, 2:18] = 2
    labels[4:9, 5:15, 5:15] = 1  # an enclosed cavity crossing chunk faces
    labels[11:16, 5:15, 5:15] = 1  # a second cavity ...
    labels[12:14, 8:12, 0:6] = 1  # ... open to the outside by a tunnel
    out = clean_labels(labels, [1, 2], [1], CleanUp(fill_holes=True), block=(6, 7, 9))
    assert (out[4:9, 5:15, 5:15] == 2).all()
    assert (out[11:16, 5:15, 5:15] == 1).all() and (out[12:14, 8:12, 0:6] == 1).all()
    assert np.array_equal(out, ndimage.binary_fill_holes(labels == 2) + 1)


def test_clean_array_on_disk_removes_its_scratch_and_can_be_cancelled(tmp_path):
    labels = np.where(blobs(seed=3), 2, 1).astype(np.uint8)
    array = zarr.create_array(str(tmp_path / "seg.zarr"), shape=labels.shape, chunks=(8, 16, 16), dtype=np.uint8)
    array[...] = labels
    scratch = tmp_path / "seg.zarr.cleanup"
    ctx = ProgressContext()
    ctx.cancel()
    with pytest.raises(Cancelled):
        clean_array(array, [1, 2], [1], CleanUp(min_size=50), ctx, scratch)
    assert np.array_equal(array[...], labels) and not scratch.exists()
    clean_array(array, [1, 2], [1], CleanUp(min_size=50), None, scratch)
    assert not scratch.exists()
    assert np.array_equal(array[...], clean_labels(labels, [1, 2], [1], CleanUp(min_size=50)))
    assert not np.array_equal(array[...], labels)
