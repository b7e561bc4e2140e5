"""Surface files: written fast, read back equal, bounds in the labels' real units."""

from __future__ import annotations

import os

import numpy as np
import pytest

from app.pipeline.mesh import ClassSpec, edge_counts, mesh_labels
from app.pipeline.mesh_io import read_surface_file, write_surface_file
from tests.pipeline.mesh_helpers import sphere_labels

SPACING = (2.0, 0.5, 1.0)


@pytest.fixture(scope="module")
def surfaces():
    labels, _ = sphere_labels((24, 64, 40), SPACING, 16.0)
    labels[2:6, 4:10, 4:10] = 3
    classes = [ClassSpec(2, "ball", "#ff0000"), ClassSpec(3, "box", "#00ff00")]
    return labels, mesh_labels(labels, SPACING, classes, 0.0, 1.0, block=16).surfaces


def _label_bounds(labels, value):
    """Bounds (x, y, z) of a class's voxels, half a voxel out, in real units."""
    z, y, x = np.nonzero(labels == value)
    step = np.array(SPACING[::-1])
    lo = np.array([x.min(), y.min(), z.min()]) * step - step / 2
    hi = np.array([x.max(), y.max(), z.max()]) * step + step / 2
    return lo, hi


@pytest.mark.parametrize("fmt", ["stl", "obj", "ply", "glb"])
def test_write_and_read_back_each_format(tmp_path, surfaces, fmt):
    labels, (ball, box) = surfaces
    path = write_surface_file(tmp_path / f"ball.{fmt}", fmt, [("ball", ball.points, ball.faces)], ["#ff0000"])
    points, faces = read_surface_file(path)
    assert len(faces) == len(ball.faces)
    lo, hi = _label_bounds(labels, 2)
    assert np.allclose(points.min(axis=0), lo, atol=1e-3)
    assert np.allclose(points.max(axis=0), hi, atol=1e-3)
    assert edge_counts(faces)["closed"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]


@pytest.mark.parametrize("fmt", ["stl", "obj", "ply", "glb"])
def test_all_together_in_one_file(tmp_path, surfaces, fmt):
    _, (ball, box) = surfaces
    parts = [("ball", ball.points, ball.faces), ("box", box.points, box.faces)]
    points, faces = read_surface_file(write_surface_file(tmp_path / f"all.{fmt}", fmt, parts))
    assert len(faces) == len(ball.faces) + len(box.faces)
    assert edge_counts(faces)["closed"]


def test_failed_write_keeps_the_older_file(tmp_path, surfaces):
    _, (ball, _) = surfaces
    path = write_surface_file(tmp_path / "ball.obj", "obj", [("ball", ball.points, ball.faces)])
    before = path.read_bytes()
    # the second part is not numbers: the write fails after the first part is written
    bad = [("ball", ball.points, ball.faces), ("bad", ball.points, [["a", "b", "c"]])]
    with pytest.raises(ValueError):
        write_surface_file(path, "obj", bad)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ball.obj"]


def test_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unknown mesh format"):
        write_surface_file(tmp_path / "x.vrml", "vrml", [])
