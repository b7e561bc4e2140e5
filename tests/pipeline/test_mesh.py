"""Meshing a label volume block by block: closed, welded, in real units, volume kept."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.progress import Cancelled, ProgressContext
from app.pipeline.mesh import ClassSpec, edge_counts, mesh_class, mesh_labels, reduction_factors
from tests.pipeline.mesh_helpers import sphere_labels

SPACING = (1.5, 1.0, 1.25)  # anisotropic (z, y, x)
SHAPE = (64, 64, 64)
RADIUS = 28.0
#: Blocks of 32 voxels: at full size 2 x 2 x 2 blocks meet at the ball's centre.
BLOCK = 32


@pytest.fixture(scope="module")
def ball():
    return sphere_labels(SHAPE, SPACING, RADIUS)


@pytest.mark.parametrize(
    "smooth, decimate",
    [(0.0, 1.0), (0.5, 1.0), (0.0, 0.25), (0.5, 0.25), (1.0, 0.1), (0.3, 0.15)],
)
def test_sphere_across_blocks_is_closed_with_its_volume(ball, smooth, decimate):
    labels, exact = ball
    result = mesh_labels(labels, SPACING, [ClassSpec(2, "ball")], smooth, decimate, block=BLOCK)
    (surface,) = result.surfaces
    stats = surface.stats
    assert stats["boundary_edges"] == 0
    assert stats["nonmanifold_edges"] == 0
    assert stats["closed"] and stats["pieces"] == 1
    assert abs(stats["volume"] / exact - 1) < 0.02
    # no duplicated vertices: every point is distinct and used
    assert len(np.unique(surface.points, axis=0)) == len(surface.points)
    assert np.bincount(surface.faces.ravel(), minlength=len(surface.points)).min() > 0
    # about the fraction of full-size triangles asked for
    full = mesh_class(labels, 2, 1, block=BLOCK)[1]
    assert 0.7 * decimate <= stats["triangles"] / len(full) <= 1.35 * decimate


def test_blocks_weld_to_the_same_surface_as_one_block(ball):
    labels, _ = ball
    whole, faces_whole, _ = mesh_class(labels, 2, 1, block=1000)
    split, faces_split, _ = mesh_class(labels, 2, 1, block=BLOCK)
    assert len(whole) == len(split) and len(faces_whole) == len(faces_split)
    assert np.array_equal(np.unique(whole, axis=0), np.unique(split, axis=0))
    assert edge_counts(faces_split)["closed"]


@pytest.mark.parametrize("f", [1, 2, 3])
def test_blocks_ending_one_voxel_short_are_not_meshed_twice(f):
    # sides of 1 + a multiple of the (reduced) block: a block's overlap reaches the last voxel
    block = 8 * f
    shape = tuple(n * 8 * f + f for n in (2, 3, 2))
    labels, _ = sphere_labels(shape, (1.0, 1.0, 1.0), 0.45 * min(shape))
    labels[:, :, -f:] = 2  # and a slab on the far border
    whole, faces_whole, count_whole = mesh_class(labels, 2, f, block=10_000)
    split, faces_split, count_split = mesh_class(labels, 2, f, block=block)
    assert len(faces_split) == len(faces_whole) and count_split == count_whole
    assert edge_counts(faces_split)["closed"]


def test_coordinates_in_real_units_and_volume_frame(ball):
    labels, _ = ball
    (surface,) = mesh_labels(labels, SPACING, [ClassSpec(2, "ball")], 0.0, 1.0, block=BLOCK).surfaces
    z, y, x = np.nonzero(labels == 2)
    # raw surfaces pass half a voxel outside the outermost voxel centres
    lo = np.array([x.min(), y.min(), z.min()]) * np.array(SPACING[::-1])
    hi = np.array([x.max(), y.max(), z.max()]) * np.array(SPACING[::-1])
    half = np.array(SPACING[::-1]) / 2
    assert np.allclose(surface.points.min(axis=0), lo - half, atol=1e-4)
    assert np.allclose(surface.points.max(axis=0), hi + half, atol=1e-4)


def test_two_touching_classes_each_closed():
    labels = np.ones((30, 40, 50), np.uint8)
    labels[5:25, 5:35, 5:25] = 2
    labels[5:25, 5:35, 25:45] = 3  # shares a face with class 2
    classes = [ClassSpec(2, "left", "#ff0000"), ClassSpec(3, "right", "#00ff00")]
    result = mesh_labels(labels, (1.0, 1.0, 1.0), classes, 0.5, 0.5, block=16)
    assert [s.name for s in result.surfaces] == ["left", "right"]
    for surface in result.surfaces:
        assert surface.stats["closed"] and surface.stats["pieces"] == 1
        assert abs(surface.stats["volume"] / (20 * 30 * 20) - 1) < 0.05
    left, right = result.surfaces
    assert left.points[:, 0].max() < right.points[:, 0].max()


def test_empty_class_gives_a_note_not_a_surface():
    labels = np.ones((20, 20, 20), np.uint8)
    labels[4:12, 4:12, 4:12] = 2
    result = mesh_labels(labels, (1, 1, 1), [ClassSpec(2, "bone"), ClassSpec(3, "teeth")], 0.5, 0.25)
    assert [s.name for s in result.surfaces] == ["bone"]
    assert any("teeth" in note and "no voxels" in note for note in result.notes)


def test_object_on_the_border_and_several_pieces_are_closed():
    labels = np.ones((24, 24, 24), np.uint8)
    labels[:10, :10, :10] = 2  # touches three faces of the volume
    labels[15:20, 15:20, 15:20] = 2
    (surface,) = mesh_labels(labels, (1, 1, 1), [ClassSpec(2, "x")], 0.0, 1.0, block=8).surfaces
    assert surface.stats["closed"] and surface.stats["pieces"] == 2


def test_small_object_survives_decimation():
    labels = np.ones((20, 20, 20), np.uint8)
    labels[9:10, 9:10, 9:10] = 2  # a single voxel vanishes in a 2x reduced mask
    (surface,) = mesh_labels(labels, (1, 1, 1), [ClassSpec(2, "speck")], 0.5, 0.25).surfaces
    assert surface.stats["closed"] and surface.stats["reduction"] == [1, 1, 1]


def test_reduction_factors_coarsen_the_finest_axis_first():
    fractions = (1.0, 0.75, 0.5, 0.25, 0.2, 0.15, 0.12, 0.0625)
    assert [reduction_factors(f) for f in fractions] == [
        (1, 1, 1), (1, 1, 2), (1, 2, 2), (2, 2, 2), (2, 2, 3), (2, 3, 3), (3, 3, 3), (4, 4, 4)
    ]
    # z voxels twice as long: z is coarsened last
    assert reduction_factors(0.5, (2.0, 1.0, 1.0)) == (1, 2, 2)
    assert reduction_factors(0.15, (2.0, 1.0, 1.0)) == (2, 3, 3)


def test_cancel_stops_meshing(ball):
    labels, _ = ball
    ctx = ProgressContext()
    seen = []

    def on_progress(fraction, message):
        seen.append(fraction)
        if len(seen) == 2:
            ctx.cancel()

    with pytest.raises(Cancelled):
        mesh_labels(labels, SPACING, [ClassSpec(2, "ball")], 0.5, 1.0, ctx.tee(on_progress), block=BLOCK)
    assert len(seen) < 10


@pytest.mark.parametrize("scan", ["shell_225x128x128.tif", "bone_128x128x128.tif"])
def test_real_scan_thresholded_gives_closed_surfaces(shared_data, scan):
    """Real micro-CT (complex, porous shapes) meshed in blocks: closed, its voxel volume kept."""
    import tifffile
    from skimage.filters import threshold_otsu

    image = tifffile.imread(shared_data / "microct" / scan)
    labels = (1 + (image > threshold_otsu(image))).astype(np.uint8)
    for smooth, decimate in ((0.5, 0.25), (1.0, 0.1)):
        (surface,) = mesh_labels(labels, (1.0, 1.0, 1.0), [ClassSpec(2, "solid")], smooth, decimate, block=48).surfaces
        assert surface.stats["boundary_edges"] == 0 and surface.stats["nonmanifold_edges"] == 0
        assert surface.stats["volume"] == pytest.approx(np.count_nonzero(labels == 2), rel=0.01)
