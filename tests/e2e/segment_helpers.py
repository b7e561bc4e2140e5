"""Helpers for training/segmentation tests: an annotated job on the sample phantom."""

from __future__ import annotations

import numpy as np

from app.core.statuses import JobStatus
from app.pipeline.annotations import open_annotations
from app.pipeline.sample import make_phantom
from app.pipeline.volume import write_volume

S = JobStatus

#: Fast quick-model settings for tests (few trees, few samples).
FAST_QUICK = {"trees": 12, "samples_per_class": 3000, "scales": [0.7, 1.6, 3.5]}


def annotated_job(store, shape=(24, 64, 64), seed=0, slices=(6, 12, 18), name="phantom"):
    """A job at ANNOTATED: the phantom as its volume, paint from the truth on ``slices`` (z)."""
    image, truth = make_phantom(shape, seed)
    job = store.create_job(name, spacing=(2.0, 1.0, 1.0), unit="um")
    write_volume(store.workspace.volume_path(job.id), image, (2.0, 1.0, 1.0), "um")
    for status in (S.UPLOADING, S.UPLOADED, S.CONVERTING, S.CONVERTED, S.ANNOTATED):
        store.transition(job.id, status)
    store.update(job.id, shape=list(shape), dtype="uint16", spacing=[2.0, 1.0, 1.0], unit="um")
    annotations = open_annotations(store.workspace.annotations_path(job.id), shape, create=True)
    for z in slices:
        annotations[z] = truth[z]
    return store.get(job.id), truth
