"""Finding and validating inputs: folders, stacks, DICOM, NRRD, NIfTI, zips, and bad input."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
import tifffile

from app.core.progress import StageError
from app.pipeline.sources import (
    check_zip,
    default_job_name,
    discover,
    extract_zip,
    natural_key,
    normalize_unit,
)
from tests.pipeline import scan_fixtures as fx


def test_natural_sort_puts_2_before_10():
    names = ["slice_10.tif", "slice_2.tif", "Slice_1.tif", "slice_100.tif"]
    assert sorted(names, key=natural_key) == ["Slice_1.tif", "slice_2.tif", "slice_10.tif", "slice_100.tif"]


@pytest.mark.parametrize(
    "sources, name",
    [
        (["/data/scans/ammonite_42/"], "ammonite_42"),
        (["/data/shell.ome.tif"], "shell"),
        (["/data/scan.zip"], "scan"),
        (["/data/head.nii.gz"], "head"),
        (["/data/run3/s_1.png", "/data/run3/s_2.png"], "run3"),
        ([], "Untitled"),
    ],
)
def test_default_job_name(sources, name):
    assert default_job_name(sources) == name


def test_units_are_normalised():
    assert normalize_unit("micrometer") == "um"
    assert normalize_unit("µm") == "um"
    assert normalize_unit("\\u00B5m") == "um"
    assert normalize_unit("millimetre") == "mm"
    assert normalize_unit("pixel") == ""


@pytest.mark.parametrize("ext", [".tif", ".png", ".bmp", ".jpg"])
def test_folder_of_slices_natural_order_ignoring_hidden_and_macos_files(tmp_path, ext):
    data = fx.volume((12, 20, 24), "uint8")
    folder = tmp_path / "scan"
    fx.write_slices(folder, data, ext)
    (folder / ".DS_Store").write_bytes(b"junk")
    (folder / f"._slice_3{ext}").write_bytes(b"resource fork")
    (folder / "__MACOSX").mkdir()
    (folder / "__MACOSX" / f"slice_1{ext}").write_bytes(b"junk")
    found = discover([folder])
    assert found.kind == "slices"
    assert found.shape == (12, 20, 24)
    assert found.dtype == "uint8"
    assert [os.path.basename(f) for f in found.files] == [f"slice_{i}{ext}" for i in range(12)]


def test_non_image_files_in_a_slice_folder_are_ignored_with_a_note(tmp_path):
    folder = tmp_path / "scan"
    fx.write_slices(folder, fx.volume((3, 8, 8)))
    (folder / "scan.log").write_text("scanner log")
    found = discover([folder])
    assert found.shape == (3, 8, 8)
    assert any("scan.log" in note for note in found.notes)


def test_several_picked_files_are_sorted_naturally(tmp_path):
    paths = fx.write_slices(tmp_path, fx.volume((11, 8, 8)))
    found = discover([paths[10], paths[2], paths[0], *paths[3:10], paths[1]])
    assert [os.path.basename(f) for f in found.files] == [f"slice_{i}.tif" for i in range(11)]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_multipage_tiff_keeps_its_dtype(tmp_path, dtype):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, fx.volume((9, 16, 10), dtype))
    found = discover([path])
    assert (found.kind, found.shape, found.dtype) == ("tiff_stack", (9, 16, 10), dtype)
    assert found.spacing is None


def test_imagej_tiff_voxel_size_and_unit(tmp_path):
    path = tmp_path / "imagej.tif"
    tifffile.imwrite(
        path, fx.volume((7, 16, 10)), imagej=True, resolution=(1 / 0.5, 1 / 0.25),
        metadata={"spacing": 2.0, "unit": "micron", "axes": "ZYX"},
    )
    found = discover([path])
    assert found.shape == (7, 16, 10)
    assert found.spacing == pytest.approx((2.0, 0.25, 0.5))
    assert found.unit == "um"


def test_ome_tiff_voxel_size_and_unit(tmp_path):
    path = tmp_path / "scan.ome.tif"
    tifffile.imwrite(
        path, fx.volume((6, 12, 14)), ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.7, "PhysicalSizeY": 0.7, "PhysicalSizeZ": 1.4,
                  "PhysicalSizeXUnit": "nm", "PhysicalSizeYUnit": "nm", "PhysicalSizeZUnit": "nm"},
    )
    found = discover([path])
    assert found.shape == (6, 12, 14)
    assert found.spacing == pytest.approx((1.4, 0.7, 0.7))
    assert found.unit == "nm"


def test_real_shell_imagej_tiff(shared_data):
    found = discover([shared_data / "microct" / "shell_225x128x128.tif"])
    assert found.shape == (225, 128, 128)
    assert found.dtype == "uint8"
    assert found.unit == "um"


def test_real_brain_slices_in_file_order(shared_data):
    folder = shared_data / "microct" / "brain_cube_slices"
    found = discover([folder])
    assert found.shape == (200, 200, 200)
    assert [os.path.basename(f) for f in found.files] == sorted(os.listdir(folder))


def test_dicom_series_ordered_by_position_not_name(tmp_path):
    data = fx.volume((8, 16, 12), "uint16")
    names = [f"{name}.dcm" for name in ["q", "b", "z", "a", "m", "c", "y", "k"]]
    fx.write_dicom_series(tmp_path / "ct", data, names=names, reverse_z=True)
    found = discover([tmp_path / "ct"])
    assert found.kind == "dicom"
    assert found.shape == (8, 16, 12)
    # positions were written in reverse order of the slices
    assert [os.path.basename(f) for f in found.files] == list(reversed(names))
    assert found.spacing == pytest.approx((2.5, 0.5, 0.75))
    assert found.unit == "mm"
    assert found.dtype == "int16"  # 12-bit stored, intercept -1024
    assert found.rescale[0] == (1.0, -1024.0)


def test_dicom_without_positions_falls_back_to_instance_number(tmp_path):
    data = fx.volume((5, 8, 8), "uint16")
    names = ["e", "d", "c", "b", "a"]
    fx.write_dicom_series(tmp_path / "ct", data, names=names, positions=False)
    found = discover([tmp_path / "ct"])
    assert [os.path.basename(f) for f in found.files] == names
    assert any("InstanceNumber" in note for note in found.notes)


def test_folder_with_two_dicom_series_takes_the_largest_and_names_the_other(tmp_path):
    folder = tmp_path / "ct"
    fx.write_dicom_series(folder, fx.volume((6, 8, 8)), names=[f"a{i}" for i in range(6)],
                          series_uid="1.2.3.1", series_number=3)
    fx.write_dicom_series(folder, fx.volume((3, 10, 10)), names=[f"b{i}" for i in range(3)],
                          series_uid="1.2.3.2", series_number=7)
    found = discover([folder])
    assert found.shape == (6, 8, 8)
    assert any("series 7" in note and "3 files" in note for note in found.notes)


def test_nrrd_single_file(tmp_path):
    import nrrd

    data = fx.volume((5, 7, 9), "int16")
    path = tmp_path / "scan.nrrd"
    nrrd.write(str(path), data, {"spacings": [1.0, 2.0, 3.0]}, index_order="C")  # x, y, z
    found = discover([path])
    assert (found.kind, found.shape, found.dtype) == ("nrrd", (5, 7, 9), "int16")
    assert found.spacing == pytest.approx((3.0, 2.0, 1.0))


def test_nifti_single_file(tmp_path):
    import nibabel

    data = fx.volume((5, 7, 9), "float32")
    path = tmp_path / "scan.nii.gz"
    image = nibabel.Nifti1Image(np.transpose(data, (2, 1, 0)), np.diag([0.1, 0.2, 0.3, 1.0]))
    image.header.set_xyzt_units("mm")
    nibabel.save(image, str(path))
    found = discover([path])
    assert (found.kind, found.shape, found.dtype) == ("nifti", (5, 7, 9), "float32")
    assert found.spacing == pytest.approx((0.3, 0.2, 0.1))
    assert found.unit == "mm"


def test_zip_of_a_folder_is_extracted_below_the_target(tmp_path):
    folder = tmp_path / "scan"
    fx.write_slices(folder, fx.volume((4, 8, 8)))
    archive = fx.zip_folder(tmp_path / "scan.zip", folder, arc_root="scan/")
    target = tmp_path / "job" / "extracted"
    found = discover([archive], extract_to=target)
    assert found.shape == (4, 8, 8)
    assert all(str(target) in f for f in found.files)


# -- bad input ------------------------------------------------------------------
def _error(paths, **kw) -> str:
    with pytest.raises(StageError) as info:
        discover(paths, **kw)
    return str(info.value)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    message = _error([tmp_path / "empty"])
    assert "empty" in message and str(tmp_path / "empty") in message


def test_folder_with_no_images(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    message = _error([folder])
    assert str(folder) in message and "no images" in message


def test_zero_byte_image(tmp_path):
    paths = fx.write_slices(tmp_path / "scan", fx.volume((4, 8, 8)))
    paths[2].write_bytes(b"")
    message = _error([tmp_path / "scan"])
    assert str(paths[2]) in message and "0 bytes" in message


def test_truncated_tiff(tmp_path):
    paths = fx.write_slices(tmp_path / "scan", fx.volume((4, 32, 32)))
    content = paths[3].read_bytes()
    paths[3].write_bytes(content[: len(content) // 2])
    message = _error([tmp_path / "scan"])
    assert str(paths[3]) in message and ("truncated" in message or "not a readable" in message)


def test_corrupt_png(tmp_path):
    paths = fx.write_slices(tmp_path / "scan", fx.volume((4, 8, 8), "uint8"), ".png")
    paths[1].write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    message = _error([tmp_path / "scan"])
    assert str(paths[1]) in message and "not a readable image" in message


def test_slices_of_different_shapes_name_the_first_that_differs_and_both_shapes(tmp_path):
    folder = tmp_path / "scan"
    fx.write_slices(folder, fx.volume((5, 20, 24)))
    tifffile.imwrite(folder / "slice_3.tif", np.zeros((20, 30), np.uint16))
    tifffile.imwrite(folder / "slice_4.tif", np.zeros((21, 24), np.uint16))
    message = _error([folder])
    assert str(folder / "slice_3.tif") in message
    assert "20 x 30" in message and "20 x 24" in message and "slice_0.tif" in message


def test_dicom_mixed_with_other_files(tmp_path):
    folder = tmp_path / "ct"
    fx.write_dicom_series(folder, fx.volume((3, 8, 8)))
    tifffile.imwrite(folder / "preview.tif", np.zeros((8, 8), np.uint8))
    message = _error([folder])
    assert str(folder / "preview.tif") in message and "DICOM" in message


@pytest.mark.parametrize("entry, why", [("../evil.tif", ".."), ("/etc/evil.tif", "absolute"),
                                        ("scan/../../evil.tif", "..")])
def test_zip_entry_outside_the_job_folder_is_refused(tmp_path, entry, why):
    archive = fx.make_zip(tmp_path / "bad.zip", {"scan/slice_0.tif": b"x", entry: b"evil"})
    target = tmp_path / "job" / "extracted"
    message = _error([archive], extract_to=target)
    assert str(archive) in message and entry in message and why in message
    assert not (tmp_path / "evil.tif").exists()
    assert not target.exists() or not any(target.rglob("*"))


def test_zip_declaring_more_than_the_bound_is_refused(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.raw", b"\0" * (4 << 20))
    assert archive.stat().st_size < 100_000
    with pytest.raises(StageError) as info:
        check_zip(archive, max_bytes=1 << 20)
    assert str(archive) in str(info.value) and "limit" in str(info.value)
    with pytest.raises(StageError):
        extract_zip(archive, tmp_path / "out", max_bytes=1 << 20)
    assert not (tmp_path / "out" / "zeros.raw").exists()


def test_not_a_zip(tmp_path):
    archive = tmp_path / "fake.zip"
    archive.write_bytes(b"not a zip at all")
    assert "not a valid zip" in _error([archive], extract_to=tmp_path / "x")


def test_path_that_does_not_exist(tmp_path):
    message = _error([tmp_path / "missing"])
    assert str(tmp_path / "missing") in message and "does not exist" in message


def test_broken_link_cannot_be_read(tmp_path):
    link = tmp_path / "link.tif"
    link.symlink_to(tmp_path / "gone.tif")
    assert str(link) in _error([link])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.tif"
    tifffile.imwrite(path, np.zeros((4, 8, 8), np.uint8))
    path.chmod(0)
    assert "permission denied" in _error([path])


def test_file_removed_during_the_import(tmp_path):
    paths = fx.write_slices(tmp_path / "scan", fx.volume((6, 8, 8)))

    def remove_one(fraction, message):
        if message.startswith("found") and paths[4].exists():
            paths[4].unlink()

    message = _error([tmp_path / "scan"], progress=remove_one)
    assert str(paths[4]) in message and "removed" in message


def test_nested_single_folders_are_followed(tmp_path):
    fx.write_dicom_series(tmp_path / "DICOM" / "PA0" / "ST0" / "SE0", fx.volume((3, 8, 8)))
    found = discover([tmp_path / "DICOM"])
    assert found.kind == "dicom" and found.shape == (3, 8, 8)


def test_truncated_imagej_stack(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, fx.volume((20, 32, 32)), imagej=True, metadata={"axes": "ZYX"})
    content = path.read_bytes()
    path.write_bytes(content[: len(content) * 2 // 3])
    message = _error([path])
    assert str(path) in message and "truncated" in message
