"""Helpers for annotation tests: a converted job with a small real volume on disk."""

from __future__ import annotations

import numpy as np

from app.core.statuses import JobStatus
from app.pipeline.volume import write_volume

S = JobStatus
TO_CONVERTED = (S.UPLOADING, S.UPLOADED, S.CONVERTING, S.CONVERTED)


def phantom(shape=(40, 48, 56), seed=0) -> np.ndarray:
    """A uint16 volume: a bright ball in noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    c = [s / 2 for s in shape]
    ball = ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) < (min(shape) / 3) ** 2
    data = rng.normal(1000, 50, shape) + ball * 2000
    return data.clip(0, 65535).astype(np.uint16)


def converted_job(store, data: np.ndarray | None = None, name="scan", spacing=(1.0, 1.0, 1.0), unit="um"):
    """A job moved to CONVERTED with ``data`` written as its volume."""
    data = phantom() if data is None else data
    job = store.create_job(name, spacing=spacing, unit=unit)
    write_volume(store.workspace.volume_path(job.id), data, spacing, unit)
    for status in TO_CONVERTED:
        store.transition(job.id, status)
    store.update(job.id, shape=list(data.shape), dtype=str(data.dtype), spacing=list(spacing), unit=unit)
    return store.get(job.id)
