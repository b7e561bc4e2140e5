"""Reading slabs with threads: values, order, dtypes, colour to grey, DICOM rescale."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from app.core.progress import StageError
from app.pipeline.readers import SlabReader, to_grey
from app.pipeline.sources import discover
from tests.pipeline import scan_fixtures as fx


def _read_all(source, threads=3) -> np.ndarray:
    with SlabReader(source, threads=threads) as reader:
        return np.concatenate([reader.read_slab(z, min(z + 5, source.shape[0])) for z in range(0, source.shape[0], 5)])


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_folder_of_tiffs_read_in_order_with_dtype_preserved(tmp_path, dtype):
    data = fx.volume((13, 10, 12), dtype)
    fx.write_slices(tmp_path / "scan", data)
    out = _read_all(discover([tmp_path / "scan"]))
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, data)


@pytest.mark.parametrize("ext", [".png", ".bmp"])
def test_lossless_formats_read_exactly(tmp_path, ext):
    data = fx.volume((6, 10, 12), "uint8")
    fx.write_slices(tmp_path / "scan", data, ext)
    np.testing.assert_array_equal(_read_all(discover([tmp_path / "scan"])), data)


def test_sixteen_bit_png(tmp_path):
    data = fx.volume((4, 10, 12), "uint16")
    fx.write_slices(tmp_path / "scan", data, ".png")
    np.testing.assert_array_equal(_read_all(discover([tmp_path / "scan"])), data)


def test_jpeg_slices_read_close_to_the_original(tmp_path):
    data = np.tile(np.linspace(0, 250, 32, dtype=np.float32), (5, 32, 1)).astype(np.uint8)
    fx.write_slices(tmp_path / "scan", data, ".jpg")
    out = _read_all(discover([tmp_path / "scan"]))
    assert out.dtype == np.uint8 and np.abs(out.astype(int) - data).max() <= 4


def test_rgb_slices_become_grey_with_a_note(tmp_path):
    rgb = np.zeros((3, 8, 10, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    fx.write_slices(tmp_path / "scan", rgb, ".png")
    source = discover([tmp_path / "scan"])
    assert source.rgb and source.shape == (3, 8, 10)
    assert any("grey" in note for note in source.notes)
    out = _read_all(source)
    assert out.shape == (3, 8, 10) and out.dtype == np.uint8
    assert int(out[0, 0, 0]) == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)


def test_to_grey_keeps_the_dtype():
    image = np.full((4, 4, 4), 1000, np.uint16)  # RGBA: alpha ignored
    grey = to_grey(image)
    assert grey.dtype == np.uint16 and grey.shape == (4, 4) and int(grey[0, 0]) == 1000


@pytest.mark.parametrize("kind", ["plain", "imagej", "compressed"])
def test_multipage_tiff_slabs(tmp_path, kind):
    data = fx.volume((11, 16, 10), "uint16")
    path = tmp_path / "stack.tif"
    if kind == "imagej":
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZYX"})
    elif kind == "compressed":
        tifffile.imwrite(path, data, compression="zlib")
    else:
        tifffile.imwrite(path, data)
    np.testing.assert_array_equal(_read_all(discover([path])), data)


def test_rgb_multipage_tiff(tmp_path):
    rgb = np.zeros((4, 8, 8, 3), np.uint8)
    rgb[..., 1] = 100
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    source = discover([path])
    assert source.rgb and source.shape == (4, 8, 8)
    out = _read_all(source)
    assert int(out[2, 3, 3]) == round(0.587 * 100)


def test_dicom_rescale_applied_in_slice_order(tmp_path):
    data = fx.volume((6, 8, 8), "uint16")
    fx.write_dicom_series(tmp_path / "ct", data, names=[f"x{i}" for i in (3, 1, 5, 0, 2, 4)],
                          slope=1.0, intercept=-1024.0)
    source = discover([tmp_path / "ct"])
    out = _read_all(source)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, data.astype(np.int32) - 1024)


def test_dicom_fractional_slope_gives_float32(tmp_path):
    data = fx.volume((3, 8, 8), "uint16")
    fx.write_dicom_series(tmp_path / "ct", data, slope=0.5, intercept=10.0)
    out = _read_all(discover([tmp_path / "ct"]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, data * 0.5 + 10.0)


def test_nrrd_and_nifti_slabs(tmp_path):
    import nibabel
    import nrrd

    data = fx.volume((7, 6, 5), "int16")
    nrrd.write(str(tmp_path / "a.nrrd"), data, index_order="C")
    np.testing.assert_array_equal(_read_all(discover([tmp_path / "a.nrrd"])), data)
    nibabel.save(nibabel.Nifti1Image(np.transpose(data, (2, 1, 0)), np.eye(4)), str(tmp_path / "b.nii"))
    np.testing.assert_array_equal(_read_all(discover([tmp_path / "b.nii"])), data)


def test_truncated_png_fails_at_read_naming_the_file(tmp_path):
    paths = fx.write_slices(tmp_path / "scan", fx.volume((3, 64, 64), "uint8"), ".png")
    source = discover([tmp_path / "scan"])
    content = paths[2].read_bytes()
    paths[2].write_bytes(content[: len(content) // 2])
    with pytest.raises(StageError) as info:
        _read_all(source)
    assert str(paths[2]) in str(info.value)


def test_removed_file_fails_at_read_naming_the_file(tmp_path):
    paths = fx.write_slices(tmp_path / "scan", fx.volume((3, 8, 8)))
    source = discover([tmp_path / "scan"])
    paths[1].unlink()
    with pytest.raises(StageError) as info:
        _read_all(source)
    assert str(paths[1]) in str(info.value) and "removed" in str(info.value)
