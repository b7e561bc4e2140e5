"""The bundled sample: a fossil-like phantom made by our own code, with its ground truth.

A drilled rock core (a cylinder of matrix in air) holds a chambered shell (a
hollow ellipsoid with septa) and a few bone fragments (capsules). The image
gets sediment texture, a blur (the scanner's point spread), CT-like noise and
a ring artefact around the rotation axis. Labels: 1 = background (matrix and
air), 2 = specimen (shell and bones). Deterministic for a seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

DEFAULT_SHAPE = (128, 256, 256)
DEFAULT_SEED = 0
#: Voxel size of the sample (z, y, x) in micrometres.
SAMPLE_SPACING = (20.0, 20.0, 20.0)
SAMPLE_UNIT = "um"
BACKGROUND, SPECIMEN = 1, 2

AIR, MATRIX, BONE = 2500.0, 14000.0, 30000.0
NOISE_SIGMA = 1400.0
RING_AMPLITUDE = 1800.0
SLAB = 16
#: Width (voxels) of the blurred edge between materials.
EDGE_WIDTH = 2.0
#: Distinct noise slices, shifted at random for each slice.
NOISE_BANK = 8


def _capsules(rng: np.random.Generator, shape: Sequence[int], count: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Bone fragments: segments (p0, p1) with a radius, in voxel coordinates, inside the core."""
    depth, height, width = shape
    side = min(height, width)
    centre = np.array([depth / 2, height / 2, width / 2])
    bones = []
    for index in range(count):
        angle = 2 * np.pi * (index + rng.uniform(0.1, 0.6)) / count
        radial = side * rng.uniform(0.30, 0.36)
        mid = centre + np.array([rng.uniform(-0.25, 0.25) * depth, radial * np.sin(angle), radial * np.cos(angle)])
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        half = side * rng.uniform(0.05, 0.09)
        radius = max(1.5, side * rng.uniform(0.012, 0.022))
        bones.append((mid - half * direction, mid + half * direction, radius))
    return bones


def _interp_matrix(fine: int, coarse: int) -> np.ndarray:
    """Linear interpolation weights (fine x coarse) from a coarse grid to a fine one."""
    pos = np.linspace(0.0, coarse - 1.0, fine)
    low = np.minimum(np.floor(pos).astype(int), coarse - 2)
    weight = (pos - low).astype(np.float32)
    matrix = np.zeros((fine, coarse), dtype=np.float32)
    matrix[np.arange(fine), low] = 1.0 - weight
    matrix[np.arange(fine), low + 1] += weight
    return matrix


def _ramp(distance: np.ndarray) -> np.ndarray:
    """Partial-volume blur of an edge: 1 well inside (distance < 0), 0 well outside."""
    return np.clip(0.5 - distance / EDGE_WIDTH, 0.0, 1.0)


def make_phantom(shape: Sequence[int] = DEFAULT_SHAPE, seed: int = DEFAULT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """A fossil-like CT phantom (uint16) and its labels (uint8: 1 background, 2 specimen).

    Edges are blurred analytically (a partial-volume ramp) rather than by a 3D
    convolution, and the noise comes from a small bank of shifted noise
    slices, so a 256 x 512 x 512 phantom takes seconds.
    """
    depth, height, width = (int(s) for s in shape)
    rng = np.random.default_rng(seed)
    side = min(height, width)
    cz, cy, cx = (depth - 1) / 2, (height - 1) / 2, (width - 1) / 2
    yy = (np.arange(height, dtype=np.float32) - cy)[:, None]
    xx = (np.arange(width, dtype=np.float32) - cx)[None, :]
    core = _ramp(np.sqrt(yy**2 + xx**2) - 0.46 * side)  # the drilled rock core
    # the shell: semi-axes (z, y, x), wall thickness as a fraction of the radius, septa along x
    axes = np.array([0.36 * depth, 0.24 * side, 0.17 * side], dtype=np.float32)
    scale = float(axes[1:].mean())
    wall = max(0.09, 2.5 / float(axes.min()))
    septa = np.linspace(-0.55, 0.55, 4) * axes[2]
    septum_half = max(0.8, 0.012 * side)
    bones = _capsules(rng, shape, count=5)
    # sediment texture: a coarse random field, linearly upsampled by matrix products
    coarse = rng.normal(size=(max(2, depth // 16 + 1), max(2, height // 16 + 1), max(2, width // 16 + 1)))
    coarse = coarse.astype(np.float32)
    mz = _interp_matrix(depth, coarse.shape[0])
    my = _interp_matrix(height, coarse.shape[1])
    mx = _interp_matrix(width, coarse.shape[2])
    texture_yx = np.einsum("yb,abc,xc->ayx", my, coarse, mx, optimize=True).reshape(coarse.shape[0], -1)
    noise_bank = rng.standard_normal(size=(NOISE_BANK, height, width), dtype=np.float32) * NOISE_SIGMA
    shifts = rng.integers(0, max(height, width), size=(depth, 2))
    radius_map = np.sqrt(yy**2 + xx**2)
    rings = np.zeros((height, width), dtype=np.float32)
    for ring_radius in rng.uniform(0.1, 0.45, size=4) * side:
        rings += rng.choice([-1.0, 1.0]) * RING_AMPLITUDE * np.exp(-((radius_map - ring_radius) ** 2) / 1.5)

    image = np.empty((depth, height, width), dtype=np.uint16)
    labels = np.empty((depth, height, width), dtype=np.uint8)
    for z0 in range(0, depth, SLAB):
        z1 = min(depth, z0 + SLAB)
        n = z1 - z0
        texture = (mz[z0:z1] @ texture_yx).reshape(n, height, width)
        specimen = np.zeros((n, height, width), dtype=np.float32)
        chamber = np.zeros((n, height, width), dtype=np.float32)
        zz = (np.arange(z0, z1, dtype=np.float32) - cz)[:, None, None]
        r = np.sqrt((zz / axes[0]) ** 2 + (yy / axes[1]) ** 2 + (xx / axes[2]) ** 2)
        outer = _ramp((r - 1.0) * scale)
        inner = _ramp((r - (1.0 - wall)) * scale)
        np.maximum(specimen, outer - inner, out=specimen)
        chamber += inner
        for sx in septa:
            curve = 0.35 * axes[2] * (yy / axes[1]) ** 2  # septa bow like an ammonite's
            np.maximum(specimen, inner * _ramp(np.abs(xx - sx + curve) - septum_half), out=specimen)
        for p0, p1, radius in bones:
            _add_capsule(specimen, z0, p0, p1, radius)
        specimen *= core[None]
        base = AIR + (MATRIX - AIR + 1800.0 * texture) * core[None] - 1500.0 * chamber * (1.0 - specimen)
        block = base * (1.0 - specimen) + (BONE + 1200.0 * texture) * specimen
        for i in range(n):
            dy, dx = shifts[z0 + i]
            block[i] += np.roll(noise_bank[(z0 + i) % NOISE_BANK], (int(dy), int(dx)), axis=(0, 1))
        block += rings[None]
        np.clip(block, 0, 65535, out=block)
        image[z0:z1] = np.rint(block)
        labels[z0:z1] = np.where(specimen >= 0.5, SPECIMEN, BACKGROUND)
    return image, labels


def _add_capsule(specimen: np.ndarray, z0: int, p0: np.ndarray, p1: np.ndarray, radius: float) -> None:
    """Max a capsule's blurred membership into ``specimen`` (a slab starting at z0), in its box only."""
    n, height, width = specimen.shape
    margin = radius + EDGE_WIDTH
    low = np.floor(np.minimum(p0, p1) - margin).astype(int)
    high = np.ceil(np.maximum(p0, p1) + margin).astype(int) + 1
    za, zb = max(low[0], z0), min(high[0], z0 + n)
    ya, yb = max(low[1], 0), min(high[1], height)
    xa, xb = max(low[2], 0), min(high[2], width)
    if za >= zb or ya >= yb or xa >= xb:
        return
    z = np.arange(za, zb, dtype=np.float32)[:, None, None]
    y = np.arange(ya, yb, dtype=np.float32)[None, :, None]
    x = np.arange(xa, xb, dtype=np.float32)[None, None, :]
    d = (p1 - p0).astype(np.float32)
    t = np.clip(((z - p0[0]) * d[0] + (y - p0[1]) * d[1] + (x - p0[2]) * d[2]) / float(d @ d), 0.0, 1.0)
    dist = np.sqrt((z - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (x - p0[2] - t * d[2]) ** 2)
    view = specimen[za - z0 : zb - z0, ya:yb, xa:xb]
    np.maximum(view, _ramp(dist - radius), out=view)


@dataclass(frozen=True)
class SampleFiles:
    """The sample's image (an ImageJ TIFF with its voxel size) and ground-truth labels."""

    image: Path
    labels: Path


def sample_paths(folder: Path, shape: Sequence[int] = DEFAULT_SHAPE, seed: int = DEFAULT_SEED) -> SampleFiles:
    stem = "fossil_" + "x".join(str(int(s)) for s in shape) + f"_seed{seed}"
    return SampleFiles(folder / f"{stem}.tif", folder / f"{stem}_labels.tif")


def labels_path_for(image_path: str | Path) -> Path:
    """The ground-truth file that belongs to a sample image."""
    path = Path(image_path)
    return path.with_name(path.stem + "_labels.tif")


def write_sample(
    workspace_root: str | Path, shape: Sequence[int] = DEFAULT_SHAPE, seed: int = DEFAULT_SEED
) -> SampleFiles:
    """Write the sample into ``<workspace>/samples/`` once; later calls reuse the files."""
    import tifffile

    folder = Path(workspace_root) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    files = sample_paths(folder, shape, seed)
    if files.image.is_file() and files.labels.is_file():
        return files
    image, labels = make_phantom(shape, seed)
    z, y, x = SAMPLE_SPACING
    for data, target in ((labels, files.labels), (image, files.image)):
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tifffile.imwrite(
            tmp, data, imagej=True, resolution=(1.0 / x, 1.0 / y),
            metadata={"spacing": z, "unit": "micron", "axes": "ZYX"},
        )
        os.replace(tmp, target)
    return files
