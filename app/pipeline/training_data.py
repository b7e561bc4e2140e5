"""Training data from the paint: painted voxels, the slices they lie on, splits by slice.

A painted voxel belongs to the plane (axis, index) its stroke was laid on:
the one across which its neighbours are unpainted, or else the one among its
three planes holding the most paint (``annotations.stroke_axes``). This
recovers the slices a user painted on in any of the three orientations.
Splits keep whole slices apart, so held-out metrics measure paint the model
never saw, not neighbours of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from app.core.progress import StageError

AXIS_NAMES = "zyx"


@dataclass
class Paint:
    """Painted voxels: coordinates (n, 3) as (z, y, x), label values, plane of each."""

    coords: np.ndarray
    labels: np.ndarray
    plane_ids: np.ndarray
    planes: list[tuple[int, int]]

    @property
    def count(self) -> int:
        return int(self.labels.size)

    @property
    def classes(self) -> list[int]:
        return sorted(int(v) for v in np.unique(self.labels))

    def subset(self, mask: np.ndarray) -> "Paint":
        return Paint(self.coords[mask], self.labels[mask], self.plane_ids[mask], self.planes)

    def plane_names(self) -> list[str]:
        return [f"{AXIS_NAMES[a]}={i}" for a, i in self.planes]


def read_paint(annotations) -> Paint:
    """All painted voxels of an annotation array (reads only the chunks that hold paint)."""
    from app.pipeline.annotations import iter_stored_chunks, painted_voxels

    coords, labels, allowed = [], [], []
    for selection, data in iter_stored_chunks(annotations):
        found, values, across = painted_voxels(selection, data)
        if not len(found):
            continue
        coords.append(found)
        labels.append(values)
        allowed.append(across)
    if not coords:
        empty = np.zeros((0, 3), np.int64)
        return Paint(empty, np.zeros(0, np.uint8), np.zeros(0, np.int64), [])
    c = np.concatenate(coords)
    v = np.concatenate(labels).astype(np.uint8)
    plane_ids, planes = assign_planes(c, annotations.shape, np.concatenate(allowed))
    return Paint(c, v, plane_ids, planes)


def assign_planes(coords: np.ndarray, shape, allowed: np.ndarray | None = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """For each voxel, the plane its stroke was laid on, and the planes found.

    ``allowed`` (n, 3), from ``annotations.stroke_axes``: the axes a voxel's
    neighbours leave possible (all three if not given); among them, the plane
    holding the most paint.
    """
    from app.pipeline.annotations import strongest_plane

    counts = [np.bincount(coords[:, a], minlength=shape[a]) for a in range(3)]
    axis = strongest_plane(coords, counts, allowed)
    index = coords[np.arange(len(coords)), axis]
    keys = axis * (max(shape) + 1) + index
    unique, plane_ids = np.unique(keys, return_inverse=True)
    planes = [(int(k // (max(shape) + 1)), int(k % (max(shape) + 1))) for k in unique]
    return plane_ids.astype(np.int64), planes


def check_paint(paint: Paint, where: str) -> None:
    """Raise a user-facing error unless the paint can train a model."""
    if paint.count == 0:
        raise StageError(f"{where}: nothing is painted yet; paint at least two materials")
    if len(paint.classes) < 2:
        raise StageError(
            f"{where}: the paint has only one class (value {paint.classes[0]}); "
            "paint at least two materials (for example background and specimen)"
        )


def sample_balanced(paint: Paint, cap_per_class: int, seed: int = 0) -> Paint:
    """At most ``cap_per_class`` voxels of each class, drawn at random."""
    rng = np.random.default_rng(seed)
    keep = []
    for value in paint.classes:
        where = np.flatnonzero(paint.labels == value)
        if where.size > cap_per_class:
            where = rng.choice(where, cap_per_class, replace=False)
        keep.append(where)
    index = np.sort(np.concatenate(keep))
    return paint.subset(index)


@dataclass
class Fold:
    """One split: boolean masks over the paint, and what was held out."""

    train: np.ndarray
    test: np.ndarray
    held_out: str


def slice_folds(paint: Paint, k: int = 3, seed: int = 0) -> list[Fold]:
    """k-fold by painted slice (leave-slices-out when there are fewer slices than k).

    With paint on one slice only, its paint is split into two halves along
    the slice's longer painted extent, and each half is held out once.
    """
    present = np.unique(paint.plane_ids)
    n_planes = len(present)
    folds: list[Fold] = []
    if n_planes >= 2:
        rng = np.random.default_rng(seed)
        order = rng.permutation(present)
        k = max(2, min(k, n_planes))
        names = paint.plane_names()
        for fold in range(k):
            held = order[fold::k]
            test = np.isin(paint.plane_ids, held)
            train = ~test
            if test.any() and train.any():
                folds.append(Fold(train, test, ", ".join(names[i] for i in sorted(held))))
        return folds
    if n_planes == 1:
        axis, index = paint.planes[int(present[0])]
        in_plane = [a for a in range(3) if a != axis]
        spans = [np.ptp(paint.coords[:, a]) for a in in_plane]
        split_axis = in_plane[int(np.argmax(spans))]
        middle = np.median(paint.coords[:, split_axis])
        low = paint.coords[:, split_axis] <= middle
        name = f"{AXIS_NAMES[axis]}={index}"
        for test in (low, ~low):
            if test.any() and (~test).any():
                half = "low" if test is low else "high"
                folds.append(Fold(~test, test, f"{half} {AXIS_NAMES[split_axis]} half of {name}"))
    return folds


def iter_boxes(coords: np.ndarray, shape, block: tuple[int, int, int]) -> Iterator[tuple[np.ndarray, tuple, tuple]]:
    """Group voxel coordinates by block of a grid: (indices, box start, box stop) per block.

    The box is the bounding box of the voxels in that block, so features are
    computed only around the paint.
    """
    if not len(coords):
        return
    cells = coords // np.asarray(block)
    keys = (cells[:, 0] * 1_000_003 + cells[:, 1]) * 1_000_003 + cells[:, 2]
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    bounds = np.flatnonzero(np.diff(sorted_keys)) + 1
    for group in np.split(order, bounds):
        pts = coords[group]
        start = tuple(int(v) for v in pts.min(0))
        stop = tuple(int(v) + 1 for v in pts.max(0))
        yield group, start, stop


def paint_features(array, paint: Paint, spec, norm, block=(16, 128, 128), ctx=None) -> np.ndarray:
    """Feature rows (n, F) float32 for every voxel of ``paint``, computed block by block."""
    from app.pipeline.features import block_features

    out = np.empty((paint.count, spec.count), dtype=np.float32)
    groups = list(iter_boxes(paint.coords, array.shape, block))
    for i, (group, start, stop) in enumerate(groups):
        if ctx is not None:
            ctx.check_cancelled()
            ctx.report(i / max(1, len(groups)), f"features of the paint, box {i + 1} of {len(groups)}")
        feats = block_features(array, start, stop, spec, norm)
        local = paint.coords[group] - np.asarray(start)
        out[group] = feats[:, local[:, 0], local[:, 1], local[:, 2]].T
    return out
