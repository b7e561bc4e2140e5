"""Closed surfaces from a label volume, one per class, built block by block.

Axis convention: label arrays are (z, y, x); a surface's points are VTK
(x, y, z) = (array x index * spacing_x, y index * spacing_y, z index *
spacing_z), in the job's unit. The centre of voxel (0, 0, 0) is the origin,
so a surface lines up with the volume it came from.

How a class's surface is made:

1. *Reduce* (decimation): for a target fraction ``F < 1`` of triangles, the
   class mask is first averaged over ``f x f x f`` voxels (majority vote) with
   the largest whole ``f`` with ``1 / f**2 >= F``; a surface has about
   ``1 / f**2`` of the triangles of the full-size one. Meshing a reduced mask
   keeps surfaces closed, unlike most edge-collapse decimators.
2. *Mesh* each block (with one voxel of overlap) with VTK's
   ``vtkDiscreteFlyingEdges3D``; the volume is padded with "outside", so
   objects touching its border are closed too. Discrete vertices sit on edge
   midpoints, so the same vertex from two blocks has exactly the same
   coordinates: blocks are welded by those, without seams or duplicates.
3. *Smooth* the welded surface with a windowed-sinc filter (a low-pass filter
   that barely changes the enclosed volume), strength 0 (off) to 1.
4. *Decimate* the rest of the way to ``F`` with ``vtkDecimatePro`` preserving
   topology; if that would leave the surface open, that step is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from app.core.progress import ProgressContext

#: Default side of a meshing block, in (reduced) voxels.
BLOCK = 128
DEFAULT_SMOOTH = 0.5
DEFAULT_DECIMATE = 0.25


@dataclass(frozen=True)
class ClassSpec:
    """A label class to mesh."""

    value: int
    name: str
    color: str = "#888888"


@dataclass
class Surface:
    """A triangle surface of one class: points (N, 3) float32 in x, y, z real units."""

    value: int
    name: str
    color: str
    points: np.ndarray
    faces: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class MeshResult:
    """The surfaces of a label volume, and notes (such as empty classes)."""

    surfaces: list[Surface]
    notes: list[str]
    params: dict[str, Any]


# -- reduction ----------------------------------------------------------------


def reduction_factor(fraction: float) -> int:
    """The largest whole f with 1/f**2 >= fraction (1 when no decimation)."""
    if fraction >= 1.0 or fraction <= 0.0:
        return 1
    return max(1, int(math.floor(1.0 / math.sqrt(fraction) + 1e-9)))


def _reduce_mask(block: np.ndarray, value: int, f: int) -> np.ndarray:
    """uint8 mask of ``block == value``, majority-averaged over f^3 voxels."""
    mask = block == value
    if f == 1:
        return mask.view(np.uint8)
    pad = [(0, (-s) % f) for s in mask.shape]
    if any(p[1] for p in pad):
        mask = np.pad(mask, pad)
    z, y, x = mask.shape
    counts = mask.reshape(z // f, f, y // f, f, x // f, f).sum(axis=(1, 3, 5), dtype=np.int32)
    return (2 * counts > f**3).astype(np.uint8)


# -- block meshing -----------------------------------------------------------


def _blocks(reduced_shape: Sequence[int], block: int) -> Iterator[tuple[int, int, int]]:
    for z in range(0, reduced_shape[0], block):
        for y in range(0, reduced_shape[1], block):
            for x in range(0, reduced_shape[2], block):
                yield z, y, x


def _flying_edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points (local x, y, z index) and triangles of the mask's value-1 surface."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D

    image = vtkImageData()
    image.SetDimensions(mask.shape[2], mask.shape[1], mask.shape[0])
    image.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(mask).ravel(), deep=False))
    fe = vtkDiscreteFlyingEdges3D()
    fe.SetInputData(image)
    fe.SetValue(0, 1)
    fe.ComputeNormalsOff()
    fe.ComputeGradientsOff()
    fe.ComputeScalarsOff()
    fe.Update()
    out = fe.GetOutput()
    if out.GetNumberOfPolys() == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    points = vtk_to_numpy(out.GetPoints().GetData()).copy()
    faces = vtk_to_numpy(out.GetPolys().GetConnectivityArray()).reshape(-1, 3).astype(np.int64)
    return points, faces


def _weld(points2: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge points with equal (integer, doubled) coordinates; returns points2, faces."""
    lo = points2.min(axis=0)
    span = points2.max(axis=0) - lo + 1
    shifted = points2 - lo
    keys = (shifted[:, 2] * span[1] + shifted[:, 1]) * span[0] + shifted[:, 0]
    unique_keys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return points2[first], inverse.reshape(-1)[faces]


def mesh_class(
    labels,
    value: int,
    f: int = 1,
    block: int = BLOCK,
    ctx: ProgressContext | None = None,
    ) -> tuple[np.ndarray, np.ndarray, int]:
    """The closed surface of ``labels == value`` in full-size voxel index units (x, y, z).

    ``labels`` is any (z, y, x) array that supports slicing (numpy, zarr).
    Blocks of ``block`` reduced voxels overlap by one; their surfaces are welded.
    Returns points, triangles and the class's voxel count.
    """
    shape = tuple(int(s) for s in labels.shape)
    reduced = tuple(-(-s // f) for s in shape)
    starts = list(_blocks(reduced, block))
    parts_points: list[np.ndarray] = []
    parts_faces: list[np.ndarray] = []
    offset = 0
    voxels = 0
    core = block * f
    for index, start in enumerate(starts):
        if ctx is not None:
            ctx.check_cancelled()
        stop = [min(s + block + 1, r) for s, r in zip(start, reduced)]
        full = tuple(slice(s * f, min(e * f, n)) for s, e, n in zip(start, stop, shape))
        chunk = np.asarray(labels[full])
        if chunk.size and (value == 0 or chunk.any()):
            voxels += int(np.count_nonzero(chunk[:core, :core, :core] == value))
            mask = _reduce_mask(chunk, value, f)
            if mask.any():
                before = [1 if s == 0 else 0 for s in start]
                after = [1 if e == r else 0 for e, r in zip(stop, reduced)]
                mask = np.pad(mask, list(zip(before, after)))
                points, faces = _flying_edges(mask)
                if len(faces):
                    # local (x, y, z) -> doubled reduced global index, exact integers
                    shift = np.array([start[2] - before[2], start[1] - before[1], start[0] - before[0]])
                    points2 = np.rint(points.astype(np.float64) * 2).astype(np.int64) + 2 * shift
                    parts_points.append(points2)
                    parts_faces.append(faces + offset)
                    offset += len(points2)
        if ctx is not None:
            ctx.report((index + 1) / len(starts), f"meshing blocks {index + 1}/{len(starts)}")
    if not parts_faces:
        return np.zeros((0, 3), np.float64), np.zeros((0, 3), np.int64), voxels
    points2, faces = _weld(np.concatenate(parts_points), np.concatenate(parts_faces))
    # reduced voxel k covers full voxels k*f .. k*f+f-1: its centre is k*f + (f-1)/2
    points = points2.astype(np.float64) * (f / 2.0) + (f - 1) / 2.0
    return points, faces, voxels


# -- vtk conversion, smoothing, decimation ----------------------------------


def to_polydata(points: np.ndarray, faces: np.ndarray):
    """A vtkPolyData of triangles from numpy arrays."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData

    vtk_points = vtkPoints()
    vtk_points.SetData(numpy_to_vtk(np.ascontiguousarray(points, dtype=np.float32), deep=True))
    cells = vtkCellArray()
    offsets = np.arange(0, 3 * len(faces) + 1, 3, dtype=np.int64)
    cells.SetData(
        numpy_to_vtkIdTypeArray(offsets, deep=True),
        numpy_to_vtkIdTypeArray(np.ascontiguousarray(faces, dtype=np.int64).ravel(), deep=True),
    )
    poly = vtkPolyData()
    poly.SetPoints(vtk_points)
    poly.SetPolys(cells)
    return poly


def from_polydata(poly) -> tuple[np.ndarray, np.ndarray]:
    """(points float32, triangles int64) of a triangle vtkPolyData."""
    from vtkmodules.util.numpy_support import vtk_to_numpy

    if poly.GetNumberOfPolys() == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    points = vtk_to_numpy(poly.GetPoints().GetData()).astype(np.float32)
    faces = vtk_to_numpy(poly.GetPolys().GetConnectivityArray()).astype(np.int64).reshape(-1, 3)
    return points, faces


def smooth(points: np.ndarray, faces: np.ndarray, strength: float, iterations: int = 20) -> np.ndarray:
    """Windowed-sinc smoothing (keeps volume and topology); 0 returns the points unchanged."""
    if strength <= 0 or len(faces) == 0:
        return points
    from vtkmodules.vtkFiltersCore import vtkWindowedSincPolyDataFilter

    strength = min(float(strength), 1.0)
    sinc = vtkWindowedSincPolyDataFilter()
    sinc.SetInputData(to_polydata(points, faces))
    sinc.SetNumberOfIterations(iterations)
    sinc.SetPassBand(10.0 ** (-0.5 - 3.0 * strength))
    sinc.NormalizeCoordinatesOn()
    sinc.BoundarySmoothingOff()
    sinc.FeatureEdgeSmoothingOff()
    sinc.NonManifoldSmoothingOn()
    sinc.Update()
    smoothed, _ = from_polydata(sinc.GetOutput())
    return smoothed


def vertex_normals(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (outward for a closed, consistently wound surface)."""
    p = points.astype(np.float64)
    cross = np.cross(p[faces[:, 1]] - p[faces[:, 0]], p[faces[:, 2]] - p[faces[:, 0]])
    normals = np.zeros_like(p)
    for k in range(3):
        for axis in range(3):
            normals[:, axis] += np.bincount(faces[:, k], weights=cross[:, axis], minlength=len(p))
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.maximum(length, 1e-30)


def signed_volume(points: np.ndarray, faces: np.ndarray) -> float:
    """Enclosed volume, positive for outward-facing triangles."""
    p = points.astype(np.float64)
    a, b, c = p[faces[:, 0]], p[faces[:, 1]], p[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum()) / 6.0


def match_volume(points: np.ndarray, faces: np.ndarray, target: float, max_shift: float) -> np.ndarray:
    """Move the surface along its normals so that it encloses ``target`` (shift capped)."""
    if len(faces) == 0 or target <= 0:
        return points
    p = points.astype(np.float64)
    sign = 1.0 if signed_volume(p, faces) >= 0 else -1.0
    normals = vertex_normals(p, faces) * sign
    total = 0.0
    for _ in range(3):
        volume = abs(signed_volume(p, faces))
        area = surface_stats_area(p, faces)
        if area <= 0:
            break
        step = (target - volume) / area
        step = float(np.clip(total + step, -max_shift, max_shift)) - total
        if abs(step) < 1e-9 * max_shift:
            break
        p = p + normals * step
        total += step
    return p.astype(points.dtype)


def surface_stats_area(points: np.ndarray, faces: np.ndarray) -> float:
    p = points.astype(np.float64)
    cross = np.cross(p[faces[:, 1]] - p[faces[:, 0]], p[faces[:, 2]] - p[faces[:, 0]])
    return 0.5 * float(np.linalg.norm(cross, axis=1).sum())


def decimate(points: np.ndarray, faces: np.ndarray, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """Topology-preserving decimation to about ``keep`` of the triangles.

    Returns the input unchanged when the result would not be closed.
    """
    if keep >= 0.99 or len(faces) < 100:
        return points, faces
    from vtkmodules.vtkFiltersCore import vtkDecimatePro

    pro = vtkDecimatePro()
    pro.SetInputData(to_polydata(points, faces))
    pro.SetTargetReduction(1.0 - max(keep, 0.01))
    pro.PreserveTopologyOn()
    pro.SplittingOff()
    pro.BoundaryVertexDeletionOff()
    pro.SetFeatureAngle(15.0)
    pro.Update()
    new_points, new_faces = from_polydata(pro.GetOutput())
    new_points, new_faces = drop_unused(new_points, new_faces)
    if not edge_counts(new_faces)["closed"] and edge_counts(faces)["closed"]:
        return points, faces
    return new_points, new_faces


def drop_unused(points: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove points no triangle uses."""
    used = np.zeros(len(points), bool)
    used[faces.ravel()] = True
    if used.all():
        return points, faces
    remap = np.cumsum(used) - 1
    return points[used], remap[faces]


# -- statistics ------------------------------------------------------------------


def edge_counts(faces: np.ndarray) -> dict[str, Any]:
    """Boundary edges (one triangle) and non-manifold edges (more than two)."""
    if len(faces) == 0:
        return {"boundary_edges": 0, "nonmanifold_edges": 0, "closed": False}
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges.sort(axis=1)
    keys = edges[:, 0].astype(np.int64) * (int(faces.max()) + 1) + edges[:, 1]
    _, counts = np.unique(keys, return_counts=True)
    boundary = int((counts == 1).sum())
    nonmanifold = int((counts > 2).sum())
    return {"boundary_edges": boundary, "nonmanifold_edges": nonmanifold, "closed": boundary == 0 and nonmanifold == 0}


def count_pieces(n_points: int, faces: np.ndarray) -> int:
    """Connected pieces of a triangle surface."""
    if len(faces) == 0:
        return 0
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n_points, n_points))
    n, labels = connected_components(graph, directed=False)
    used = np.unique(faces.ravel())
    return int(len(np.unique(labels[used])))


def surface_stats(points: np.ndarray, faces: np.ndarray) -> dict[str, Any]:
    """Triangles, area, enclosed volume, pieces, closedness of a surface."""
    p = points.astype(np.float64)
    a, b, c = p[faces[:, 0]], p[faces[:, 1]], p[faces[:, 2]]
    cross = np.cross(b - a, c - a)
    area = 0.5 * float(np.linalg.norm(cross, axis=1).sum())
    volume = abs(float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum()) / 6.0)
    stats: dict[str, Any] = {
        "triangles": int(len(faces)),
        "vertices": int(len(points)),
        "area": area,
        "volume": volume,
        "pieces": count_pieces(len(points), faces),
    }
    stats.update(edge_counts(faces))
    if len(points):
        stats["bounds"] = [[float(v) for v in p.min(axis=0)], [float(v) for v in p.max(axis=0)]]
    return stats


# -- the whole volume -----------------------------------------------------------------


def mesh_labels(
    labels,
    spacing: Sequence[float],
    classes: Sequence[ClassSpec],
    smooth_strength: float = DEFAULT_SMOOTH,
    decimate_fraction: float = DEFAULT_DECIMATE,
    ctx: ProgressContext | None = None,
    block: int = BLOCK,
) -> MeshResult:
    """One closed surface per class of a (z, y, x) label array; ``spacing`` is (z, y, x).

    A class without voxels gives no surface and a note.
    """
    ctx = ctx or ProgressContext()
    f = reduction_factor(decimate_fraction)
    scale = np.array([spacing[2], spacing[1], spacing[0]], dtype=np.float64)
    surfaces: list[Surface] = []
    notes: list[str] = []
    n = max(len(classes), 1)
    for i, spec in enumerate(classes):
        sub = ctx.sub(i / n, (i + 0.8) / n)
        points, faces, voxels = mesh_class(labels, spec.value, f, block, sub)
        factor = f
        if len(faces) == 0 and f > 1 and voxels:
            # too small to survive the reduction: mesh it at full size
            points, faces, voxels = mesh_class(labels, spec.value, 1, block, sub)
            factor = 1
        if len(faces) == 0:
            notes.append(f"class {spec.name!r} (value {spec.value}) has no voxels: no surface")
            continue
        ctx.check_cancelled()
        full_estimate = len(faces) * factor**2
        points = (points * scale).astype(np.float32)
        ctx.sub(i / n, (i + 1) / n).report(0.85, f"smoothing {spec.name}")
        points = smooth(points, faces, smooth_strength)
        ctx.check_cancelled()
        if decimate_fraction < 1.0:
            target = decimate_fraction * full_estimate
            if target < 0.97 * len(faces):
                ctx.sub(i / n, (i + 1) / n).report(0.9, f"decimating {spec.name}")
                points, faces = decimate(points, faces, target / len(faces))
        if factor > 1 or smooth_strength > 0:
            # keep the class's voxel volume: shift along normals by at most half a reduced voxel
            voxel_volume = float(np.prod(scale))
            points = match_volume(points, faces, voxels * voxel_volume, 0.5 * factor * float(scale.min()))
        stats = surface_stats(points, faces)
        stats["voxels"] = voxels
        stats["voxel_volume"] = voxels * float(np.prod(scale))
        stats["reduction_factor"] = factor
        stats["fraction"] = round(len(faces) / full_estimate, 4)
        surfaces.append(Surface(spec.value, spec.name, spec.color, points, faces, stats))
        ctx.sub(i / n, (i + 1) / n).report(1.0, f"meshed {spec.name}")
    params = {"smooth": smooth_strength, "decimate": decimate_fraction, "reduction_factor": f, "block": block}
    return MeshResult(surfaces, notes, params)
