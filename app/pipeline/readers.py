"""Reading the pixels of a validated :class:`~app.pipeline.sources.ScanSource`, in slabs.

A :class:`SlabReader` fills ``(n, y, x)`` slabs of the volume's dtype with
several threads (tifffile, imagecodecs, pydicom and numpy release the GIL
while decoding). Colour becomes grey (luma weights), DICOM gets its rescale
slope and intercept, and any failure is a StageError naming the file.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from app.core.progress import StageError
from app.pipeline.sources import TIFF_EXTENSIONS, ScanSource

#: Luma weights (ITU-R BT.601) for colour -> grey.
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def default_threads() -> int:
    """Reader threads: decoding releases the GIL, and files may sit on slow disks."""
    return max(2, min(8, (os.cpu_count() or 2) * 2))


def _missing(path: str | Path) -> StageError:
    return StageError(f"{path}: no longer exists (was it removed during the import or conversion?)")


def _undecodable(path: str | Path, exc: BaseException) -> StageError:
    reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return StageError(f"{path}: cannot be decoded, the file is truncated or corrupt ({reason})")


def read_slice_file(path: str | Path) -> np.ndarray:
    """Decode one 2D slice file (TIFF, PNG, JPEG, BMP) as stored: (y, x) or (y, x, channels)."""
    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_EXTENSIONS:
            import tifffile

            data = tifffile.imread(path, key=0, maxworkers=1)
        else:
            import imagecodecs

            data = imagecodecs.imread(str(path))
    except FileNotFoundError:
        raise _missing(path) from None
    except Exception as exc:  # noqa: BLE001 - codecs raise many kinds for bad files
        if not path.exists():
            raise _missing(path) from None
        raise _undecodable(path, exc) from None
    data = np.asarray(data)
    if data.ndim == 3 and data.shape[0] in (3, 4) and data.shape[-1] not in (3, 4):
        data = np.moveaxis(data, 0, -1)  # planar colour TIFF
    if data.ndim not in (2, 3):
        raise StageError(f"{path}: holds a {data.ndim}D image of shape {data.shape}; a 2D slice is needed")
    return data


def to_grey(image: np.ndarray) -> np.ndarray:
    """Colour (y, x, channels) to grey in the same dtype; alpha is dropped."""
    if image.ndim == 2:
        return image
    channels = image.shape[-1]
    if channels < 3:
        return image[..., 0]
    grey = image[..., :3].astype(np.float32) @ GREY_WEIGHTS
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        grey = np.clip(np.rint(grey), info.min, info.max)
    return grey.astype(image.dtype)


def _cast(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if image.dtype == dtype:
        return image
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(image), info.min, info.max).astype(dtype)
    return image.astype(dtype)


class SlabReader:
    """Reads slabs ``[start, stop)`` of a source's slices with a thread pool."""

    def __init__(self, source: ScanSource, threads: int | None = None) -> None:
        self.source = source
        self.dtype = np.dtype(source.dtype)
        self.shape = tuple(source.shape)
        self.threads = threads or default_threads()
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="strata-read")
        self._local = threading.local()
        self._handles: list = []
        self._lock = threading.Lock()
        self._whole: np.ndarray | None = None
        self._contiguous: tuple[int, np.dtype, int] | None = None
        if source.kind == "tiff_stack":
            self._contiguous = self._find_contiguous()

    # -- lifecycle --------------------------------------------------------
    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for handle in self._handles:
            try:
                handle.close()
            except Exception:  # noqa: BLE001
                pass
        self._handles.clear()
        self._whole = None

    def __enter__(self) -> "SlabReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ------------------------------------------------------------
    def read_slab(self, start: int, stop: int) -> np.ndarray:
        """Slices ``start`` to ``stop`` (exclusive) as one (n, y, x) array of the volume dtype."""
        _, height, width = self.shape
        out = np.empty((stop - start, height, width), dtype=self.dtype)
        kind = self.source.kind
        if kind in ("nrrd", "nifti") or (kind == "dicom" and self.shape[0] > len(self.source.files)):
            whole = self._whole_volume()
            out[...] = _cast(whole[start:stop], self.dtype)
            return out
        if self._contiguous is not None:
            bounds = np.linspace(start, stop, min(self.threads, stop - start) + 1).astype(int)
            list(self._pool.map(lambda a, b: self._read_contiguous(a, b, out[a - start : b - start]),
                                bounds[:-1], bounds[1:]))
            return out

        direct = kind == "slices" and not self.source.rgb and self.source.source_dtype == self.dtype.name

        def fill(index: int) -> None:
            if direct and self._decode_into(index, out[index - start]):
                return
            image = self._read_one(index)
            if image.shape != (height, width):
                raise StageError(
                    f"{self._file_of(index)}: is {image.shape[0]} x {image.shape[1]} pixels but the scan's "
                    f"slices are {height} x {width} (was the file replaced?)"
                )
            out[index - start] = _cast(image, self.dtype)

        list(self._pool.map(fill, range(start, stop)))
        return out

    def _decode_into(self, index: int, target: np.ndarray) -> bool:
        """Decode a TIFF slice straight into ``target`` (no copy); False to take the general path."""
        path = self.source.files[index]
        if Path(path).suffix.lower() not in TIFF_EXTENSIONS:
            return False
        import tifffile

        try:
            tifffile.imread(path, key=0, maxworkers=1, out=target)
        except Exception:  # noqa: BLE001 - wrong shape, corrupt, removed: the general path says which
            return False
        return True

    def _file_of(self, index: int) -> str:
        files = self.source.files
        return files[index] if len(files) > 1 else files[0]

    def _read_one(self, index: int) -> np.ndarray:
        kind = self.source.kind
        if kind == "slices":
            return to_grey(read_slice_file(self.source.files[index]))
        if kind == "tiff_stack":
            return self._read_tiff_page(index)
        if kind == "dicom":
            return self._read_dicom(index)
        raise StageError(f"{self._file_of(index)}: unknown source kind {kind!r}")

    # -- multi-page TIFF ------------------------------------------------------
    def _find_contiguous(self) -> tuple[int, np.dtype, int] | None:
        """(data offset, stored dtype, channels) of an uncompressed, contiguous TIFF stack, else None.

        Such stacks are read with plain positioned reads, not a memory map, so
        the process's resident memory does not grow with the file.
        """
        import tifffile

        path = self.source.files[0]
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                offset = series.dataoffset
                if offset is None or series.dtype is None:
                    return None
                channels = int(series.shape[-1]) if self.source.rgb else 1
                if int(np.prod(series.shape)) != int(np.prod(self.shape)) * channels:
                    return None
                return int(offset), np.dtype(series.dtype).newbyteorder(tif.byteorder), channels
        except FileNotFoundError:
            raise _missing(path) from None
        except Exception:  # noqa: BLE001 - fall back to page by page
            return None

    def _read_contiguous(self, start: int, stop: int, out: np.ndarray) -> None:
        offset, stored, channels = self._contiguous  # type: ignore[misc]
        path = self.source.files[0]
        per_slice = self.shape[1] * self.shape[2] * channels * stored.itemsize
        buffer = np.empty((stop - start) * per_slice, dtype=np.uint8)
        try:
            with open(path, "rb") as handle:
                handle.seek(offset + start * per_slice)
                read = handle.readinto(memoryview(buffer))
        except FileNotFoundError:
            raise _missing(path) from None
        if read != buffer.size:
            raise StageError(f"{path}: is truncated (images {start + 1} to {stop} end past the end of the file)")
        data = buffer.view(stored).reshape(
            (stop - start, self.shape[1], self.shape[2]) + ((channels,) if self.source.rgb else ())
        )
        if not data.dtype.isnative:
            data = data.astype(data.dtype.newbyteorder("="))
        out[...] = _cast(to_grey_stack(data) if self.source.rgb else data, self.dtype)

    def _tiff(self):
        tif = getattr(self._local, "tif", None)
        if tif is None:
            import tifffile

            path = self.source.files[0]
            try:
                tif = tifffile.TiffFile(path)
            except FileNotFoundError:
                raise _missing(path) from None
            except Exception as exc:  # noqa: BLE001
                raise _undecodable(path, exc) from None
            self._local.tif = tif
            with self._lock:
                self._handles.append(tif)
        return tif

    def _read_tiff_page(self, index: int) -> np.ndarray:
        path = self.source.files[0]
        try:
            data = self._tiff().asarray(key=index, series=0, maxworkers=1)
        except StageError:
            raise
        except FileNotFoundError:
            raise _missing(path) from None
        except Exception as exc:  # noqa: BLE001
            raise StageError(f"{path}: image {index + 1} cannot be decoded, the file is truncated or corrupt "
                             f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})") from None
        data = np.asarray(data)
        while data.ndim > (3 if self.source.rgb else 2):
            data = data[0]
        return to_grey(data)

    # -- DICOM ------------------------------------------------------------------
    def _dicom_pixels(self, path: str) -> np.ndarray:
        import pydicom

        try:
            ds = pydicom.dcmread(path, force=True)
            pixels = ds.pixel_array
        except FileNotFoundError:
            raise _missing(path) from None
        except Exception as exc:  # noqa: BLE001
            if not Path(path).exists():
                raise _missing(path) from None
            syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None) if "ds" in locals() else None
            extra = f", transfer syntax {syntax.name}" if syntax is not None else ""
            raise _undecodable(path, f"{exc}{extra}") from None
        return pixels

    def _read_dicom(self, index: int) -> np.ndarray:
        path = self.source.files[index]
        pixels = self._dicom_pixels(path)
        if self.source.rgb and pixels.ndim == 3:
            pixels = to_grey(pixels)
        slope, intercept = self.source.rescale[index] if self.source.rescale else (1.0, 0.0)
        if slope != 1.0 or intercept != 0.0:
            pixels = pixels.astype(np.float64) * slope + intercept
        return pixels

    # -- whole-file formats -----------------------------------------------------
    def _whole_volume(self) -> np.ndarray:
        with self._lock:
            if self._whole is None:
                self._whole = self._load_whole()
            return self._whole

    def _load_whole(self) -> np.ndarray:
        path = self.source.files[0]
        if not Path(path).exists():
            raise _missing(path)
        try:
            if self.source.kind == "nrrd":
                import nrrd

                data, _ = nrrd.read(path, index_order="C")
            elif self.source.kind == "nifti":
                import nibabel

                image = nibabel.load(path)
                data = np.asanyarray(image.dataobj)
                data = data.reshape(data.shape[:3]) if data.ndim > 3 else data
                data = np.transpose(data, (2, 1, 0))
            else:  # multi-frame DICOM
                data = self._dicom_pixels(path)
                if self.source.rgb and data.ndim == 4:
                    data = to_grey_stack(data)
                slope, intercept = self.source.rescale[0] if self.source.rescale else (1.0, 0.0)
                if slope != 1.0 or intercept != 0.0:
                    data = data.astype(np.float64) * slope + intercept
        except StageError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _undecodable(path, exc) from None
        data = np.asarray(data)
        if tuple(data.shape) != self.shape:
            raise StageError(f"{path}: holds {data.shape} voxels but {self.shape} were expected")
        return data


def to_grey_stack(stack: np.ndarray) -> np.ndarray:
    """Colour (n, y, x, channels) to grey (n, y, x), same dtype."""
    return np.stack([to_grey(np.asarray(s)) for s in stack]) if stack.ndim == 4 else np.asarray(stack)

