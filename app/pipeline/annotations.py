"""Painted labels on disk: ``annotations.zarr``, a sparse zarr v3 array.

Format (other stages rely on it): a zarr v3 *array* of uint8 with the shape of
the volume's level 0, chunks (64, 64, 64), fill value 0; chunks that hold no
paint are not stored. 0 means "not painted", 1..N are the job's label classes.

This module holds the array helpers (open, read/write slices and regions,
statistics over the stored chunks), :class:`AnnotationBuffer` (a write-back
cache that an editor paints into and flushes on each stroke), the import of a
label volume (TIFF stack, multi-page TIFF, zarr, npy) and the export.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import zarr

from app.core.progress import ProgressContext, StageError
from app.pipeline.volume import default_compressor

CHUNKS = (64, 64, 64)
#: Painted chunks an AnnotationBuffer keeps decoded for the next slices (bytes).
CACHE_BYTES = 16 * 2**20
DTYPE = np.uint8
AXES = "zyx"
TIFF_SUFFIXES = (".tif", ".tiff")

Selection = tuple[slice, slice, slice]


# -- the array ----------------------------------------------------------------
def open_annotations(path: str | Path, shape: Sequence[int] | None = None, create: bool = False) -> zarr.Array:
    """Open ``annotations.zarr`` for reading and writing.

    With ``create``, a missing array is created with ``shape``. A ``shape``
    that differs from the stored one raises :class:`StageError`.
    """
    path = Path(path)
    if (path / "zarr.json").is_file():
        try:
            array = zarr.open_array(str(path), mode="r+")
        except Exception as exc:  # noqa: BLE001 - a damaged file is a user-facing problem
            raise StageError(f"{path}: cannot open the annotations ({exc})") from exc
        if shape is not None and tuple(array.shape) != tuple(int(s) for s in shape):
            raise StageError(
                f"{path}: annotations have shape {tuple(array.shape)}, the volume {tuple(shape)}"
            )
        return array
    if not create:
        raise StageError(f"{path}: no annotations yet (nothing has been painted)")
    if shape is None:
        raise ValueError("creating annotations needs the volume's shape")
    shape = tuple(int(s) for s in shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    return zarr.create_array(
        str(path),
        shape=shape,
        chunks=tuple(min(c, max(1, s)) for c, s in zip(CHUNKS, shape)),
        dtype=DTYPE,
        fill_value=0,
        compressors=[default_compressor()],
        config={"write_empty_chunks": False},
        zarr_format=3,
        overwrite=True,
    )


def chunk_grid(array: zarr.Array) -> tuple[int, int, int]:
    """Number of chunks along z, y, x."""
    return tuple(-(-s // c) for s, c in zip(array.shape, array.chunks))  # type: ignore[return-value]


def chunk_selection(array: zarr.Array, index: Sequence[int]) -> Selection:
    """The region of the array that chunk ``index`` covers."""
    return tuple(
        slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, array.chunks, array.shape)
    )  # type: ignore[return-value]


def _array_dir(array: zarr.Array) -> Path | None:
    root = getattr(array.store, "root", None)
    return None if root is None else Path(str(root)) / array.path


def stored_chunks(array: zarr.Array) -> list[tuple[int, int, int]]:
    """Indices of the chunks that are stored (hold paint), sorted."""
    folder = _array_dir(array)
    found: list[tuple[int, int, int]] = []
    if folder is not None:
        base = folder / "c"
        if not base.is_dir():
            return []
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(base).parts
            if len(rel) != 2:
                continue
            for name in files:
                if name.isdigit():
                    found.append((int(rel[0]), int(rel[1]), int(name)))
        return sorted(found)
    # Not on a local disk: ask every chunk (slow, but correct).
    for index in itertools.product(*(range(n) for n in chunk_grid(array))):
        block = array[chunk_selection(array, index)]
        if block.any():
            found.append(index)  # type: ignore[arg-type]
    return found


def iter_stored_chunks(array: zarr.Array) -> Iterator[tuple[Selection, np.ndarray]]:
    """(region, data) of every stored chunk."""
    for index in stored_chunks(array):
        selection = chunk_selection(array, index)
        yield selection, array[selection]


def read_slice(array, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` of plane ``axis`` (0 = z, 1 = y, 2 = x) as a 2D array."""
    _check_index(array.shape, axis, index)
    key = [slice(None)] * 3
    key[axis] = int(index)
    return np.asarray(array[tuple(key)])


def write_slice(array: zarr.Array, axis: int, index: int, data: np.ndarray) -> None:
    """Replace slice ``index`` of plane ``axis`` with ``data`` (2D)."""
    _check_index(array.shape, axis, index)
    expected = tuple(s for a, s in enumerate(array.shape) if a != axis)
    data = np.asarray(data)
    if data.shape != expected:
        raise StageError(f"a {AXES[axis]} slice has shape {expected}, not {data.shape}")
    key = [slice(None)] * 3
    key[axis] = int(index)
    array[tuple(key)] = data.astype(DTYPE, copy=False)


def write_region(array: zarr.Array, selection: Sequence[slice], data: np.ndarray | int) -> None:
    """Write ``data`` (an array of the region's shape, or one value) into ``selection``."""
    array[tuple(selection)] = data if np.isscalar(data) else np.asarray(data).astype(DTYPE, copy=False)


def _check_index(shape: Sequence[int], axis: int, index: int) -> None:
    if axis not in (0, 1, 2):
        raise StageError(f"plane {axis!r} is not one of 0 (z), 1 (y), 2 (x)")
    if not 0 <= int(index) < shape[axis]:
        raise StageError(
            f"{AXES[axis]} slice {index} is out of range: the volume has {shape[axis]} {AXES[axis]} slices"
        )


# -- statistics -----------------------------------------------------------------
class AnnotationStats:
    """Voxels per value and painted voxels per slice of each plane, kept incrementally."""

    def __init__(self, shape: Sequence[int]) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.counts = np.zeros(256, dtype=np.int64)
        self.profiles = [np.zeros(s, dtype=np.int64) for s in self.shape]

    @classmethod
    def scan(cls, array: zarr.Array) -> "AnnotationStats":
        """Statistics of every stored chunk of ``array``."""
        stats = cls(array.shape)
        regions = [chunk_selection(array, index) for index in stored_chunks(array)]
        blocks = _reader_pool().map(lambda region: np.asarray(array[region]), regions) if len(regions) > 1 else (
            np.asarray(array[region]) for region in regions)
        for selection, block in zip(regions, blocks):  # read several at a time: zarr's waits overlap
            stats.add(selection, block)
        return stats

    def add(self, selection: Sequence[slice], block: np.ndarray, sign: int = 1) -> None:
        """Count ``block`` (at ``selection``) in, or out with ``sign=-1``."""
        block = np.asarray(block)
        if not block.any():
            return
        self.counts += sign * np.bincount(block.ravel(), minlength=256)[:256]
        painted = block > 0
        for axis in range(3):
            others = tuple(a for a in range(3) if a != axis)
            start = selection[axis].start or 0
            profile = painted.sum(axis=others)
            self.profiles[axis][start : start + profile.size] += sign * profile

    def class_counts(self) -> dict[int, int]:
        """Painted voxels per value (values with paint only)."""
        return {int(v): int(n) for v, n in enumerate(self.counts) if v and n}

    def painted_slices(self, axis: int) -> list[int]:
        """Indices of the slices of plane ``axis`` that carry paint."""
        return [int(i) for i in np.flatnonzero(self.profiles[axis])]

    @property
    def total(self) -> int:
        return int(self.counts[1:].sum())


def stroke_axes(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The painted voxels of a block (n, 3) and, for each, the axes its stroke may have been laid across.

    Paint laid on a slice leaves a voxel's two neighbours along the slice's
    normal unpainted while neighbours within the slice are painted, so the
    normal is among the axes with the fewest painted neighbours: a boolean
    (n, 3) of them. One axis decides; a line one voxel wide leaves two, a lone
    voxel or paint on consecutive slices three, for :func:`strongest_plane`.
    """
    painted = np.asarray(block) > 0
    coords = np.argwhere(painted)
    padded = np.pad(painted, 1).view(np.uint8)  # outside the block counts as unpainted
    strides = np.array([padded.shape[1] * padded.shape[2], padded.shape[2], 1])
    flat, at = padded.ravel(), (coords + 1) @ strides
    counts = np.stack([flat[at - strides[a]] + flat[at + strides[a]] for a in range(3)], 1)
    return coords, counts == counts.min(1, initial=2)[:, None]


def painted_voxels(region: Selection, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The painted voxels of chunk ``data`` at ``region``: coordinates (n, 3) in the volume,
    label values, and the axes their strokes may have been laid across (:func:`stroke_axes`)."""
    found, allowed = stroke_axes(data)
    offset = np.array([sl.start for sl in region], dtype=np.int64)
    return found + offset, data[tuple(found.T)], allowed


def reread_changed_chunks(array: zarr.Array, cache: Mapping[tuple[int, int, int], tuple],
                          read: Callable[[Selection, np.ndarray], Any]) -> dict[tuple[int, int, int], tuple]:
    """For each stored chunk of ``array`` (on a local disk), ``(stamp, read(region, data))``.

    Entries of ``cache`` whose chunk file has the same modification time and size
    are kept as they are; the other chunks are read, one at a time. A chunk whose
    file is gone by the time it is looked at is left out.
    """
    folder = _array_dir(array)
    fresh = {}
    for index in stored_chunks(array):
        try:
            info = folder.joinpath("c", *(str(i) for i in index)).stat()
        except OSError:
            continue
        stamp = (info.st_mtime_ns, info.st_size)
        cached = cache.get(index)
        if cached is not None and cached[0] == stamp:
            fresh[index] = cached
        else:
            region = chunk_selection(array, index)
            fresh[index] = (stamp, read(region, np.asarray(array[region])))
    return fresh


def strongest_plane(coords: np.ndarray, profiles: Sequence[np.ndarray], allowed: np.ndarray | None = None) -> np.ndarray:
    """For each voxel (n, 3), the axis of the one of its three planes holding the most paint.

    ``profiles[a][i]`` is the paint on slice ``i`` of plane ``a``; only the axes
    ``allowed`` (n, 3) compete, if given; ties go to z, then y, then x.
    """
    per_axis = np.stack([profiles[a][coords[:, a]] for a in range(3)], 1).astype(np.int64)
    if allowed is not None:
        per_axis = np.where(allowed, per_axis, -1)
    return np.argmax(per_axis, 1)


#: Above this much paint the summary does not look for the planes painted on.
MAX_VOXELS_FOR_PLANES = 8_000_000


class PlaneFinder:
    """The slices of each plane that paint was laid on (:func:`stroke_axes`, then :func:`strongest_plane`).

    Keeps, per stored chunk, the slices its decided voxels were laid on and its
    undecided voxels (6 bytes each), and re-reads only the chunks written since
    the last call, so asking after every stroke costs little. Use it from one
    thread at a time.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._chunks: dict[tuple[int, int, int], tuple] = {}  # stamp, (laid_on, offset, undecided, allowed)

    def planes(self, profiles: Sequence[np.ndarray]) -> dict[int, list[int]] | None:
        """Indices per plane (0 = z, 1 = y, 2 = x); None above :data:`MAX_VOXELS_FOR_PLANES` painted voxels."""
        if int(np.sum(profiles[0])) > MAX_VOXELS_FOR_PLANES:
            self._chunks = {}
            return None
        # one chunk at a time: the shared reader threads stay free for painting
        self._chunks = reread_changed_chunks(zarr.open_array(str(self.path), mode="r"), self._chunks, _laid_on)
        marks = [np.zeros(len(p), dtype=bool) for p in profiles]
        for _stamp, (laid_on, offset, undecided, allowed) in self._chunks.values():
            for a in range(3):
                marks[a][laid_on[a]] = True
            if len(undecided):
                undecided = undecided + offset
                axis = strongest_plane(undecided, profiles, allowed)
                for a in range(3):
                    marks[a][undecided[axis == a, a]] = True
        return {a: [int(i) for i in np.flatnonzero(marks[a])] for a in range(3)}


def _laid_on(region: Selection, data: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """What :class:`PlaneFinder` keeps of a chunk: the slices its decided voxels lie on,
    its offset, and its undecided voxels (in-chunk coordinates) with their allowed axes."""
    coords, allowed = stroke_axes(data)
    offset = np.array([sl.start for sl in region])
    decided = allowed.sum(1) == 1
    laid_on = [np.unique(coords[decided & allowed[:, a], a]) + offset[a] for a in range(3)]
    local = np.uint8 if max(data.shape) <= 256 else np.uint16
    return laid_on, offset, coords[~decided].astype(local), allowed[~decided]


def class_counts(array: zarr.Array) -> dict[int, int]:
    """Painted voxels per class value (values without paint are left out)."""
    return AnnotationStats.scan(array).class_counts()


def painted_slices(array: zarr.Array) -> dict[int, list[int]]:
    """For each plane (0 = z, 1 = y, 2 = x), the slice indices that carry paint."""
    stats = AnnotationStats.scan(array)
    return {axis: stats.painted_slices(axis) for axis in range(3)}


def remove_value(array: zarr.Array, value: int) -> int:
    """Unpaint every voxel of ``value``; returns how many there were."""
    removed = 0
    for selection, block in iter_stored_chunks(array):
        hit = block == value
        n = int(hit.sum())
        if n:
            block[hit] = 0
            array[selection] = block
            removed += n
    return removed


def coarse_labels(array: zarr.Array, max_side: int = 256) -> tuple[np.ndarray, int]:
    """A small copy for 3D display: each ``f``-cube becomes its largest value; returns (labels, f)."""
    factor = 1
    while max(-(-s // factor) for s in array.shape) > max_side:
        factor *= 2
    out = np.zeros(tuple(-(-s // factor) for s in array.shape), DTYPE)
    for selection, block in iter_stored_chunks(array):
        pad = [(0, -s % factor) for s in block.shape]
        if any(p[1] for p in pad):
            block = np.pad(block, pad)
        z, y, x = (s // factor for s in block.shape)
        pooled = block.reshape(z, factor, y, factor, x, factor).max(axis=(1, 3, 5))
        start = tuple(sl.start // factor for sl in selection)
        target = out[start[0] : start[0] + z, start[1] : start[1] + y, start[2] : start[2] + x]
        np.maximum(target, pooled[: target.shape[0], : target.shape[1], : target.shape[2]], out=target)
    return out, factor


# -- the painting buffer -----------------------------------------------------------
_READER_POOL = None


def _reader_pool():
    """A few threads that read chunks at the same time (zarr's waits overlap)."""
    global _READER_POOL
    if _READER_POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _READER_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="annotation-read")
    return _READER_POOL


class AnnotationBuffer:
    """An array-like view of the annotations that keeps edits in memory until :meth:`flush`.

    Reads come from the zarr array with unflushed chunks laid over them; writes
    (basic indexing: integers and slices) load the chunks they touch into
    memory. :meth:`flush` writes the changed chunks to disk and updates
    :attr:`stats`. Memory is only ever used for the chunks a stroke touched.
    """

    def __init__(self, array: zarr.Array, stats: AnnotationStats | None = None) -> None:
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(DTYPE)
        self.ndim = 3
        self.chunks = tuple(array.chunks)
        self.stats = stats if stats is not None else AnnotationStats.scan(array)
        self._edited: dict[tuple[int, int, int], np.ndarray] = {}
        self._original: dict[tuple[int, int, int], np.ndarray] = {}
        #: Chunks on disk: reads touch only these (a missing chunk costs zarr a lookup each).
        self._stored: set[tuple[int, int, int]] = set(stored_chunks(array))
        #: Stored chunks read lately, as on disk (least recently used first).
        self._cache: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()
        chunk_bytes = int(np.prod(self.chunks)) * self.dtype.itemsize
        self._cache_chunks = max(8, CACHE_BYTES // chunk_bytes)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def dirty(self) -> bool:
        return bool(self._edited)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        data = self[:, :, :]
        return data if dtype is None else data.astype(dtype)

    # indexing
    def _normalize(self, key) -> tuple[list[slice], list[int]]:
        """Key -> a 3D box of slices (step 1) and the axes indexed by an integer."""
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (3 - len(key) + 1) + key[at + 1 :]
        key = key + (slice(None),) * (3 - len(key))
        box: list[slice] = []
        dropped: list[int] = []
        for axis, (k, size) in enumerate(zip(key, self.shape)):
            if isinstance(k, slice):
                start, stop, step = k.indices(size)
                if step != 1:
                    raise IndexError("annotation buffers take slices with step 1 only")
                box.append(slice(start, max(start, stop)))
            elif isinstance(k, (int, np.integer)) or (isinstance(k, np.ndarray) and k.ndim == 0):
                i = int(k)
                if i < 0:
                    i += size
                if not 0 <= i < size:
                    raise IndexError(f"index {int(k)} is out of range for axis {axis} of size {size}")
                box.append(slice(i, i + 1))
                dropped.append(axis)
            else:
                raise IndexError(f"annotation buffers take integers and slices, not {type(k).__name__}")
        return box, dropped

    def _chunks_in(self, box: Sequence[slice]) -> Iterator[tuple[int, int, int]]:
        ranges = [
            range(b.start // c, -(-b.stop // c)) if b.stop > b.start else range(0)
            for b, c in zip(box, self.chunks)
        ]
        return itertools.product(*ranges)  # type: ignore[return-value]

    @staticmethod
    def _overlap(box: Sequence[slice], region: Sequence[slice]) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
        """(slices into box, slices into region) of their intersection, or None."""
        in_box, in_region = [], []
        for b, r in zip(box, region):
            lo, hi = max(b.start, r.start), min(b.stop, r.stop)
            if lo >= hi:
                return None
            in_box.append(slice(lo - b.start, hi - b.start))
            in_region.append(slice(lo - r.start, hi - r.start))
        return tuple(in_box), tuple(in_region)

    def __getitem__(self, key) -> np.ndarray:
        box, dropped = self._normalize(key)
        data = np.zeros(tuple(b.stop - b.start for b in box), DTYPE)
        indices = [index for index in self._chunks_in(box) if index in self._edited or index in self._stored]
        blocks = self._blocks(indices)
        for index in indices:
            hit = self._overlap(box, chunk_selection(self.array, index))
            if hit is not None:
                data[hit[0]] = blocks[index][hit[1]]
        if dropped:
            data = data[tuple(0 if a in dropped else slice(None) for a in range(3))]
        return data

    def _blocks(self, indices: Sequence[tuple[int, int, int]]) -> dict[tuple[int, int, int], np.ndarray]:
        """Whole chunks: edited ones from memory, stored ones from the cache or read from disk together."""
        blocks: dict[tuple[int, int, int], np.ndarray] = {}
        missing = []
        for index in indices:
            block = self._edited.get(index)
            if block is None:
                block = self._cache.get(index)
                if block is not None:
                    self._cache.move_to_end(index)
            if block is None:
                missing.append(index)
            else:
                blocks[index] = block
        if missing:
            regions = [chunk_selection(self.array, index) for index in missing]
            if len(missing) == 1:
                read = [np.asarray(self.array[regions[0]])]
            else:  # one zarr call per chunk, several at a time: their waits overlap
                read = list(_reader_pool().map(lambda region: np.asarray(self.array[region]), regions))
            for index, block in zip(missing, read):
                blocks[index] = block
                self._remember(index, block)
        return blocks

    def _remember(self, index: tuple[int, int, int], block: np.ndarray) -> None:
        """Keep a chunk as stored on disk in the cache (the least recently used ones leave)."""
        self._cache[index] = block
        self._cache.move_to_end(index)
        while len(self._cache) > self._cache_chunks:
            self._cache.popitem(last=False)

    def __setitem__(self, key, value) -> None:
        box, dropped = self._normalize(key)
        box_shape = tuple(b.stop - b.start for b in box)
        value = np.asarray(value, dtype=DTYPE)
        if value.ndim:
            value = value.reshape(tuple(s for a, s in enumerate(box_shape) if a not in dropped))
            value = np.expand_dims(value, tuple(dropped)) if dropped else value
        value = np.broadcast_to(value, box_shape)
        for index in self._chunks_in(box):
            region = chunk_selection(self.array, index)
            hit = self._overlap(box, region)
            if hit is None:
                continue
            block = self._edited.get(index)
            if block is None:
                if index in self._stored:
                    original = self._blocks([index])[index]
                else:
                    original = np.zeros(tuple(r.stop - r.start for r in region), DTYPE)
                self._original[index] = original
                block = original.copy()
                self._edited[index] = block
            block[hit[1]] = value[hit[0]]

    # persistence
    def flush(self) -> list[Selection]:
        """Write the edited chunks to disk; returns the regions that changed."""
        changed: list[Selection] = []
        for index, block in list(self._edited.items()):
            original = self._original.pop(index)
            del self._edited[index]
            if np.array_equal(block, original):
                continue
            region = chunk_selection(self.array, index)
            self.array[region] = block
            if block.any():
                self._stored.add(index)
                self._remember(index, block)
            else:
                self._stored.discard(index)
                self._cache.pop(index, None)
            self.stats.add(region, original, -1)
            self.stats.add(region, block, +1)
            changed.append(region)
        return changed

    def discard(self) -> None:
        """Forget unflushed edits."""
        self._edited.clear()
        self._original.clear()

    def reload(self) -> None:
        """Forget unflushed edits and recount (after the array changed on disk)."""
        self.discard()
        self._cache.clear()
        self._stored = set(stored_chunks(self.array))
        self.stats = AnnotationStats.scan(self.array)


# -- import -----------------------------------------------------------------------
def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


class LabelSource:
    """A label volume on disk, read by z-slabs: a TIFF folder, a multi-page TIFF, zarr or npy."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._files: list[Path] = []
        self._array = None
        self._tiff = None
        if not self.path.exists():
            raise StageError(f"{self.path}: no such file or folder")
        try:
            self._open()
        except StageError:
            raise
        except Exception as exc:  # noqa: BLE001 - unreadable input is the user's problem to fix
            raise StageError(f"{self.path}: cannot read it as a label volume ({exc})") from exc

    def _open(self) -> None:
        path = self.path
        if path.is_dir() and not (path / "zarr.json").exists() and not (path / ".zarray").exists() and not (path / ".zgroup").exists():
            files = sorted(
                (p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES and p.is_file()),
                key=lambda p: _natural_key(p.name),
            )
            if not files:
                raise StageError(f"{path}: the folder holds no .tif/.tiff slices")
            import tifffile

            with tifffile.TiffFile(files[0]) as tf:
                page = tf.pages[0]
                plane, dtype = tuple(page.shape), np.dtype(page.dtype)
            if len(plane) != 2:
                raise StageError(f"{files[0]}: a slice must be a 2D image, it has shape {plane}")
            self._files = files
            self.shape = (len(files), *plane)
            self.dtype = dtype
        elif path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            self._tiff = tifffile.TiffFile(path)
            series = self._tiff.series[0]
            shape = tuple(series.shape)
            if len(shape) == 2:
                shape = (1, *shape)
            self.shape = shape
            self.dtype = np.dtype(series.dtype)
            if len(shape) != 3:
                raise StageError(f"{path}: a label volume must be 3D (z, y, x), this has shape {shape}")
        elif path.suffix.lower() == ".npy":
            self._array = np.load(path, mmap_mode="r")
            self.shape, self.dtype = tuple(self._array.shape), self._array.dtype
        else:
            node = zarr.open(str(path), mode="r")
            if isinstance(node, zarr.Group):
                keys = sorted(node.array_keys(), key=_natural_key)
                if not keys:
                    raise StageError(f"{path}: the zarr group holds no array")
                node = node["0"] if "0" in keys else node[keys[0]]
            self._array = node
            self.shape, self.dtype = tuple(node.shape), np.dtype(node.dtype)

    def close(self) -> None:
        if self._tiff is not None:
            self._tiff.close()
            self._tiff = None

    def __enter__(self) -> "LabelSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, z0: int, z1: int) -> np.ndarray:
        """Slices ``z0:z1`` as a (z, y, x) array."""
        if self._files:
            import tifffile

            slabs = []
            for path in self._files[z0:z1]:
                page = tifffile.imread(path)
                if page.shape != self.shape[1:]:
                    raise StageError(f"{path}: slice shape {page.shape} differs from {self.shape[1:]}")
                slabs.append(page)
            return np.stack(slabs)
        if self._tiff is not None:
            if self._tiff.series[0].ndim == 2:
                return self._tiff.series[0].asarray()[None][z0:z1]
            data = self._tiff.asarray(key=range(z0, z1)) if z1 - z0 > 0 else np.zeros((0, *self.shape[1:]), self.dtype)
            return np.asarray(data).reshape(z1 - z0, *self.shape[1:])
        return np.asarray(self._array[z0:z1])

    def read_slices(self, axis: int, indices: Sequence[int], slab: int = 64) -> Iterator[tuple[int, np.ndarray]]:
        """(index, 2D slice) for each chosen slice of plane ``axis``."""
        if axis == 0:
            for i in indices:
                yield i, self.read(i, i + 1)[0]
            return
        parts: dict[int, list[np.ndarray]] = {i: [] for i in indices}
        for z0 in range(0, self.shape[0], slab):
            block = self.read(z0, min(z0 + slab, self.shape[0]))
            for i in indices:
                parts[i].append(block[:, i, :] if axis == 1 else block[:, :, i])
        for i in indices:
            yield i, np.concatenate(parts[i], axis=0)


def parse_slices(text: str) -> tuple[int, list[int]]:
    """``"z:3,10,20"`` -> (0, [3, 10, 20]); ranges like ``"z:3-6"`` are allowed."""
    axis_name, sep, rest = text.partition(":")
    axis_name = axis_name.strip().lower()
    if not sep or axis_name not in AXES:
        raise StageError(f"--slices {text!r}: expected AXIS:I,J,K with AXIS one of z, y, x")
    indices: list[int] = []
    for part in rest.split(","):
        part = part.strip()
        if not part:
            continue
        span = re.fullmatch(r"(\d+)-(\d+)", part)
        try:
            if span:
                indices.extend(range(int(span.group(1)), int(span.group(2)) + 1))
            else:
                indices.append(int(part))
        except ValueError:
            raise StageError(f"--slices {text!r}: {part!r} is not a slice number") from None
    if not indices:
        raise StageError(f"--slices {text!r}: no slice numbers given")
    return AXES.index(axis_name), sorted(set(indices))


def parse_mapping(items: Iterable[str]) -> dict[int, int]:
    """``["3=1", "7=2"]`` -> {3: 1, 7: 2}."""
    mapping: dict[int, int] = {}
    for item in items:
        src, sep, dst = str(item).partition("=")
        try:
            if not sep:
                raise ValueError
            mapping[int(src)] = int(dst)
        except ValueError:
            raise StageError(f"--map {item!r}: expected SRC=DST with two whole numbers") from None
    return mapping


def import_labels(
    array: zarr.Array,
    source_path: str | Path,
    class_values: Iterable[int],
    mapping: Mapping[int, int] | None = None,
    axis: int | None = None,
    indices: Sequence[int] | None = None,
    ctx: ProgressContext | None = None,
    slab: int = 64,
) -> int:
    """Import a label volume into the annotations; returns the voxels written with a class.

    All of it (``axis`` None) or the slices ``indices`` of plane ``axis`` are
    replaced by the source, its values mapped by ``mapping`` (src -> dst; a
    value equal to a class value maps to itself unless mapped; 0 stays 0).
    Everything is checked before anything is written: a source of another
    shape, a non-integer dtype, a slice out of range or a value that maps to
    no class raises :class:`StageError` and leaves the annotations unchanged.
    """
    ctx = ctx or ProgressContext()
    classes = {int(v) for v in class_values}
    mapping = {int(k): int(v) for k, v in (mapping or {}).items()}
    with LabelSource(source_path) as source:
        where = source.path
        if not (np.issubdtype(source.dtype, np.integer) or np.issubdtype(source.dtype, np.bool_)):
            raise StageError(f"{where}: labels must be whole numbers, this volume is {source.dtype}")
        if tuple(source.shape) != tuple(array.shape):
            raise StageError(
                f"{where}: shape {tuple(source.shape)} (z, y, x) differs from the volume's {tuple(array.shape)}"
            )
        for src, dst in mapping.items():
            if dst != 0 and dst not in classes:
                raise StageError(f"--map {src}={dst}: the job has no class with value {dst}")
        if axis is not None:
            if not indices:
                raise StageError(f"{where}: no slices chosen")
            for i in indices:
                _check_index(array.shape, axis, i)
        # pass 1: which values occur
        seen: set[int] = set()
        for part, block in _blocks(source, axis, indices, slab):
            seen.update(int(v) for v in np.unique(block))
            ctx.report(0.5 * part, "checking the labels")
            ctx.check_cancelled()
        lut = {0: 0}
        for value in sorted(seen):
            if value in mapping:
                lut[value] = mapping[value]
            elif value in classes:
                lut[value] = value
            elif value != 0:
                missing = sorted(v for v in seen if v and v not in mapping and v not in classes)
                shown = ", ".join(str(v) for v in missing[:10]) + (" ..." if len(missing) > 10 else "")
                raise StageError(
                    f"{where}: label values {shown} map to no class "
                    f"(classes are {sorted(classes)}; map them with --map SRC=DST)"
                )
        keys = np.array(sorted(lut), dtype=np.int64)
        targets = np.array([lut[k] for k in sorted(lut)], dtype=DTYPE)

        def mapped(block: np.ndarray) -> np.ndarray:
            return targets[np.searchsorted(keys, block.astype(np.int64, copy=False))]

        # pass 2: write
        written = 0
        if axis is None:
            for part, (z0, block) in _slabs(source, slab):
                out = mapped(block)
                array[z0 : z0 + out.shape[0]] = out
                written += int(np.count_nonzero(out))
                ctx.report(0.5 + 0.5 * part, "writing the annotations")
        else:
            for n, (i, plane) in enumerate(source.read_slices(axis, list(indices), slab)):
                out = mapped(plane)
                write_slice(array, axis, i, out)
                written += int(np.count_nonzero(out))
                ctx.report(0.5 + 0.5 * (n + 1) / len(indices), "writing the annotations")
        return written


def _slabs(source: LabelSource, slab: int) -> Iterator[tuple[float, tuple[int, np.ndarray]]]:
    nz = source.shape[0]
    for z0 in range(0, nz, slab):
        z1 = min(z0 + slab, nz)
        yield z1 / nz, (z0, source.read(z0, z1))


def _blocks(source: LabelSource, axis, indices, slab) -> Iterator[tuple[float, np.ndarray]]:
    if axis is None:
        for part, (_z0, block) in _slabs(source, slab):
            yield part, block
    else:
        for n, (_i, plane) in enumerate(source.read_slices(axis, list(indices), slab)):
            yield (n + 1) / len(indices), plane


# -- export -----------------------------------------------------------------------
EXPORT_FORMATS = ("tiff", "zarr", "npy")


def _only_slices(block: np.ndarray, start: Sequence[int], axis: int | None, indices: Sequence[int] | None) -> np.ndarray:
    """``block`` (at ``start``) with everything outside slices ``indices`` of plane ``axis`` set to 0."""
    if axis is None:
        return block
    local = [i - start[axis] for i in indices or () if 0 <= i - start[axis] < block.shape[axis]]
    keep = np.zeros(block.shape[axis], bool)
    keep[local] = True
    shape = [1, 1, 1]
    shape[axis] = block.shape[axis]
    return np.where(keep.reshape(shape), block, 0).astype(DTYPE, copy=False)


def export_annotations(
    array: zarr.Array, fmt: str, out: str | Path, ctx: ProgressContext | None = None, slab: int = 64,
    axis: int | None = None, indices: Sequence[int] | None = None,
) -> list[Path]:
    """Write the annotations as ``tiff`` (a multi-page file if ``out`` ends in .tif/.tiff,
    else a folder of slices), ``zarr`` (a sparse zarr v3 array) or ``npy``.

    With ``axis`` and ``indices`` only those slices of that plane are written
    (the rest of the volume as 0), the way :func:`import_labels` reads them back.
    """
    ctx = ctx or ProgressContext()
    fmt = fmt.lower()
    out = Path(out)
    nz = array.shape[0]
    if fmt not in EXPORT_FORMATS:
        raise StageError(f"annotations can be exported as {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    if axis is not None:
        if not indices:
            raise StageError("no slices chosen to export")
        for i in indices:
            _check_index(array.shape, axis, i)
    if fmt == "npy":
        if out.suffix.lower() != ".npy":
            out = out.with_name(out.name + ".npy")
        out.parent.mkdir(parents=True, exist_ok=True)
        target = np.lib.format.open_memmap(out, mode="w+", dtype=DTYPE, shape=tuple(array.shape))
        for z0 in range(0, nz, slab):
            z1 = min(z0 + slab, nz)
            target[z0:z1] = _only_slices(np.asarray(array[z0:z1]), (z0, 0, 0), axis, indices)
            ctx.report(z1 / nz, "exporting")
            ctx.check_cancelled()
        target.flush()
        del target
        return [out]
    if fmt == "zarr":
        copy = zarr.create_array(
            str(out), shape=array.shape, chunks=array.chunks, dtype=DTYPE, fill_value=0,
            compressors=[default_compressor()], config={"write_empty_chunks": False},
            zarr_format=3, overwrite=True,
        )
        chunks = stored_chunks(array)
        for n, index in enumerate(chunks):
            selection = chunk_selection(array, index)
            start = tuple(sl.start for sl in selection)
            block = _only_slices(np.asarray(array[selection]), start, axis, indices)
            if block.any():
                copy[selection] = block
            ctx.report((n + 1) / max(1, len(chunks)), "exporting")
            ctx.check_cancelled()
        ctx.report(1.0, "exported")
        return [out]
    import tifffile

    if out.suffix.lower() in TIFF_SUFFIXES:
        out.parent.mkdir(parents=True, exist_ok=True)
        big = array.nbytes > 2**31
        with tifffile.TiffWriter(out, bigtiff=big) as writer:
            for z0 in range(0, nz, slab):
                z1 = min(z0 + slab, nz)
                for plane in _only_slices(np.asarray(array[z0:z1]), (z0, 0, 0), axis, indices):
                    writer.write(plane, contiguous=True, photometric="minisblack")
                ctx.report(z1 / nz, "exporting")
                ctx.check_cancelled()
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    digits = max(4, len(str(nz - 1)))
    for z0 in range(0, nz, slab):
        z1 = min(z0 + slab, nz)
        for offset, plane in enumerate(_only_slices(np.asarray(array[z0:z1]), (z0, 0, 0), axis, indices)):
            tifffile.imwrite(out / f"annotations_{z0 + offset:0{digits}d}.tif", plane, photometric="minisblack")
        ctx.report(z1 / nz, "exporting")
        ctx.check_cancelled()
    return [out]
