"""The bundled sample phantom and its ground truth."""

from __future__ import annotations

import time

import numpy as np
import tifffile

from app.pipeline.sample import BACKGROUND, SPECIMEN, labels_path_for, make_phantom, write_sample


def test_phantom_is_deterministic_with_ground_truth():
    image, labels = make_phantom((32, 64, 64), seed=3)
    again, labels_again = make_phantom((32, 64, 64), seed=3)
    other, _ = make_phantom((32, 64, 64), seed=4)
    assert image.dtype == np.uint16 and image.shape == (32, 64, 64)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {BACKGROUND, SPECIMEN}
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(labels, labels_again)
    assert not np.array_equal(image, other)


def test_specimen_is_brighter_than_the_matrix_but_noisy():
    image, labels = make_phantom((48, 96, 96), seed=0)
    specimen = image[labels == SPECIMEN].astype(float)
    background = image[labels == BACKGROUND].astype(float)
    assert 0.5 < (labels == SPECIMEN).mean() * 30 < 5  # a few percent of the volume
    assert specimen.mean() > background.mean() + 8000
    assert background.std() > 1000  # matrix, air, noise, rings: not trivially separable by one value


def test_default_sample_is_fast_and_cached(tmp_path):
    started = time.monotonic()
    files = write_sample(tmp_path)
    first = time.monotonic() - started
    assert files.image.parent == tmp_path / "samples"
    assert labels_path_for(files.image) == files.labels
    with tifffile.TiffFile(files.image) as tif:
        assert tif.series[0].shape == (128, 256, 256) and tif.series[0].dtype == np.uint16
        assert tif.imagej_metadata["spacing"] == 20.0
    assert tifffile.imread(files.labels).shape == (128, 256, 256)
    mtime = files.image.stat().st_mtime_ns
    started = time.monotonic()
    assert write_sample(tmp_path) == files
    assert time.monotonic() - started < 0.5 and files.image.stat().st_mtime_ns == mtime
    assert first < 30
