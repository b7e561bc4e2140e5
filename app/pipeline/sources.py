"""Find and validate the inputs of an import: slices, stacks, DICOM series, NRRD, NIfTI, zips.

:func:`discover` turns the paths a user picked into a :class:`ScanSource`: an
ordered list of files, their kind, the volume's shape, dtype, voxel size and
unit, and notes for the user. Everything wrong with the input is raised as a
:class:`~app.core.progress.StageError` whose message names the file and the
problem. Only headers are read here (plus one slice); :mod:`app.pipeline.readers`
reads the pixels.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Sequence

from app.core.progress import StageError

SLICE_EXTENSIONS = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp"}
TIFF_EXTENSIONS = {".tif", ".tiff"}
DICOM_EXTENSIONS = {".dcm", ".dicom", ".ima"}
NRRD_EXTENSIONS = {".nrrd", ".nhdr"}
NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: Files that never count as data in a scan folder.
IGNORED_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini", "DICOMDIR"}
#: Default bound on the total declared uncompressed size of a zip (zip bombs).
MAX_UNZIP_BYTES = 64 * 1024**3
#: Dtypes kept as they are; anything else is mapped to one of these.
KEPT_DTYPES = ("uint8", "uint16", "int16", "float32")
HEADER_THREADS = 8

ProgressFn = Callable[[float, str], None]

_UNIT_ALIASES = {
    "um": "um", "µm": "um", "μm": "um", "\\u00b5m": "um", "micron": "um", "microns": "um",
    "micrometer": "um", "micrometre": "um", "micrometers": "um", "micrometres": "um",
    "mm": "mm", "millimeter": "mm", "millimetre": "mm", "millimeters": "mm",
    "nm": "nm", "nanometer": "nm", "nanometre": "nm", "nanometers": "nm",
    "cm": "cm", "centimeter": "cm", "centimetre": "cm", "m": "m", "meter": "m", "metre": "m",
    "pixel": "", "pixels": "", "px": "", "": "",
}


def normalize_unit(unit: str | None) -> str:
    """``"micrometer"``, ``"µm"``, ``"micron"`` -> ``"um"``; unknown units are kept as given."""
    text = (unit or "").strip()
    return _UNIT_ALIASES.get(text.lower(), text)


def natural_key(name: str) -> list:
    """Sort key putting ``slice_2`` before ``slice_10`` (case-insensitive)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_ignored(path: Path) -> bool:
    """Hidden files, macOS resource forks (``._*``) and ``__MACOSX`` folders."""
    return path.name.startswith(".") or path.name in IGNORED_NAMES


def default_job_name(sources: Sequence[str | os.PathLike]) -> str:
    """A job name from the picked paths: the folder's name, or the file's without extensions."""
    if not sources:
        return "Untitled"
    paths = [Path(s) for s in sources]
    first = paths[0]
    if len(paths) > 1 and all(p.suffix.lower() in SLICE_EXTENSIONS | DICOM_EXTENSIONS for p in paths):
        name = first.resolve().parent.name if first.parent != Path("") else first.stem
        return name or first.stem or "Untitled"
    name = first.name.rstrip("/\\") or first.resolve().name
    lower = name.lower()
    for suffix in (".ome.tiff", ".ome.tif", ".nii.gz", ".tiff", ".tif", ".zip", ".nrrd", ".nhdr", ".nii",
                   ".png", ".jpg", ".jpeg", ".bmp", ".dcm"):
        if lower.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return name.strip() or "Untitled"


@dataclass
class ScanSource:
    """A validated input: what to read, in which order, and what it holds."""

    kind: str  # "slices" | "tiff_stack" | "dicom" | "nrrd" | "nifti"
    files: list[str]
    shape: tuple[int, int, int]
    dtype: str  # the dtype of the converted volume
    source_dtype: str = ""
    rgb: bool = False
    spacing: tuple[float, float, float] | None = None
    unit: str = ""
    notes: list[str] = field(default_factory=list)
    #: DICOM: (slope, intercept) per file, in ``files`` order.
    rescale: list[tuple[float, float]] | None = None

    def to_manifest(self) -> dict:
        data = asdict(self)
        data["shape"] = list(self.shape)
        data["spacing"] = list(self.spacing) if self.spacing else None
        data["rescale"] = [list(r) for r in self.rescale] if self.rescale else None
        return data

    @classmethod
    def from_manifest(cls, data: dict) -> "ScanSource":
        return cls(
            kind=data["kind"],
            files=list(data["files"]),
            shape=tuple(int(s) for s in data["shape"]),  # type: ignore[arg-type]
            dtype=data["dtype"],
            source_dtype=data.get("source_dtype", ""),
            rgb=bool(data.get("rgb", False)),
            spacing=tuple(data["spacing"]) if data.get("spacing") else None,  # type: ignore[arg-type]
            unit=data.get("unit", ""),
            notes=list(data.get("notes", [])),
            rescale=[tuple(r) for r in data["rescale"]] if data.get("rescale") else None,  # type: ignore[misc]
        )


def output_dtype(dtype) -> tuple[str, str | None]:
    """The volume dtype for a file dtype, and a note when it is not kept as is."""
    import numpy as np

    dt = np.dtype(dtype)
    name = dt.name
    if name in KEPT_DTYPES:
        return name, None
    if dt == np.bool_:
        return "uint8", "boolean images stored as uint8 (0/1)"
    if name == "int8":
        return "int16", "int8 images stored as int16"
    return "float32", f"{name} images stored as float32"


def _fail(path: str | os.PathLike, problem: str) -> StageError:
    return StageError(f"{path}: {problem}")


def _shape_text(shape: Sequence[int]) -> str:
    return " x ".join(str(int(s)) for s in shape)


# -- zips -------------------------------------------------------------------
def _unsafe_entry(name: str) -> str | None:
    """Why a zip entry name is unsafe, or None."""
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        return "an absolute path"
    if ".." in PurePosixPath(text).parts:
        return "a '..' component (it would land outside the job's folder)"
    return None


def check_zip(zip_path: Path, max_bytes: int | None = None) -> list[zipfile.ZipInfo]:
    """The entries of a zip, refusing unsafe names and a declared size above the bound."""
    bound = int(os.environ.get("STRATA_MAX_UNZIP_BYTES", 0) or 0) or (max_bytes or MAX_UNZIP_BYTES)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise _fail(zip_path, f"not a valid zip file ({exc})") from None
    total = 0
    for info in infos:
        why = _unsafe_entry(info.filename)
        if why:
            raise _fail(zip_path, f"zip entry {info.filename!r} has {why}; nothing was extracted")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise _fail(zip_path, f"zip entry {info.filename!r} is a symbolic link; nothing was extracted")
        total += max(int(info.file_size), 0)
    if total > bound:
        raise _fail(
            zip_path,
            f"the zip declares {total / 1024**3:.2f} GiB uncompressed, above the limit of "
            f"{bound / 1024**3:.2f} GiB (a zip bomb?); nothing was extracted",
        )
    return infos


def extract_zip(
    zip_path: Path, dest: Path, max_bytes: int | None = None, progress: ProgressFn | None = None
) -> Path:
    """Extract a zip safely below ``dest``: every entry must land inside it, sizes are bounded."""
    infos = check_zip(zip_path, max_bytes)
    dest.mkdir(parents=True, exist_ok=True)
    needed = sum(i.file_size for i in infos)
    free = shutil.disk_usage(dest).free
    if needed > free:
        raise _fail(zip_path, f"extracting needs {needed / 1024**3:.2f} GiB but only {free / 1024**3:.2f} GiB "
                              f"are free in {dest}")
    root = dest.resolve()
    total = sum(i.file_size for i in infos) or 1
    done = 0
    with zipfile.ZipFile(zip_path) as archive:
        for info in infos:
            target = (root / info.filename.replace("\\", "/")).resolve()
            if target != root and root not in target.parents:
                raise _fail(zip_path, f"zip entry {info.filename!r} would land outside the job's folder")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with archive.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > info.file_size:
                            raise _fail(zip_path, f"zip entry {info.filename!r} is larger than it declares")
                        out.write(chunk)
            except (zipfile.BadZipFile, EOFError, OSError) as exc:
                if isinstance(exc, StageError):
                    raise
                raise _fail(zip_path, f"zip entry {info.filename!r} cannot be extracted ({exc})") from None
            done += info.file_size
            if progress:
                progress(done / total, f"extracting {info.filename}")
    return dest


# -- folders ----------------------------------------------------------------
def list_folder(folder: Path) -> list[Path]:
    """Files of a folder (not recursive), naturally sorted, ignoring hidden and macOS files."""
    try:
        entries = list(folder.iterdir())
    except PermissionError:
        raise _fail(folder, "cannot be read (permission denied)") from None
    except OSError as exc:
        raise _fail(folder, f"cannot be read ({exc.strerror or exc})") from None
    files = [p for p in entries if not is_ignored(p) and p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.name))


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not is_ignored(p)), key=lambda p: natural_key(p.name))


def looks_like_dicom(path: Path) -> bool:
    """A DICOM Part 10 file (``DICM`` at byte 128) or a file with a DICOM extension."""
    if path.suffix.lower() in DICOM_EXTENSIONS:
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise _fail(path, "does not exist (was it moved or removed?)")
    if not os.access(path, os.R_OK):
        raise _fail(path, "cannot be read (permission denied)")
    if path.is_file() and path.stat().st_size == 0:
        raise _fail(path, "is empty (0 bytes)")


def discover(
    paths: Sequence[str | os.PathLike],
    extract_to: Path | None = None,
    progress: ProgressFn | None = None,
) -> ScanSource:
    """Validate the picked paths and describe the scan they hold.

    ``paths`` is one folder, one or more files, or one zip (extracted below
    ``extract_to``). Raises :class:`StageError` naming the file and the problem.
    """
    progress = progress or (lambda f, m: None)
    items = [Path(p).expanduser().absolute() for p in paths]
    if not items:
        raise StageError("no files were given to import")
    for item in items:
        _check_readable(item)
    if len(items) == 1 and items[0].is_dir():
        return _discover_folder(items[0], progress)
    if any(p.is_dir() for p in items):
        folder = next(p for p in items if p.is_dir())
        raise _fail(folder, "is a folder; pick either one folder or several files, not both")
    if len(items) == 1 and items[0].suffix.lower() == ".zip":
        if extract_to is None:
            raise _fail(items[0], "a zip needs a folder to be extracted into")
        extract_zip(items[0], extract_to, progress=lambda f, m: progress(0.5 * f, m))
        found = discover_extracted(extract_to, items[0], lambda f, m: progress(0.5 + 0.5 * f, m))
        found.notes.insert(0, f"extracted from {items[0].name}")
        return found
    if any(p.suffix.lower() == ".zip" for p in items):
        raise _fail(next(p for p in items if p.suffix.lower() == ".zip"), "a zip must be imported on its own")
    return _discover_files(items, progress)


def discover_extracted(folder: Path, zip_path: Path, progress: ProgressFn) -> ScanSource:
    """What an extracted zip holds: descend through folders that hold a single folder."""
    current = folder
    while True:
        files = list_folder(current)
        subs = _subfolders(current)
        if not files and len(subs) == 1:
            current = subs[0]
            continue
        break
    if not files and not subs:
        raise _fail(zip_path, "the zip holds no files")
    if not files:
        raise _fail(zip_path, f"the zip holds several folders ({', '.join(s.name for s in subs[:4])}); zip one scan")
    if len(files) == 1:
        return _discover_files(files, progress)
    return _discover_folder(current, progress)


def _discover_folder(folder: Path, progress: ProgressFn) -> ScanSource:
    files = list_folder(folder)
    if not files:
        subs = _subfolders(folder)
        if len(subs) == 1:
            return _discover_folder(subs[0], progress)  # e.g. DICOM/PA0/ST0/SE0
        if subs:
            raise _fail(folder, "holds no files, only folders; pick the folder with the slices")
        raise _fail(folder, "the folder is empty")
    progress(0.0, f"found {len(files)} files in {folder.name}")
    dicoms = [p for p in files if looks_like_dicom(p)]
    if dicoms:
        others = [p for p in files if p not in dicoms]
        if others:
            raise _fail(
                others[0],
                f"is not DICOM, but the folder {folder} holds DICOM files ({dicoms[0].name}, ...); "
                "a DICOM series folder must hold only DICOM files",
            )
        return discover_dicom(dicoms, progress)
    singles = [p for p in files if p.suffix.lower() in NRRD_EXTENSIONS or _is_nifti(p)]
    images = [p for p in files if p.suffix.lower() in SLICE_EXTENSIONS]
    if not images:
        if len(singles) == 1:
            return _discover_files(singles, progress)
        names = ", ".join(p.name for p in files[:3])
        raise _fail(folder, f"holds no images (TIFF, PNG, JPEG, BMP, DICOM, NRRD or NIfTI); found {names}")
    notes = []
    by_ext: dict[str, list[Path]] = {}
    for p in images:
        by_ext.setdefault(_ext_group(p), []).append(p)
    if len(by_ext) > 1:
        main = max(by_ext.values(), key=len)
        skipped = [p for p in images if p not in main]
        notes.append(f"{len(skipped)} file(s) of another image type ignored (e.g. {skipped[0].name})")
        images = main
    ignored = [p for p in files if p.suffix.lower() not in SLICE_EXTENSIONS]
    if ignored:
        notes.append(f"{len(ignored)} non-image file(s) ignored (e.g. {ignored[0].name})")
    if len(images) == 1 and _ext_group(images[0]) == "tiff":
        found = discover_tiff_stack(images[0])
    else:
        found = discover_slices(images, progress)
    found.notes = notes + found.notes
    return found


def _ext_group(path: Path) -> str:
    ext = path.suffix.lower()
    return {".tif": "tiff", ".tiff": "tiff", ".jpg": "jpeg", ".jpeg": "jpeg"}.get(ext, ext.lstrip("."))


def _discover_files(files: list[Path], progress: ProgressFn) -> ScanSource:
    if len(files) == 1:
        path = files[0]
        ext = path.suffix.lower()
        if ext in NRRD_EXTENSIONS:
            return discover_nrrd(path)
        if _is_nifti(path):
            return discover_nifti(path)
        if looks_like_dicom(path):
            return discover_dicom([path], progress)
        if ext in TIFF_EXTENSIONS:
            return discover_tiff_stack(path)
        if ext in SLICE_EXTENSIONS:
            return discover_slices([path], progress)
        raise _fail(path, "is not a supported image (TIFF, PNG, JPEG, BMP, DICOM, NRRD, NIfTI or zip)")
    if all(looks_like_dicom(p) for p in files):
        return discover_dicom(files, progress)
    bad = [p for p in files if p.suffix.lower() not in SLICE_EXTENSIONS]
    if bad:
        raise _fail(bad[0], "is not a 2D image (TIFF, PNG, JPEG, BMP); several files must be slices of one scan")
    return discover_slices(sorted(files, key=lambda p: natural_key(p.name)), progress)


# -- slices -----------------------------------------------------------------
@dataclass(frozen=True)
class SliceHeader:
    shape: tuple[int, ...]  # (y, x) or (y, x, samples)
    dtype: str
    pages: int = 1


def _tiff_header(path: Path) -> SliceHeader:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            size = path.stat().st_size
            offsets = page.dataoffsets or ()
            counts = page.databytecounts or ()
            if offsets and counts and max(o + c for o, c in zip(offsets, counts)) > size:
                raise _fail(path, "is truncated (its image data ends past the end of the file)")
            return SliceHeader(tuple(page.shape), str(page.dtype), len(tif.pages))
    except StageError:
        raise
    except FileNotFoundError:
        raise _fail(path, "was removed during the import") from None
    except Exception as exc:  # tifffile raises many kinds for corrupt files
        raise _fail(path, f"is not a readable TIFF image ({_reason(exc)})") from None


def _pil_header(path: Path) -> SliceHeader:
    from PIL import Image, UnidentifiedImageError

    modes = {
        "1": ((), "bool"), "L": ((), "uint8"), "P": ((), "uint8"), "I;16": ((), "uint16"),
        "I;16B": ((), "uint16"), "I;16L": ((), "uint16"), "I": ((), "int32"), "F": ((), "float32"),
        "LA": ((2,), "uint8"), "RGB": ((3,), "uint8"), "RGBA": ((4,), "uint8"), "CMYK": ((4,), "uint8"),
    }
    try:
        with Image.open(path) as image:
            extra, dtype = modes.get(image.mode, ((3,), "uint8"))
            width, height = image.size
            return SliceHeader((height, width, *extra), dtype)
    except FileNotFoundError:
        raise _fail(path, "was removed during the import") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise _fail(path, f"is not a readable image ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def slice_header(path: Path) -> SliceHeader:
    """Shape and dtype of one slice file, from its header; raises StageError for a bad file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _fail(path, "was removed during the import") from None
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise _fail(path, "is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise _fail(path, "cannot be read (permission denied)")
    return _tiff_header(path) if path.suffix.lower() in TIFF_EXTENSIONS else _pil_header(path)


def discover_slices(files: list[Path], progress: ProgressFn) -> ScanSource:
    """A stack of 2D slice files (already in order): all must have the first one's shape."""
    from app.pipeline.readers import read_slice_file

    first = files[0]
    sample = read_slice_file(first)  # decodes one slice: dtype, RGB
    first_header = slice_header(first)
    headers: list[SliceHeader | None] = [None] * len(files)
    headers[0] = first_header
    with ThreadPoolExecutor(min(HEADER_THREADS, max(1, len(files)))) as pool:
        for index, header in enumerate(pool.map(slice_header, files[1:]), start=1):
            headers[index] = header
            if index % 64 == 0:
                progress(index / len(files), f"checked {index} of {len(files)} slices")
    for path, header in zip(files, headers):
        assert header is not None
        if header.shape[:2] != first_header.shape[:2]:
            raise _fail(
                path,
                f"is {_shape_text(header.shape[:2])} pixels but the first slice {first.name} is "
                f"{_shape_text(first_header.shape[:2])}; all slices must have the same size",
            )
        if header.shape != first_header.shape or header.dtype != first_header.dtype:
            raise _fail(
                path,
                f"has pixel type {header.dtype} {_shape_text(header.shape)} but the first slice "
                f"{first.name} has {first_header.dtype} {_shape_text(first_header.shape)}",
            )
        if header.pages > 1:
            raise _fail(path, f"holds {header.pages} images; a folder of slices needs one image per file")
    notes: list[str] = []
    rgb = sample.ndim == 3
    if rgb:
        notes.append(f"colour slices ({sample.shape[2]} channels) converted to grey")
    dtype, note = output_dtype(sample.dtype)
    if note:
        notes.append(note)
    spacing, unit = None, ""
    if first.suffix.lower() in TIFF_EXTENSIONS:
        spacing, unit, _ = tiff_voxel_size(first)
    progress(1.0, f"checked {len(files)} slices")
    return ScanSource(
        kind="slices",
        files=[str(p) for p in files],
        shape=(len(files), int(sample.shape[0]), int(sample.shape[1])),
        dtype=dtype,
        source_dtype=str(sample.dtype),
        rgb=rgb,
        spacing=spacing,
        unit=unit,
        notes=notes,
    )


# -- multi-page TIFF ----------------------------------------------------------
def tiff_voxel_size(path: Path) -> tuple[tuple[float, float, float] | None, str, list[str]]:
    """Voxel size (z, y, x) and unit from ImageJ or OME metadata; (None, "", notes) without."""
    import tifffile

    notes: list[str] = []
    with tifffile.TiffFile(path) as tif:
        if tif.is_ome and tif.ome_metadata:
            found = _ome_voxel_size(tif.ome_metadata)
            if found:
                return found[0], found[1], notes
        if tif.is_imagej:
            meta = tif.imagej_metadata or {}
            page = tif.pages.first
            unit = normalize_unit(str(meta.get("unit", "")).replace("\\u00B5", "µ"))
            xres = _resolution(page.tags.get("XResolution"))
            yres = _resolution(page.tags.get("YResolution")) or xres
            if xres:
                x = 1.0 / xres
                y = 1.0 / yres if yres else x
                z = float(meta.get("spacing", x) or x)
                return (z, y, x), unit, notes
    return None, "", notes


def _resolution(tag) -> float | None:
    if tag is None:
        return None
    value = tag.value
    try:
        num, den = value if isinstance(value, tuple) else (value, 1)
        res = float(num) / float(den)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return res if res > 0 else None


def _ome_voxel_size(xml: str) -> tuple[tuple[float, float, float], str] | None:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.endswith("Pixels")), None)
    if pixels is None:
        return None
    sizes = []
    units = []
    for axis in "ZYX":
        value = pixels.get(f"PhysicalSize{axis}")
        sizes.append(float(value) if value else None)
        units.append(normalize_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm")))
    if sizes[1] is None and sizes[2] is None:
        return None
    x = sizes[2] or sizes[1]
    y = sizes[1] or x
    z = sizes[0] or x
    return (float(z), float(y), float(x)), units[2] or units[1]  # type: ignore[arg-type]


def discover_tiff_stack(path: Path) -> ScanSource:
    """A multi-page TIFF (plain, ImageJ or OME): one slice per page of its first series."""
    import tifffile

    slice_header(path)  # 0 bytes, unreadable, first image truncated
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape = tuple(series.shape)
            axes = series.axes
            dtype = series.dtype
            offset, nbytes = series.dataoffset, series.nbytes
            declared = int((tif.imagej_metadata or {}).get("images", 0)) if tif.is_imagej else 0
            last = tif.pages[-1] if len(tif.pages) else None
            last_end = max((o + c for o, c in zip(last.dataoffsets or (), last.databytecounts or ())), default=0) \
                if last is not None and hasattr(last, "dataoffsets") else 0
    except Exception as exc:  # noqa: BLE001
        raise _fail(path, f"is not a readable TIFF image ({_reason(exc)})") from None
    size = path.stat().st_size
    if (offset is not None and offset + nbytes > size) or last_end > size:
        raise _fail(path, f"is truncated: its {_shape_text(shape)} images end past the end of the file")
    if declared and declared > int(_prod(shape[: -3 if axes.endswith("S") else -2]) or 1):
        raise _fail(path, f"is truncated or corrupt: it declares {declared} images but holds only "
                          f"{int(_prod(shape[: -3 if axes.endswith('S') else -2]) or 1)}")
    rgb = axes.endswith("S") and shape[-1] in (3, 4)
    plane = shape[-3:-1] if rgb else shape[-2:]
    count = int(_prod(shape) // (int(plane[0]) * int(plane[1]) * (shape[-1] if rgb else 1)))
    notes: list[str] = []
    leading = axes[: -3 if rgb else -2]
    if len(leading) > 1 and sum(1 for a, n in zip(leading, shape) if n > 1) > 1:
        notes.append(f"the TIFF has axes {axes}; all {count} images taken as z slices")
    if rgb:
        notes.append("colour images converted to grey")
    out, note = output_dtype(dtype)
    if note:
        notes.append(note)
    spacing, unit, more = tiff_voxel_size(path)
    notes += more
    return ScanSource(
        kind="tiff_stack",
        files=[str(path)],
        shape=(count, int(plane[0]), int(plane[1])),
        dtype=out,
        source_dtype=str(dtype),
        rgb=rgb,
        spacing=spacing,
        unit=unit,
        notes=notes,
    )


def _prod(values: Iterable[int]) -> int:
    total = 1
    for v in values:
        total *= int(v)
    return total


# -- DICOM --------------------------------------------------------------------
def _dicom_header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=path.suffix.lower() in DICOM_EXTENSIONS)
    except FileNotFoundError:
        raise _fail(path, "was removed during the import") from None
    except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError, KeyError, TypeError) as exc:
        raise _fail(path, f"is not a readable DICOM file ({_reason(exc)})") from None


def discover_dicom(files: list[Path], progress: ProgressFn) -> ScanSource:
    """The largest DICOM series among ``files``, ordered along the slice normal."""
    import numpy as np

    with ThreadPoolExecutor(min(HEADER_THREADS, max(1, len(files)))) as pool:
        headers = list(pool.map(_dicom_header, files))
    progress(0.8, f"read {len(files)} DICOM headers")
    series: dict[str, list[tuple[Path, object]]] = {}
    for path, ds in zip(files, headers):
        if "PixelData" not in ds and getattr(ds, "Rows", None) is None:
            continue  # DICOMDIR, structured reports...
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "unknown series")
        series.setdefault(uid, []).append((path, ds))
    if not series:
        raise _fail(files[0].parent, "holds DICOM files but no images")
    notes: list[str] = []
    ordered = sorted(series.items(), key=lambda kv: -len(kv[1]))
    uid, members = ordered[0]
    if len(ordered) > 1:
        others = ", ".join(
            f"{_series_label(m[0][1], u)} ({len(m)} files)" for u, m in ordered[1:]
        )
        notes.append(f"the folder holds {len(ordered)} DICOM series; took the largest, "
                     f"{_series_label(members[0][1], uid)} ({len(members)} files); not imported: {others}")
    first_path, first = members[0]
    rows, cols = int(getattr(first, "Rows", 0)), int(getattr(first, "Columns", 0))
    frames = int(getattr(first, "NumberOfFrames", 1) or 1)
    if frames > 1 and len(members) > 1:
        raise _fail(first_path, f"is a multi-frame DICOM ({frames} frames) among other files; import it alone")
    for path, ds in members:
        shape = (int(getattr(ds, "Rows", 0)), int(getattr(ds, "Columns", 0)))
        if shape != (rows, cols):
            raise _fail(path, f"is {_shape_text(shape)} pixels but {first_path.name} is {_shape_text((rows, cols))}; "
                              "all slices of a series must have the same size")
    # order along the slice normal; InstanceNumber only as a fallback
    positions = []
    orientation = getattr(first, "ImageOrientationPatient", None)
    if orientation is not None and all(getattr(ds, "ImagePositionPatient", None) is not None for _, ds in members):
        row = np.array([float(v) for v in orientation[:3]])
        col = np.array([float(v) for v in orientation[3:6]])
        normal = np.cross(row, col)
        positions = [float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])) for _, ds in members]
        order = sorted(range(len(members)), key=lambda i: positions[i])
    elif all(getattr(ds, "InstanceNumber", None) is not None for _, ds in members):
        order = sorted(range(len(members)), key=lambda i: int(members[i][1].InstanceNumber))
        notes.append("DICOM slices ordered by InstanceNumber (no positions in the headers)")
    else:
        order = sorted(range(len(members)), key=lambda i: natural_key(members[i][0].name))
        notes.append("DICOM slices ordered by file name (no positions or instance numbers in the headers)")
    members = [members[i] for i in order]
    pixel = getattr(first, "PixelSpacing", None)
    spacing = None
    if pixel is not None:
        y, x = float(pixel[0]), float(pixel[1])
        z = None
        if positions and len(positions) > 1:
            steps = np.diff(sorted(positions))
            if np.median(steps) > 0:
                z = float(np.median(steps))
        if z is None:
            z = float(getattr(first, "SpacingBetweenSlices", 0) or getattr(first, "SliceThickness", 0) or x)
        spacing = (round(z, 6), y, x)
    rescale = [(float(getattr(ds, "RescaleSlope", 1) or 1), float(getattr(ds, "RescaleIntercept", 0) or 0))
               for _, ds in members]
    bits = int(getattr(first, "BitsStored", 16) or 16)
    signed = int(getattr(first, "PixelRepresentation", 0) or 0) == 1
    samples = int(getattr(first, "SamplesPerPixel", 1) or 1)
    dtype = _dicom_dtype(bits, signed, rescale)
    if samples > 1:
        notes.append("colour DICOM converted to grey")
    if frames > 1:
        count = frames
    else:
        count = len(members)
    return ScanSource(
        kind="dicom",
        files=[str(p) for p, _ in members],
        shape=(count, rows, cols),
        dtype=dtype,
        source_dtype=("int" if signed else "uint") + str(int(getattr(first, "BitsAllocated", 16) or 16)),
        rgb=samples > 1,
        spacing=spacing,
        unit="mm" if spacing else "",
        notes=notes,
        rescale=rescale,
    )


def _series_label(ds, uid: str) -> str:
    number = getattr(ds, "SeriesNumber", None)
    desc = str(getattr(ds, "SeriesDescription", "") or "").strip()
    label = f"series {number}" if number is not None else f"series {uid[-12:]}"
    return f"{label} {desc!r}" if desc else label


def _dicom_dtype(bits: int, signed: bool, rescale: list[tuple[float, float]]) -> str:
    """The smallest kept dtype holding the rescaled stored values."""
    low = -(2 ** (bits - 1)) if signed else 0
    high = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    integral = all(float(s).is_integer() and float(i).is_integer() for s, i in rescale)
    if not integral:
        return "float32"
    values = [v for s, i in rescale for v in (low * s + i, high * s + i)]
    lo, hi = min(values), max(values)
    if lo >= 0 and hi <= 255:
        return "uint8"
    if lo >= 0 and hi <= 65535:
        return "uint16"
    if lo >= -32768 and hi <= 32767:
        return "int16"
    return "float32"


# -- NRRD and NIfTI -----------------------------------------------------------
def discover_nrrd(path: Path) -> ScanSource:
    """A single-file NRRD volume (read with pynrrd)."""
    import numpy as np
    import nrrd

    try:
        header = nrrd.read_header(str(path))
    except Exception as exc:  # noqa: BLE001
        raise _fail(path, f"is not a readable NRRD file ({_reason(exc)})") from None
    sizes = [int(s) for s in header.get("sizes", [])]
    if len(sizes) != 3:
        raise _fail(path, f"holds a {len(sizes)}D array; a 3D volume is needed")
    try:
        dtype = np.dtype(nrrd.reader._determine_datatype(header))
    except Exception:  # noqa: BLE001
        dtype = np.dtype("float32")
    spacing = None
    if header.get("spacings") is not None:
        spacing = tuple(float(s) for s in reversed(list(header["spacings"])))
    elif header.get("space directions") is not None:
        dirs = np.asarray(header["space directions"], dtype=float)
        if dirs.ndim == 2 and not np.isnan(dirs).any():
            spacing = tuple(float(v) for v in reversed(np.linalg.norm(dirs, axis=1)))
    units = header.get("space units") or header.get("units") or []
    unit = normalize_unit(str(units[0])) if len(units) else ("mm" if header.get("space") else "")
    out, note = output_dtype(dtype)
    return ScanSource(
        kind="nrrd", files=[str(path)], shape=(sizes[2], sizes[1], sizes[0]), dtype=out,
        source_dtype=str(dtype), spacing=spacing, unit=unit if spacing else "", notes=[note] if note else [],
    )


def discover_nifti(path: Path) -> ScanSource:
    """A single-file NIfTI volume (read with nibabel), axes reordered to (z, y, x)."""
    import nibabel

    try:
        image = nibabel.load(str(path))
        shape = tuple(int(s) for s in image.shape)
        zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
        space_unit = image.header.get_xyzt_units()[0]
        dtype = image.get_data_dtype()
        slope, inter = image.header.get_slope_inter()
    except Exception as exc:  # noqa: BLE001
        raise _fail(path, f"is not a readable NIfTI file ({_reason(exc)})") from None
    shape = tuple(s for i, s in enumerate(shape) if i < 3 or s > 1)
    if len(shape) != 3:
        raise _fail(path, f"holds a {len(shape)}D array of shape {_shape_text(shape)}; a 3D volume is needed")
    scaled = (slope is not None and slope not in (0, 1)) or (inter not in (None, 0))
    out, note = ("float32", "NIfTI scaling applied: stored as float32") if scaled else output_dtype(dtype)
    unit = {"micron": "um", "mm": "mm", "meter": "m"}.get(str(space_unit), "")
    return ScanSource(
        kind="nifti", files=[str(path)], shape=(shape[2], shape[1], shape[0]), dtype=out,
        source_dtype=str(dtype), spacing=(zooms[2], zooms[1], zooms[0]), unit=unit, notes=[note] if note else [],
    )
