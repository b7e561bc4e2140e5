"""Writers of small real scan files for the import tests (TIFF, PNG, DICOM, NRRD, NIfTI, zip)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np


def volume(shape=(12, 20, 24), dtype="uint16", seed=0) -> np.ndarray:
    """A small volume whose every slice differs (so the order is checkable)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        data = rng.normal(100.0, 30.0, size=shape)
    elif dt.kind == "i":
        data = rng.integers(-1000, 1000, size=shape)
    else:
        data = rng.integers(0, min(np.iinfo(dt).max, 4000), size=shape)
    data = data.astype(dt)
    data[:, 0, 0] = np.arange(shape[0]).astype(dt)  # slice index in a corner
    return data


def write_slices(folder: Path, data: np.ndarray, ext: str = ".tif", prefix: str = "slice_") -> list[Path]:
    """One file per slice, numbered without zero padding (natural sort needed)."""
    import imagecodecs
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(data):
        path = folder / f"{prefix}{index}{ext}"
        if ext in (".tif", ".tiff"):
            tifffile.imwrite(path, image)
        elif ext == ".png":
            path.write_bytes(imagecodecs.png_encode(image))
        elif ext in (".jpg", ".jpeg"):
            path.write_bytes(imagecodecs.jpeg8_encode(image, level=100))
        elif ext == ".bmp":
            from PIL import Image

            Image.fromarray(image).save(path)
        else:
            raise ValueError(ext)
        paths.append(path)
    return paths


def write_dicom_series(
    folder: Path,
    data: np.ndarray,
    names: Sequence[str] | None = None,
    series_uid: str = "1.2.826.0.1.3680043.8.498.1",
    spacing=(2.5, 0.5, 0.75),
    slope: float = 1.0,
    intercept: float = -1024.0,
    positions: bool = True,
    series_number: int = 1,
    reverse_z: bool = False,
) -> list[Path]:
    """A CT series (uint16 stored, 12 bits) written with pydicom, one file per slice."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    names = list(names) if names else [f"IM{index:04d}.dcm" for index in range(len(data))]
    paths = []
    for index, image in enumerate(data):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        sop = generate_uid()
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.Modality = "CT"
        ds.PatientName = "Phantom^Test"
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.99"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.InstanceNumber = index + 1
        ds.Rows, ds.Columns = image.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        if positions:
            z = (len(data) - 1 - index if reverse_z else index) * spacing[0]
            ds.ImagePositionPatient = [-10.0, -20.0, 100.0 + z]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.PixelData = np.ascontiguousarray(image.astype("<u2")).tobytes()
        path = folder / names[index]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def make_zip(zip_path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return zip_path


def zip_folder(zip_path: Path, folder: Path, arc_root: str = "") -> Path:
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{arc_root}{path.relative_to(folder)}")
    return zip_path
