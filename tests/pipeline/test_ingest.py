"""The import and conversion stages through the runner: real SQLite, real files, real zarr."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile

from app.core.progress import ProgressContext
from app.core.statuses import JobStatus as S
from app.pipeline.volume import open_volume
from app.runner import Runner
from app.stages.ingest import create_sample_job, manifest_path, sample_ground_truth_path
from tests.pipeline import scan_fixtures as fx


def _run(store, job_id, ctx=None, follow=True):
    return Runner(store).run_job(job_id, ctx or ProgressContext(), follow=follow)


def _statuses(store, job_id):
    return [e.to_status for e in store.timeline(job_id)]


def test_folder_of_slices_end_to_end(store, tmp_path):
    data = fx.volume((70, 20, 24), "uint16")
    fx.write_slices(tmp_path / "scan", data)
    job = store.create_job("scan", [str(tmp_path / "scan")], spacing=(3.0, 1.5, 1.5), unit="um")
    assert _run(store, job.id) is S.CONVERTED
    job = store.get(job.id)
    assert _statuses(store, job.id) == ["pending", "uploading", "uploaded", "converting", "converted"]
    assert (job.shape, job.dtype, job.spacing, job.unit) == ([70, 20, 24], "uint16", [3.0, 1.5, 1.5], "um")
    manifest = json.loads(manifest_path(store, job.id).read_text())
    assert manifest["kind"] == "slices" and len(manifest["files"]) == 70
    assert manifest["files"][10].endswith("slice_10.tif")
    volume = open_volume(store.workspace.volume_path(job.id))
    np.testing.assert_array_equal(volume.levels[0][...], data)
    assert volume.spacing == (3.0, 1.5, 1.5) and volume.unit == "um"


def test_file_voxel_size_used_unless_the_user_gave_one(store, tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, fx.volume((5, 8, 8)), imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 1.5, "unit": "micron", "axes": "ZYX"})
    from_file = store.create_job("a", [str(path)])
    given = store.create_job("b", [str(path)], spacing=(1.0, 1.0, 1.0), unit="mm")
    _run(store, from_file.id)
    _run(store, given.id)
    a, b = store.get(from_file.id), store.get(given.id)
    assert (a.spacing, a.unit) == ([1.5, 0.5, 0.5], "um")
    assert (b.spacing, b.unit) == ([1.0, 1.0, 1.0], "mm")
    assert "instead of the files'" in b.note


def test_no_voxel_size_anywhere_is_noted(store, tmp_path):
    fx.write_slices(tmp_path / "s", fx.volume((3, 8, 8)), ".png")
    job = store.create_job("s", [str(tmp_path / "s")])
    _run(store, job.id)
    job = store.get(job.id)
    assert job.spacing == [1.0, 1.0, 1.0] and "no voxel size" in job.note


def test_real_shell_tiff(store, shared_data):
    job = store.create_job("shell", [str(shared_data / "microct" / "shell_225x128x128.tif")])
    assert _run(store, job.id) is S.CONVERTED
    job = store.get(job.id)
    assert (job.shape, job.dtype, job.unit) == ([225, 128, 128], "uint8", "um")
    volume = open_volume(store.workspace.volume_path(job.id))
    assert volume.shape == (225, 128, 128) and volume.unit == "um"
    expected = tifffile.imread(shared_data / "microct" / "shell_225x128x128.tif")
    np.testing.assert_array_equal(volume.levels[0][...], expected)


def test_real_brain_slices(store, shared_data):
    folder = shared_data / "microct" / "brain_cube_slices"
    job = store.create_job("brain", [str(folder)])
    assert _run(store, job.id) is S.CONVERTED
    volume = open_volume(store.workspace.volume_path(job.id))
    assert volume.shape == (200, 200, 200)
    for index in (0, 57, 199):
        expected = tifffile.imread(folder / f"test_cube1_{index:04d}.tif")
        np.testing.assert_array_equal(volume.levels[0][index], expected)


def test_zip_is_extracted_into_the_job_folder(store, tmp_path):
    fx.write_dicom_series(tmp_path / "ct" / "series", fx.volume((5, 8, 8)), names=[f"s{i}" for i in range(5)])
    archive = fx.zip_folder(tmp_path / "ct.zip", tmp_path / "ct")
    job = store.create_job("ct", [str(archive)])
    assert _run(store, job.id) is S.CONVERTED
    manifest = json.loads(manifest_path(store, job.id).read_text())
    source_dir = store.workspace.source_dir(job.id)
    assert manifest["kind"] == "dicom"
    assert all(f.startswith(str(source_dir)) for f in manifest["files"])
    assert store.get(job.id).dtype == "int16"


def test_sample_job_and_its_ground_truth(store):
    job = create_sample_job(store)
    assert job.name == "Sample fossil" and store.get(job.id).status == "pending"
    assert _run(store, job.id) is S.CONVERTED
    job = store.get(job.id)
    assert (job.shape, job.dtype, job.spacing, job.unit) == ([128, 256, 256], "uint16", [20.0, 20.0, 20.0], "um")
    truth = tifffile.imread(sample_ground_truth_path(store, job))
    assert truth.shape == (128, 256, 256) and set(np.unique(truth)) == {1, 2}
    second = create_sample_job(store, "Another")
    assert second.sources == job.sources  # generated once per workspace
    assert open_volume(store.workspace.volume_path(job.id)).levels[-1].shape == (128, 256, 256)


# -- bad input: an error status naming the file, other jobs untouched ------------------
@pytest.fixture
def good_job(store, tmp_path):
    fx.write_slices(tmp_path / "good", fx.volume((6, 8, 8)))
    job = store.create_job("good", [str(tmp_path / "good")])
    assert _run(store, job.id) is S.CONVERTED
    return job


def _fails(store, job_id, expected=S.ERROR) -> str:
    status = _run(store, job_id)
    job = store.get(job_id)
    assert status is expected, job.message
    assert job.message and "\n" not in job.message
    return job.message


def _untouched(store, job):
    again = store.get(job.id)
    assert again.status == "converted"
    assert open_volume(store.workspace.volume_path(job.id)).shape == (6, 8, 8)


def test_empty_folder_fails(store, tmp_path, good_job):
    (tmp_path / "empty").mkdir()
    job = store.create_job("e", [str(tmp_path / "empty")])
    assert str(tmp_path / "empty") in _fails(store, job.id)
    assert not store.workspace.source_dir(job.id).exists()
    _untouched(store, good_job)


def test_folder_without_images_fails(store, tmp_path, good_job):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("x")
    job = store.create_job("d", [str(tmp_path / "docs")])
    assert "no images" in _fails(store, job.id)
    _untouched(store, good_job)


@pytest.mark.parametrize("damage", ["empty", "truncated", "corrupt"])
def test_bad_image_fails(store, tmp_path, good_job, damage):
    paths = fx.write_slices(tmp_path / "scan", fx.volume((5, 32, 32)))
    content = paths[2].read_bytes()
    paths[2].write_bytes({"empty": b"", "truncated": content[: len(content) // 2],
                          "corrupt": b"II*\0" + os.urandom(200)}[damage])
    job = store.create_job("bad", [str(tmp_path / "scan")])
    assert str(paths[2]) in _fails(store, job.id)
    _untouched(store, good_job)


def test_truncated_png_fails_in_conversion(store, tmp_path, good_job):
    paths = fx.write_slices(tmp_path / "scan", fx.volume((5, 64, 64), "uint8"), ".png")
    content = paths[3].read_bytes()
    paths[3].write_bytes(content[: len(content) - 200])
    job = store.create_job("png", [str(tmp_path / "scan")])
    message = _fails(store, job.id, S.CONVERT_ERROR)
    assert str(paths[3]) in message
    assert not store.workspace.volume_path(job.id).exists()
    _untouched(store, good_job)


def test_slices_of_different_shapes_fail(store, tmp_path, good_job):
    fx.write_slices(tmp_path / "scan", fx.volume((5, 20, 24)))
    tifffile.imwrite(tmp_path / "scan" / "slice_10.tif", np.zeros((20, 25), np.uint16))
    tifffile.imwrite(tmp_path / "scan" / "slice_3.tif", np.zeros((19, 24), np.uint16))
    job = store.create_job("shapes", [str(tmp_path / "scan")])
    message = _fails(store, job.id)
    assert "slice_3.tif" in message and "19 x 24" in message and "20 x 24" in message
    _untouched(store, good_job)


def test_dicom_mixed_with_other_files_fails(store, tmp_path, good_job):
    fx.write_dicom_series(tmp_path / "ct", fx.volume((3, 8, 8)))
    (tmp_path / "ct" / "notes.txt").write_text("x")
    job = store.create_job("ct", [str(tmp_path / "ct")])
    assert "notes.txt" in _fails(store, job.id)
    _untouched(store, good_job)


def test_zip_with_dot_dot_entry_fails_and_extracts_nothing(store, tmp_path, good_job):
    archive = fx.make_zip(tmp_path / "evil.zip", {"a.tif": b"x", "../../../escaped.txt": b"evil"})
    job = store.create_job("evil", [str(archive)])
    assert ".." in _fails(store, job.id)
    assert not any(store.workspace.root.rglob("escaped.txt")) and not (tmp_path / "escaped.txt").exists()
    _untouched(store, good_job)


def test_zip_above_the_bound_fails(store, tmp_path, good_job, monkeypatch):
    import zipfile

    monkeypatch.setenv("STRATA_MAX_UNZIP_BYTES", str(1 << 20))
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.tif", b"\0" * (8 << 20))
    job = store.create_job("bomb", [str(archive)])
    assert "limit" in _fails(store, job.id)
    assert not store.workspace.source_dir(job.id).exists()
    _untouched(store, good_job)


def test_unreadable_path_fails(store, tmp_path, good_job):
    job = store.create_job("gone", [str(tmp_path / "nowhere" / "scan.tif")])
    assert "does not exist" in _fails(store, job.id)
    _untouched(store, good_job)


def test_file_removed_during_import_fails(store, tmp_path, good_job):
    paths = fx.write_slices(tmp_path / "scan", fx.volume((8, 8, 8)))
    job = store.create_job("r", [str(tmp_path / "scan")])

    def remove(fraction, message):
        if message.startswith("found") and paths[5].exists():
            paths[5].unlink()

    assert Runner(store).run_job(job.id, ProgressContext(remove), follow=False) is S.ERROR
    assert str(paths[5]) in store.get(job.id).message
    _untouched(store, good_job)


def test_file_removed_during_conversion_fails(store, tmp_path, good_job):
    paths = fx.write_slices(tmp_path / "scan", fx.volume((200, 8, 8)))
    job = store.create_job("r", [str(tmp_path / "scan")])
    assert _run(store, job.id, follow=False) is S.UPLOADED

    def remove(fraction, message):
        if message.startswith("slice 64") and paths[190].exists():
            paths[190].unlink()

    assert Runner(store).run_job(job.id, ProgressContext(remove)) is S.CONVERT_ERROR
    message = store.get(job.id).message
    assert str(paths[190]) in message and "removed" in message
    assert not store.workspace.volume_path(job.id).exists()
    _untouched(store, good_job)


def test_error_job_can_be_retried_after_fixing_the_input(store, tmp_path):
    (tmp_path / "scan").mkdir()
    job = store.create_job("later", [str(tmp_path / "scan")])
    assert _run(store, job.id) is S.ERROR
    fx.write_slices(tmp_path / "scan", fx.volume((4, 8, 8)))
    store.transition(job.id, S.PENDING, "retry")
    assert _run(store, job.id) is S.CONVERTED


# -- cancel --------------------------------------------------------------------------
def test_cancel_mid_conversion_returns_to_uploaded_without_a_volume(store, tmp_path):
    fx.write_slices(tmp_path / "scan", fx.volume((300, 16, 16)))
    job = store.create_job("c", [str(tmp_path / "scan")])
    assert _run(store, job.id, follow=False) is S.UPLOADED
    ctx = ProgressContext()

    def cancel(fraction, message):
        if message.startswith("slice 128"):
            ctx.cancel()

    ctx = ProgressContext(cancel)
    assert Runner(store).run_job(job.id, ctx) is S.UPLOADED
    job_dir = store.workspace.job_dir(job.id)
    assert sorted(p.name for p in job_dir.iterdir()) == ["source"]
    assert _statuses(store, job.id)[-2:] == ["converting", "uploaded"]
    assert _run(store, job.id) is S.CONVERTED  # and it converts again later


def test_cancel_during_import_returns_to_pending(store, tmp_path):
    fx.write_slices(tmp_path / "scan", fx.volume((100, 8, 8)))
    job = store.create_job("c", [str(tmp_path / "scan")])
    ctx = ProgressContext()
    ctx.cancel()
    assert Runner(store).run_job(job.id, ctx) is S.PENDING
    assert not store.workspace.source_dir(job.id).exists()
