"""The converted volume on disk: a zarr v3 multiscale group (OME-Zarr style).

Layout of ``volume.zarr``: arrays ``"0"`` (full size), ``"1"`` (downsampled by
2 along each axis), ... until the largest side is at most 256. Group attributes
hold the voxel size and unit under ``"strata"`` and OME-NGFF ``"multiscales"``.
Arrays are (z, y, x).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

CHUNK = (64, 64, 64)
MAX_COARSE_SIDE = 256


def default_compressor() -> BloscCodec:
    return BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.bitshuffle)


def level_shapes(shape: Sequence[int], max_side: int = MAX_COARSE_SIDE) -> list[tuple[int, ...]]:
    """Shapes of the pyramid: halve (rounding up) until the largest side <= max_side."""
    shapes = [tuple(int(s) for s in shape)]
    while max(shapes[-1]) > max_side:
        shapes.append(tuple(max(1, (s + 1) // 2) for s in shapes[-1]))
    return shapes


def downsample2(block: np.ndarray) -> np.ndarray:
    """Mean of 2x2x2 neighbourhoods (edge-padded to even sizes), in the input dtype.

    Integers are summed exactly (int32/int64) and rounded half up; floats are
    averaged in float32 (float64 stays float64).
    """
    block = np.asarray(block)
    pad = [(0, s % 2) for s in block.shape]
    if any(p[1] for p in pad):
        block = np.pad(block, pad, mode="edge")
    integer = np.issubdtype(block.dtype, np.integer) or block.dtype == np.bool_
    if integer:
        acc = np.int32 if block.dtype.itemsize <= 2 else np.int64
    else:
        acc = np.float64 if block.dtype == np.float64 else np.float32
    total = np.add(block[0::2], block[1::2], dtype=acc)
    total = total[:, 0::2] + total[:, 1::2]
    total = total[:, :, 0::2] + total[:, :, 1::2]
    if integer:
        total += 4
        total >>= 3  # floor division by 8: the mean rounded half up
    else:
        total *= 0.125
    return total.astype(block.dtype)


@dataclass
class Volume:
    """An opened multiscale volume."""

    path: Path
    levels: list[zarr.Array]
    spacing: tuple[float, float, float]
    unit: str
    attrs: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.levels[0].shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return self.levels[0].dtype

    def level_spacing(self, level: int) -> tuple[float, float, float]:
        """Voxel size of a level, from the ratio of its shape to level 0."""
        return tuple(
            sp * full / part
            for sp, full, part in zip(self.spacing, self.shape, self.levels[level].shape)
        )  # type: ignore[return-value]


def multiscale_attrs(shapes: list[tuple[int, ...]], spacing, unit: str, dtype) -> dict:
    """Group attributes describing the pyramid."""
    datasets = []
    for level, shp in enumerate(shapes):
        scale = [float(sp) * shapes[0][i] / shp[i] for i, sp in enumerate(spacing)]
        datasets.append(
            {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    axis_unit = unit or None
    return {
        "strata": {
            "spacing": [float(s) for s in spacing],
            "unit": unit,
            "shape": list(shapes[0]),
            "dtype": str(np.dtype(dtype)),
            "levels": len(shapes),
        },
        "multiscales": [
            {
                "version": "0.4",
                "name": "volume",
                "axes": [
                    {"name": a, "type": "space", **({"unit": axis_unit} if axis_unit else {})}
                    for a in "zyx"
                ],
                "datasets": datasets,
            }
        ],
    }


def create_volume(
    path: str | Path,
    shape: Sequence[int],
    dtype,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    unit: str = "",
    chunks: Sequence[int] = CHUNK,
) -> list[zarr.Array]:
    """Create (overwriting) an empty multiscale group; returns its level arrays."""
    shapes = level_shapes(shape)
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    arrays = []
    for level, shp in enumerate(shapes):
        arrays.append(
            group.create_array(
                str(level),
                shape=shp,
                dtype=np.dtype(dtype),
                chunks=tuple(min(c, s) for c, s in zip(chunks, shp)),
                compressors=[default_compressor()],
                fill_value=0,
            )
        )
    group.attrs.update(multiscale_attrs(shapes, spacing, unit, dtype))
    return arrays


def write_volume(
    path: str | Path, data: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0), unit: str = ""
) -> Volume:
    """Write an in-memory array as a multiscale volume (small volumes, tests, the sample)."""
    arrays = create_volume(path, data.shape, data.dtype, spacing, unit)
    level = np.asarray(data)
    for level_index, array in enumerate(arrays):
        if level_index:
            level = downsample2(level)
        array[...] = level
    return open_volume(path)


def open_volume(path: str | Path) -> Volume:
    """Open ``volume.zarr`` read-only."""
    group = zarr.open_group(str(path), mode="r")
    meta = dict(group.attrs.get("strata", {}))
    count = int(meta.get("levels", 0)) or len(list(group.array_keys()))
    levels = [group[str(i)] for i in range(count)]
    spacing = tuple(float(s) for s in meta.get("spacing", (1.0, 1.0, 1.0)))
    return Volume(Path(path), levels, spacing, str(meta.get("unit", "")), dict(group.attrs))
