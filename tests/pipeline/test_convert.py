"""Streaming conversion: the pyramid, zarr compatibility, temporary folder, cancel, memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile
import zarr

from app.core.progress import Cancelled, ProgressContext
from app.pipeline.convert import PARTIAL_SUFFIX, _blosc, convert_source
from app.pipeline.sources import discover
from app.pipeline.volume import CHUNK, default_compressor, level_shapes, open_volume, write_volume
from tests.pipeline import scan_fixtures as fx


def _stack(tmp_path, data, name="stack.tif"):
    path = tmp_path / name
    tifffile.imwrite(path, data)
    return discover([path])


def test_pyramid_equals_the_in_memory_reference(tmp_path):
    data = fx.volume((131, 37, 600), "uint16")
    volume = convert_source(_stack(tmp_path, data), tmp_path / "volume.zarr", (2.0, 1.0, 1.0), "um")
    reference = write_volume(tmp_path / "reference.zarr", data, (2.0, 1.0, 1.0), "um")
    assert [a.shape for a in volume.levels] == level_shapes(data.shape) == [(131, 37, 600), (66, 19, 300), (33, 10, 150)]
    for ours, theirs in zip(volume.levels, reference.levels):
        np.testing.assert_array_equal(ours[...], theirs[...])
    assert volume.spacing == (2.0, 1.0, 1.0) and volume.unit == "um"
    assert volume.level_spacing(2) == pytest.approx((2.0 * 131 / 33, 37 / 10, 4.0))
    assert volume.attrs["multiscales"][0]["axes"][0]["unit"] == "um"


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
def test_dtypes_round_trip(tmp_path, dtype):
    data = fx.volume((70, 20, 30), dtype)
    volume = convert_source(_stack(tmp_path, data), tmp_path / "v.zarr", (1, 1, 1), "")
    assert volume.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(volume.levels[0][...], data)


def test_chunks_are_compressed_and_good_for_all_three_planes(tmp_path):
    data = np.zeros((130, 140, 150), np.uint16)
    data[10:120, 20:130, 30:140] = 1000  # empty chunks are not written, like zarr does
    convert_source(_stack(tmp_path, data), tmp_path / "v.zarr", (1, 1, 1), "")
    array = zarr.open_array(str(tmp_path / "v.zarr" / "0"), mode="r")
    assert array.chunks == CHUNK
    ours, default = array.compressors[0], default_compressor()
    assert (ours.cname, ours.clevel, ours.shuffle) == (default.cname, default.clevel, default.shuffle)
    stored = sum(p.stat().st_size for p in (tmp_path / "v.zarr" / "0" / "c").rglob("*") if p.is_file())
    assert stored < data.nbytes / 10
    np.testing.assert_array_equal(array[...], data)


def test_our_chunk_bytes_match_what_zarr_writes(tmp_path):
    data = fx.volume((64, 64, 64), "uint16")
    convert_source(_stack(tmp_path, data), tmp_path / "v.zarr", (1, 1, 1), "")
    write_volume(tmp_path / "ref.zarr", data)
    ours = (tmp_path / "v.zarr" / "0" / "c" / "0" / "0" / "0").read_bytes()
    theirs = (tmp_path / "ref.zarr" / "0" / "c" / "0" / "0" / "0").read_bytes()
    assert ours == theirs
    assert _blosc().cname == "lz4"


def test_written_in_a_temporary_folder_then_renamed(tmp_path):
    data = fx.volume((200, 16, 16), "uint16")
    dest = tmp_path / "volume.zarr"
    stale = tmp_path / f"volume.zarr{PARTIAL_SUFFIX}-99999"
    stale.mkdir()  # left by a killed process
    seen = []

    def watch(fraction, message):
        if 0 < fraction < 0.99:
            seen.append((dest.exists(), sorted(p.name for p in tmp_path.glob("volume.zarr*"))))

    convert_source(_stack(tmp_path, data), dest, (1, 1, 1), "", ProgressContext(watch))
    assert seen and all(not exists for exists, _ in seen)
    assert all(any(PARTIAL_SUFFIX in name for name in names) for _, names in seen)
    assert sorted(p.name for p in tmp_path.glob("volume.zarr*")) == ["volume.zarr"]
    np.testing.assert_array_equal(open_volume(dest).levels[0][...], data)


def test_cancel_mid_conversion_leaves_no_half_volume(tmp_path):
    data = fx.volume((300, 16, 16), "uint16")
    dest = tmp_path / "volume.zarr"
    ctx = ProgressContext()

    def cancel_midway(fraction, message):
        if fraction > 0.3:
            ctx.cancel()

    ctx = ProgressContext(cancel_midway)
    with pytest.raises(Cancelled):
        convert_source(_stack(tmp_path, data), dest, (1, 1, 1), "", ctx)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.tif"]


def test_reconversion_replaces_the_old_volume(tmp_path):
    dest = tmp_path / "volume.zarr"
    convert_source(_stack(tmp_path, fx.volume((10, 8, 8), "uint8")), dest, (1, 1, 1), "")
    data = fx.volume((20, 9, 9), "uint16", seed=3)
    convert_source(_stack(tmp_path, data, "b.tif"), dest, (1, 1, 1), "")
    np.testing.assert_array_equal(open_volume(dest).levels[0][...], data)


def test_memory_does_not_grow_with_the_number_of_slices(tmp_path):
    peaks = []
    for depth in (192, 576):  # both with two levels: only the depth differs
        source = _stack(tmp_path, np.broadcast_to(fx.volume((1, 288, 288), "uint16"), (depth, 288, 288)),
                        f"s{depth}.tif")
        tracemalloc.start()
        convert_source(source, tmp_path / f"v{depth}.zarr", (1, 1, 1), "")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] * 1.3, peaks
