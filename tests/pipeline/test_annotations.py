"""annotations.zarr: the array, the painting buffer, statistics, import/export, classes, status rule, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import zarr

from app.cli import main as cli_main
from app.core.progress import StageError
from app.core.statuses import JobStatus
from app.pipeline import annotations as ann
from app.stages.annotation import apply_status_rule, import_job_labels, job_annotations, recount
from app.store import label_classes as lc
from tests.conftest import ROOT
from tests.pipeline.annotation_helpers import converted_job

S = JobStatus
SHAPE = (40, 48, 56)  # 1 x 1 x 1 chunks of 64: small; tests that need several chunks use BIG
BIG = (70, 130, 80)


def snapshot(array) -> np.ndarray:
    return np.asarray(array[...]).copy()


# -- array helpers ------------------------------------------------------------------
def test_open_creates_sparse_uint8_array(tmp_path):
    path = tmp_path / "annotations.zarr"
    with pytest.raises(StageError, match="no annotations yet"):
        ann.open_annotations(path)
    array = ann.open_annotations(path, BIG, create=True)
    assert isinstance(array, zarr.Array)
    assert array.shape == BIG and array.dtype == np.uint8 and array.chunks == (64, 64, 64)
    assert array.fill_value == 0
    assert ann.stored_chunks(array) == []
    again = ann.open_annotations(path, BIG)
    assert again.shape == BIG
    with pytest.raises(StageError, match="shape"):
        ann.open_annotations(path, (1, 2, 3))


def test_write_slice_stores_only_painted_chunks_and_stats(tmp_path):
    array = ann.open_annotations(tmp_path / "a.zarr", BIG, create=True)
    plane = np.zeros(BIG[1:], np.uint8)
    plane[100:110, 70:75] = 2
    ann.write_slice(array, 0, 66, plane)
    assert ann.stored_chunks(array) == [(1, 1, 1)]
    ann.write_region(array, (slice(0, 2), slice(0, 3), slice(0, 4)), 1)
    assert ann.stored_chunks(array) == [(0, 0, 0), (1, 1, 1)]
    assert ann.class_counts(array) == {1: 24, 2: 50}
    slices = ann.painted_slices(array)
    assert slices[0] == [0, 1, 66]
    assert slices[1] == [0, 1, 2] + list(range(100, 110))
    assert slices[2] == [0, 1, 2, 3] + list(range(70, 75))
    assert np.array_equal(ann.read_slice(array, 0, 66), plane)
    # unpainting a chunk removes its file
    ann.write_region(array, (slice(0, 2), slice(0, 3), slice(0, 4)), 0)
    assert ann.stored_chunks(array) == [(1, 1, 1)]
    assert ann.remove_value(array, 2) == 50
    assert ann.stored_chunks(array) == []
    with pytest.raises(StageError, match="out of range"):
        ann.read_slice(array, 1, 130)


def test_stroke_axes_from_the_neighbours():
    block = np.zeros((5, 6, 7), np.uint8)
    block[2, 1:4, 1:5] = 1  # a patch on z 2
    block[4, 5, 0:3] = 1  # a line along x on z 4 (or y 5)
    block[0, 0, 6] = 1  # a lone voxel
    coords, allowed = ann.stroke_axes(block)
    by_voxel = {tuple(c): tuple(a) for c, a in zip(coords.tolist(), allowed.tolist())}
    assert all(by_voxel[(2, y, x)] == (True, False, False) for y in range(1, 4) for x in range(1, 5))
    assert by_voxel[(4, 5, 1)] == (True, True, False) and by_voxel[(0, 0, 6)] == (True, True, True)
    assert len(coords) == int(block.sum())


def test_planes_painted_on_are_the_slices_strokes_were_laid_on(tmp_path, monkeypatch):
    from app.pipeline.training_data import read_paint

    array = ann.open_annotations(tmp_path / "a.zarr", BIG, create=True)
    plane = np.zeros(BIG[1:], np.uint8)
    plane[20:90, 30:100] = 1  # a patch on z 66, across chunks
    ann.write_slice(array, 0, 66, plane)
    side = np.zeros((BIG[0], BIG[2]), np.uint8)
    side[10:40, 5:60] = 2  # a patch on y 7
    ann.write_slice(array, 1, 7, side)
    stats = ann.AnnotationStats.scan(array)
    assert len(stats.painted_slices(1)) == 71  # y 7 and the 70 rows the z patch crosses
    finder = ann.PlaneFinder(tmp_path / "a.zarr")
    assert finder.planes(stats.profiles) == {0: [66], 1: [7], 2: []}
    assert sorted(read_paint(array).planes) == [(0, 66), (1, 7)]  # the same rule as training's split
    # a second call re-reads only the chunk written since, and sees the change
    cached = dict(finder._chunks)
    ann.write_region(array, (slice(0, 1), slice(120, 121), slice(0, 40)), 1)  # a line on z 0, in a new chunk,
    # crossing x columns that hold more paint of the other two patches: still laid on z 0
    stats = ann.AnnotationStats.scan(array)
    assert finder.planes(stats.profiles) == {0: [0, 66], 1: [7], 2: []}
    assert all(finder._chunks[i] is cached[i] for i in cached)  # the chunks painted before: not re-read
    assert len(finder._chunks) == len(cached) + 1
    assert sorted(read_paint(array).planes) == [(0, 0), (0, 66), (1, 7)]  # training splits the paint alike
    # a small patch on z 50 whose rows and columns hold far more paint of the z 66 patch
    ann.write_region(array, (slice(50, 51), slice(40, 46), slice(40, 46)), 2)
    stats = ann.AnnotationStats.scan(array)
    assert stats.profiles[0][50] < min(stats.profiles[1][40], stats.profiles[2][40])
    assert finder.planes(stats.profiles) == {0: [0, 50, 66], 1: [7], 2: []}
    assert sorted(read_paint(array).planes) == [(0, 0), (0, 50), (0, 66), (1, 7)]
    empty = ann.open_annotations(tmp_path / "b.zarr", BIG, create=True)
    assert ann.PlaneFinder(tmp_path / "b.zarr").planes(ann.AnnotationStats(BIG).profiles) == {0: [], 1: [], 2: []}
    monkeypatch.setattr(ann, "MAX_VOXELS_FOR_PLANES", 1000)  # too much paint to look through: no answer
    assert finder.planes(stats.profiles) is None


def test_buffer_overlays_edits_and_flushes_them_with_incremental_stats(tmp_path):
    array = ann.open_annotations(tmp_path / "a.zarr", BIG, create=True)
    ann.write_region(array, (slice(5, 6), slice(5, 6), slice(5, 6)), 1)
    buf = ann.AnnotationBuffer(array)
    assert buf.shape == BIG and buf.dtype == np.uint8 and buf.ndim == 3
    # a stroke across a chunk border on x slice 70 (plane x)
    buf[10:20, 60:70, 70] = 2
    assert buf.dirty
    assert (buf[15, :, :][60:70, 70] == 2).all()
    assert np.asarray(array[15, 65, 70]) == 0  # not on disk before the flush
    assert buf[5, 5, 5] == 1
    # a read-modify-write like napari's paint: region read, changed, written back
    region = buf[30:31, 0:4, 0:4]
    region[...] = 3
    buf[30:31, 0:4, 0:4] = region
    changed = buf.flush()
    assert not buf.dirty and len(changed) == 3
    on_disk = snapshot(array)
    assert (on_disk[10:20, 60:70, 70] == 2).all() and on_disk[30, 0:4, 0:4].sum() == 48
    fresh = ann.AnnotationStats.scan(array)
    assert buf.stats.class_counts() == fresh.class_counts() == {1: 1, 2: 100, 3: 16}
    for axis in range(3):
        assert buf.stats.painted_slices(axis) == fresh.painted_slices(axis)
    buf[10:20, 60:70, 70] = 0
    buf.flush()
    assert buf.stats.class_counts() == {1: 1, 3: 16}
    assert ann.stored_chunks(array) == [(0, 0, 0)]


# -- import / export --------------------------------------------------------------------
def labels_volume(shape=SHAPE) -> np.ndarray:
    labels = np.zeros(shape, np.uint16)
    labels[:, :20] = 1
    labels[:, 30:] = 2
    labels[5:9, 10:15, 10:15] = 7
    return labels


def write_source(tmp_path, data: np.ndarray, kind: str):
    if kind == "npy":
        path = tmp_path / "labels.npy"
        np.save(path, data)
    elif kind == "tiff":
        path = tmp_path / "labels.tif"
        tifffile.imwrite(path, data)
    elif kind == "folder":
        path = tmp_path / "slices"
        path.mkdir()
        for i, plane in enumerate(data):
            tifffile.imwrite(path / f"lab_{i}.tif", plane)  # natural order: lab_2 before lab_10
    else:
        path = tmp_path / "labels.zarr"
        zarr.create_array(str(path), shape=data.shape, dtype=data.dtype, chunks=(16, 16, 16))[...] = data
    return path


@pytest.mark.parametrize("kind", ["npy", "tiff", "folder", "zarr"])
def test_import_all_with_mapping_then_export_round_trip(store, tmp_path, kind):
    job = converted_job(store)
    labels = labels_volume()
    source = write_source(tmp_path, labels, kind)
    written = import_job_labels(store, job, source, mapping={7: 2})
    expected = np.where(labels == 7, 2, labels).astype(np.uint8)
    array = job_annotations(store, job)
    assert np.array_equal(snapshot(array), expected)
    assert written == int(np.count_nonzero(expected))
    summary = store.summary(job.id)
    assert summary["status"] == "annotated"
    assert summary["annotated_voxels"] == {
        "background": int((expected == 1).sum()), "specimen": int((expected == 2).sum())
    }
    for fmt, out in (("npy", "e.npy"), ("zarr", "e.zarr"), ("tiff", "e.tif"), ("tiff", "e_folder")):
        (path,) = ann.export_annotations(array, fmt, tmp_path / out)
        back = ann.LabelSource(path)
        assert back.shape == SHAPE
        assert np.array_equal(back.read(0, SHAPE[0]), expected), (fmt, out)
        back.close()


def test_import_chosen_slices_of_each_plane(store, tmp_path):
    job = converted_job(store)
    labels = labels_volume()
    source = write_source(tmp_path, labels, "npy")
    expected = np.zeros(SHAPE, np.uint8)
    for axis, indices in ((0, [3, 17]), (1, [2, 40]), (2, [0, 55])):
        import_job_labels(store, job, source, slices=(axis, indices), mapping={7: 1})
        key = [slice(None)] * 3
        key[axis] = indices
        expected[tuple(key)] = np.where(labels == 7, 1, labels)[tuple(key)]
    array = job_annotations(store, job)
    assert np.array_equal(snapshot(array), expected)
    assert ann.painted_slices(array)[0][:3] == [0, 1, 2]  # y and x slices paint all z


@pytest.mark.parametrize(
    "case, message",
    [
        ("shape", "differs from the volume"),
        ("float", "whole numbers"),
        ("range", "out of range"),
        ("unmapped", "map to no class"),
        ("bad_dst", "no class with value 9"),
        ("missing", "no such file"),
        ("empty_folder", "no .tif"),
    ],
)
def test_bad_import_changes_nothing(store, tmp_path, case, message):
    job = converted_job(store)
    good = write_source(tmp_path, labels_volume(), "npy")
    import_job_labels(store, job, good, slices=(0, [1]))
    array = job_annotations(store, job)
    before, counts_before = snapshot(array), store.summary(job.id)["annotated_voxels"]
    status_before = store.get(job.id).status
    slices, mapping = None, {7: 2}
    if case == "shape":
        source = tmp_path / "other.npy"
        np.save(source, np.ones((4, 5, 6), np.uint8))
    elif case == "float":
        source = tmp_path / "float.tif"
        tifffile.imwrite(source, np.ones(SHAPE, np.float32))
    elif case == "range":
        source, slices = good, (1, [3, 48])
    elif case == "unmapped":
        source, mapping = good, {}
    elif case == "bad_dst":
        source, mapping = good, {7: 9}
    elif case == "missing":
        source = tmp_path / "nope.npy"
    else:
        source = tmp_path / "empty"
        source.mkdir()
    with pytest.raises(StageError, match=message) as info:
        import_job_labels(store, job, source, slices=slices, mapping=mapping)
    if case not in ("range", "bad_dst", "unmapped"):
        assert source.name in str(info.value)
    assert np.array_equal(snapshot(array), before)
    assert store.summary(job.id)["annotated_voxels"] == counts_before
    assert store.get(job.id).status == status_before


def test_parse_slices_and_mapping():
    assert ann.parse_slices("z:3,1,2") == (0, [1, 2, 3])
    assert ann.parse_slices("X:4-6,9") == (2, [4, 5, 6, 9])
    with pytest.raises(StageError, match="AXIS"):
        ann.parse_slices("q:1")
    with pytest.raises(StageError, match="not a slice number"):
        ann.parse_slices("y:a")
    assert ann.parse_mapping(["3=1", "0=2"]) == {3: 1, 0: 2}
    with pytest.raises(StageError, match="SRC=DST"):
        ann.parse_mapping(["3"])


# -- classes and the status rule ------------------------------------------------------
def test_class_crud_and_delete_unpaints(store):
    job = converted_job(store)
    names = [(c.value, c.name) for c in lc.list_classes(store, job.id)]
    assert names == [(1, "background"), (2, "specimen")]
    bone = lc.add_class(store, job.id, "bone")
    assert bone.value == 3 and bone.color not in {c.color for c in lc.list_classes(store, job.id) if c.value != 3}
    with pytest.raises(lc.ClassError, match="already has"):
        lc.add_class(store, job.id, "Bone")
    with pytest.raises(lc.ClassError, match="needs a name"):
        lc.rename_class(store, job.id, 3, "  ")
    lc.rename_class(store, job.id, 3, "matrix")
    lc.recolor_class(store, job.id, 3, "#00FF00")
    with pytest.raises(lc.ClassError, match="#rrggbb"):
        lc.recolor_class(store, job.id, 3, "green")
    cls = lc.get_class(store, job.id, 3)
    assert (cls.name, cls.color) == ("matrix", "#00ff00")
    array = job_annotations(store, job)
    ann.write_region(array, (slice(0, 2), slice(0, 2), slice(0, 2)), 3)
    ann.write_region(array, (slice(5, 6), slice(0, 2), slice(0, 2)), 1)
    recount(store, job)
    assert store.get(job.id).status == "annotated"
    assert lc.delete_class(store, job.id, 3) == 8
    assert ann.class_counts(array) == {1: 4}
    assert [c.value for c in lc.list_classes(store, job.id)] == [1, 2]
    assert store.get(job.id).status == "converted"  # only one class left with paint
    assert lc.add_class(store, job.id, "again").value == 3


def test_status_rule_moves_both_ways_and_leaves_later_states(store):
    job = converted_job(store)
    array = job_annotations(store, job)
    ann.write_region(array, (slice(0, 1), slice(0, 1), slice(0, 3)), 2)
    assert recount(store, job) is None
    ann.write_region(array, (slice(1, 2), slice(0, 1), slice(0, 3)), 1)
    assert recount(store, job) == ("converted", "annotated")
    assert store.summary(job.id)["annotated_voxels"] == {"background": 3, "specimen": 3}
    ann.write_region(array, (slice(1, 2), slice(0, 1), slice(0, 3)), 0)
    assert recount(store, job) == ("annotated", "converted")
    ann.write_region(array, (slice(1, 2), slice(0, 1), slice(0, 3)), 1)
    recount(store, job)
    store.transition(job.id, S.TRAINING_QUEUED)
    ann.write_region(array, (slice(0, 2), slice(0, 1), slice(0, 3)), 0)
    assert recount(store, job) is None
    assert store.get(job.id).status == "training_queued"
    assert apply_status_rule(store, job.id) is None


# -- command line ----------------------------------------------------------------------
@pytest.mark.parametrize("fmt, name", [("npy", "s.npy"), ("zarr", "s.zarr"), ("tiff", "s.tif")])
def test_cli_export_chosen_slices_round_trips_with_import(store, workspace, tmp_path, capsys, fmt, name):
    """``export --slices`` writes only those slices (the rest 0), the way ``annotate --slices`` reads them."""
    job = converted_job(store, name="slices")
    labels = labels_volume()
    source = write_source(tmp_path, labels, "npy")
    ws = ["--workspace", str(workspace)]
    assert cli_main(["annotate", str(job.id), "--labels", str(source), "--map", "7=1", *ws]) == 0
    painted = np.where(labels == 7, 1, labels).astype(np.uint8)
    out_path = tmp_path / name
    assert cli_main(["export", str(job.id), "--what", "annotations", "--format", fmt, "--out", str(out_path),
                     "--slices", "x:3,10-11", *ws]) == 0
    assert str(out_path) in capsys.readouterr().out
    with ann.LabelSource(out_path) as back:
        got = back.read(0, SHAPE[0])
    expected = np.zeros(SHAPE, np.uint8)
    expected[:, :, [3, 10, 11]] = painted[:, :, [3, 10, 11]]
    assert np.array_equal(got, expected)
    # bad slices: one clear line, nothing written
    code = cli_main(["export", str(job.id), "--what", "annotations", "--format", "npy",
                     "--out", str(tmp_path / "bad.npy"), "--slices", f"x:{SHAPE[2]}", *ws])
    assert code != 0 and not (tmp_path / "bad.npy").exists()
    assert "out of range" in capsys.readouterr().err


def test_cli_annotate_classes_export_round_trip(store, workspace, tmp_path, capsys):
    job = converted_job(store, name="shell")
    labels = labels_volume()
    source = write_source(tmp_path, labels, "tiff")
    ws = ["--workspace", str(workspace)]
    assert cli_main(["annotate", "shell", "--labels", str(source), "--slices", "y:2,40", "--map", "7=1", *ws]) == 0
    out = capsys.readouterr().out
    assert "status annotated" in out
    assert cli_main(["classes", str(job.id), "--add", "bone", "--json", *ws]) == 0
    classes = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in classes] == ["background", "specimen", "bone"]
    for fmt, name in (("npy", "o.npy"), ("zarr", "o.zarr"), ("tiff", "o_slices")):
        out_path = tmp_path / name
        assert cli_main(["export", str(job.id), "--what", "annotations", "--format", fmt, "--out", str(out_path), *ws]) == 0
        assert str(out_path) in capsys.readouterr().out
        with ann.LabelSource(out_path) as back:
            got = back.read(0, SHAPE[0])
        expected = np.zeros(SHAPE, np.uint8)
        expected[:, [2, 40]] = np.where(labels == 7, 1, labels)[:, [2, 40]]
        assert np.array_equal(got, expected)
    # round trip of the whole export back in
    assert cli_main(["annotate", "shell", "--labels", str(tmp_path / "o.npy"), *ws]) == 0
    capsys.readouterr()
    assert cli_main(["jobs", "--json", *ws]) == 0
    listed = json.loads(capsys.readouterr().out)
    row = listed[0] if isinstance(listed, list) else listed
    assert row["annotated_voxels"]["background"] == int((expected == 1).sum())


def test_cli_bad_input_is_one_clear_line(store, workspace, tmp_path):
    job = converted_job(store)
    source = tmp_path / "f.npy"
    np.save(source, np.zeros(SHAPE, np.float32))
    run = subprocess.run(
        [sys.executable, "main.py", "annotate", str(job.id), "--labels", str(source), "--workspace", str(workspace)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == f"error: {source}: labels must be whole numbers, this volume is float32"
    run = subprocess.run(
        [sys.executable, "main.py", "export", str(job.id), "--what", "annotations", "--format", "npy",
         "--out", str(tmp_path / "x.npy"), "--workspace", str(workspace)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 1 and "no annotations yet" in run.stderr


def test_buffer_reads_match_disk_with_few_or_many_painted_chunks(tmp_path):
    array = ann.open_annotations(tmp_path / "a.zarr", BIG, create=True)
    rng = np.random.default_rng(1)
    truth = np.zeros(BIG, np.uint8)
    truth[3, 100:103, 70:72] = 2  # one chunk
    ann.write_region(array, (slice(None),) * 3, truth)
    for labels in (truth, rng.integers(0, 4, BIG, dtype=np.uint8)):  # 1 chunk stored, then all 12
        ann.write_region(array, (slice(None),) * 3, labels)
        buf = ann.AnnotationBuffer(array)
        buf[60:70, 120:130, 0:5] = 3  # an unflushed edit across chunk borders
        expected = labels.copy()
        expected[60:70, 120:130, 0:5] = 3
        for key in ((3,), (slice(None), 100), (slice(None), slice(None), 71), (slice(50, 70), slice(60, 130), 2)):
            assert np.array_equal(buf[key], expected[key]), key
        buf.discard()
