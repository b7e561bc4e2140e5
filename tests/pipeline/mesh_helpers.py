"""Test helpers for meshing: label volumes with known shapes, and segmented jobs."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from app.core.statuses import JobStatus

#: Statuses from a new job to a segmented one.
TO_SEGMENTED = [
    "UPLOADING", "UPLOADED", "CONVERTING", "CONVERTED", "ANNOTATED",
    "TRAINING_QUEUED", "TRAINING", "TRAINED", "SEGMENTING", "SEGMENTED",
]


def sphere_labels(
    shape: Sequence[int], spacing: Sequence[float], radius: float, inside: int = 2, outside: int = 1
) -> tuple[np.ndarray, float]:
    """(z, y, x) labels of a ball of ``radius`` (real units) at the centre, and its exact volume."""
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij", sparse=True)
    labels = np.full(tuple(shape), outside, np.uint8)
    labels[zz**2 + yy**2 + xx**2 <= radius**2] = inside
    return labels, 4.0 / 3.0 * math.pi * radius**3


def make_segmented_job(store, labels: np.ndarray, spacing=(1.0, 1.0, 1.0), unit: str = "um", name: str = "seg"):
    """A SEGMENTED job whose complete segmentation is ``labels`` (zarr v3, chunks 64^3)."""
    import zarr

    from app.store.models import Segmentation

    job = store.create_job(name, spacing=tuple(spacing), unit=unit)
    store.update(job.id, shape=list(labels.shape), dtype="uint8")
    for status in TO_SEGMENTED:
        store.transition(job.id, JobStatus[status])
    seg = Segmentation.create(job=job.id, state="complete")
    path = store.workspace.segmentation_path(job.id, seg.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = zarr.create_array(str(path), shape=labels.shape, dtype=np.uint8,
                              chunks=tuple(min(64, s) for s in labels.shape), fill_value=0)
    array[...] = labels
    Segmentation.update(path=str(path)).where(Segmentation.id == seg.id).execute()
    return store.get(job.id), Segmentation.get_by_id(seg.id)


def add_class(store, job_id: int, value: int, name: str, color: str) -> None:
    from app.store.models import LabelClass

    LabelClass.create(job=job_id, value=value, name=name, color=color, is_background=False)
