"""Optional clean-up of a segmentation: small pieces, enclosed holes, largest piece.

Each class's mask is processed with connected components (6-connectivity):
pieces smaller than ``min_size`` voxels take the label surrounding them most,
holes of a class fully enclosed by it are filled with it, and ``keep_largest``
keeps one piece per class. Background classes are left as they are except as
the filler. Works on the whole label array (uint8: 1/8 of a float volume).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from app.core.progress import ProgressContext


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


def _neighbour_majority(labels: np.ndarray, region: np.ndarray, exclude: int) -> int:
    """The most common label touching ``region`` from outside, other than ``exclude``."""
    from scipy import ndimage

    ring = ndimage.binary_dilation(region) & ~region
    values = labels[ring]
    values = values[values != exclude]
    if not values.size:
        return exclude
    return int(np.bincount(values).argmax())


def clean_labels(
    labels: np.ndarray,
    classes: Sequence[int],
    background: Sequence[int],
    options: CleanUp,
    ctx: ProgressContext | None = None,
) -> np.ndarray:
    """A cleaned copy of ``labels`` (uint8)."""
    from scipy import ndimage

    ctx = ctx or ProgressContext()
    out = np.array(labels, dtype=np.uint8, copy=True)
    targets = [int(c) for c in classes if int(c) not in set(int(b) for b in background)]
    fill_value = int(background[0]) if background else 0
    for i, value in enumerate(targets):
        ctx.check_cancelled()
        ctx.report(i / max(1, len(targets)), f"clean-up of class {value}")
        mask = out == value
        if options.min_size > 0 or options.keep_largest:
            pieces, count = ndimage.label(mask)
            if count:
                sizes = np.bincount(pieces.ravel())
                sizes[0] = 0
                drop = np.zeros(count + 1, dtype=bool)
                if options.min_size > 0:
                    drop |= sizes < options.min_size
                if options.keep_largest:
                    keep = np.zeros(count + 1, dtype=bool)
                    keep[int(sizes.argmax())] = True
                    drop |= ~keep
                drop[0] = False
                removed = drop[pieces]
                if removed.any():
                    out[removed] = _neighbour_majority(out, removed, value) if fill_value == 0 else fill_value
                mask = out == value
        if options.fill_holes:
            filled = ndimage.binary_fill_holes(mask)
            out[filled & ~mask] = value
    ctx.report(1.0, "clean-up done")
    return out


def clean_array(array, classes, background, options: CleanUp, ctx: ProgressContext | None = None) -> None:
    """Clean a segmentation array on disk in place."""
    if not options.active:
        return
    data = np.asarray(array[...])
    array[...] = clean_labels(data, classes, background, options, ctx)
