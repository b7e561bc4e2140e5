"""Quick and deep models on the sample phantom: accuracy, honest metrics, seams, cancel, bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zarr

from app.core.progress import Cancelled, ProgressContext, StageError
from app.pipeline.annotations import open_annotations
from app.pipeline.metrics import confusion, dice_per_class, scores
from app.pipeline.postprocess import CleanUp, clean_labels
from app.pipeline.quick import QuickModel, QuickParams, normalisation_for, train_quick
from app.pipeline.sample import make_phantom
from app.pipeline.segment import blocks_done, markers_dir, segment_volume
from app.pipeline.training_data import assign_planes, read_paint, slice_folds
from app.pipeline.volume import write_volume

SHAPE = (48, 96, 96)
FAST = QuickParams(trees=16, samples_per_class=6000)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """The phantom's volume and ground truth, with paint copied from the truth on 3 z-slices."""
    folder = tmp_path_factory.mktemp("phantom")
    image, truth = make_phantom(SHAPE, seed=1)
    volume = write_volume(folder / "volume.zarr", image)
    annotations = open_annotations(folder / "annotations.zarr", SHAPE, create=True)
    for z in (10, 24, 38):
        annotations[z] = truth[z]
    return folder, volume, truth, annotations


@pytest.fixture(scope="module")
def quick(phantom):
    _, volume, _, annotations = phantom
    paint = read_paint(annotations)
    model, metrics = train_quick(volume.levels[0], paint, FAST, normalisation_for(volume))
    return model, metrics


def test_quick_model_segments_the_phantom(phantom, quick, tmp_path):
    _, volume, truth, _ = phantom
    model, metrics = quick
    out = segment_volume(volume.levels[0], model, tmp_path / "seg.zarr", block=(16, 64, 64))
    labels = out[...]
    dice = dice_per_class(truth, labels, [1, 2])
    assert dice[2] > 0.9, dice
    assert dice[1] > 0.9, dice
    assert blocks_done(tmp_path / "seg.zarr") == 3 * 2 * 2


def test_held_out_metrics_are_measured_on_unseen_slices(quick):
    _, metrics = quick
    assert metrics["held_out"] is not None and metrics["training"] is not None
    assert metrics["held_out_split"].startswith("3-fold by painted slice")
    assert metrics["held_out"] != metrics["training"]
    assert metrics["held_out"]["2"]["dice"] <= metrics["training"]["2"]["dice"]


def test_two_block_sizes_give_identical_labels(phantom, quick, tmp_path):
    _, volume, _, _ = phantom
    model, _ = quick
    small = segment_volume(volume.levels[0], model, tmp_path / "a.zarr", block=(5, 40, 56), workers=2)[...]
    large = segment_volume(volume.levels[0], model, tmp_path / "b.zarr", block=(48, 96, 96), workers=1)[...]
    preferred = segment_volume(volume.levels[0], model, tmp_path / "c.zarr")  # the model's own block size
    assert preferred.chunks == (32, 96, 96)  # read in large blocks, computed in smaller tiles
    assert np.array_equal(small, large) and np.array_equal(small, preferred[...])


def test_cancel_keeps_finished_blocks_and_a_rerun_resumes(phantom, quick, tmp_path):
    _, volume, _, _ = phantom
    model, _ = quick
    ctx = ProgressContext()
    seen = []

    def stop_after_two(done, total):
        seen.append(done)
        if done >= 2:
            ctx.cancel()

    path = tmp_path / "seg.zarr"
    with pytest.raises(Cancelled):
        segment_volume(volume.levels[0], model, path, block=(8, 96, 96), workers=1, ctx=ctx, on_block=stop_after_two)
    kept = blocks_done(path)
    assert 2 <= kept < 6
    before = {p.name: p.stat().st_mtime_ns for p in markers_dir(path).iterdir()}
    out = segment_volume(volume.levels[0], model, path, block=(16, 16, 16), workers=2)
    assert out.chunks == (8, 96, 96)  # a resumed run keeps its block size
    assert blocks_done(path) == 6
    after = {p.name: p.stat().st_mtime_ns for p in markers_dir(path).iterdir()}
    assert all(after[name] == t for name, t in before.items())  # finished blocks were not redone
    whole = segment_volume(volume.levels[0], model, tmp_path / "whole.zarr", block=(48, 96, 96))[...]
    assert np.array_equal(out[...], whole)


def test_quick_model_saves_and_loads(quick, phantom, tmp_path):
    _, volume, _, _ = phantom
    model, _ = quick
    model.save(tmp_path / "m")
    again = QuickModel.load(tmp_path / "m")
    a = model.predict_region(volume.levels[0], (20, 0, 0), (22, 96, 96))
    b = again.predict_region(volume.levels[0], (20, 0, 0), (22, 96, 96))
    assert np.array_equal(a, b) and again.classes == [1, 2] and again.norm == model.norm


def test_paint_of_one_class_is_refused(phantom, tmp_path):
    _, volume, _, _ = phantom
    annotations = open_annotations(tmp_path / "a.zarr", SHAPE, create=True)
    annotations[5, 10:20, 10:20] = 1
    with pytest.raises(StageError, match="only one class"):
        train_quick(volume.levels[0], read_paint(annotations), FAST, (0.0, 1.0), where=str(tmp_path / "a.zarr"))


def test_deep_model_trains_and_segments_end_to_end(tmp_path):
    from app.pipeline.unet import UNetModel, UNetParams, train_unet

    image, truth = make_phantom((8, 48, 48), seed=2)
    volume = write_volume(tmp_path / "v.zarr", image)
    annotations = open_annotations(tmp_path / "a.zarr", image.shape, create=True)
    for z in (2, 5):
        annotations[z] = truth[z]
    annotations[:, 24, :] = truth[:, 24, :]  # a y-plane too (too thin for a patch: skipped)
    paint = read_paint(annotations)
    params = UNetParams(epochs=2, steps_per_epoch=6, batch=2, patch=32, base=8)
    progress = []
    ctx = ProgressContext(lambda f, m: progress.append(m))
    model, metrics = train_unet(volume.levels[0], paint, params, normalisation_for(volume), ctx)
    assert any("iteration" in m and "loss" in m for m in progress)
    assert metrics["held_out"] is not None and metrics["iterations"] > 0
    model.save(tmp_path / "m")
    model = UNetModel.load(tmp_path / "m")
    a = segment_volume(volume.levels[0], model, tmp_path / "s1.zarr", block=(8, 48, 48))[...]
    b = segment_volume(volume.levels[0], model, tmp_path / "s2.zarr", block=(3, 16, 32), workers=2)[...]
    assert set(np.unique(a)) <= {1, 2}
    assert np.array_equal(a, b)


def test_deep_model_refuses_a_volume_too_small(tmp_path):
    from app.pipeline.unet import UNetParams, train_unet

    volume = write_volume(tmp_path / "v.zarr", np.zeros((4, 10, 12), np.uint16))
    annotations = open_annotations(tmp_path / "a.zarr", (4, 10, 12), create=True)
    annotations[1, :5] = 1
    annotations[1, 5:] = 2
    with pytest.raises(StageError, match="too small for the deep model"):
        train_unet(volume.levels[0], read_paint(annotations), UNetParams(), (0.0, 1.0), where="v.zarr")


def test_planes_and_slice_folds():
    coords = np.array([[2, y, x] for y in range(5) for x in range(5)] + [[z, 7, x] for z in range(4) for x in range(5)])
    ids, planes = assign_planes(coords, (10, 10, 10))
    assert planes == [(0, 2), (1, 7)]
    assert (ids[:25] == 0).all()
    off_line = coords[25:, 0] != 2  # where the planes cross, voxels go to the plane with more paint
    assert (ids[25:][off_line] == 1).all() and (ids[25:][~off_line] == 0).all()
    from app.pipeline.training_data import Paint

    paint = Paint(coords, np.where(np.arange(len(coords)) % 2, 1, 2).astype(np.uint8), ids, planes)
    folds = slice_folds(paint, 3)
    assert len(folds) == 2 and all(not (f.train & f.test).any() for f in folds)
    one = paint.subset(ids == 0)
    halves = slice_folds(one, 3)
    assert len(halves) == 2 and "half of z=2" in halves[0].held_out


def test_metrics_dice_and_iou():
    truth = np.array([1, 1, 2, 2, 0])
    pred = np.array([1, 2, 2, 2, 1])
    s = scores(confusion(truth, pred, [1, 2]), [1, 2])
    assert s["1"]["dice"] == pytest.approx(2 / 3, abs=1e-3)
    assert s["2"]["iou"] == pytest.approx(2 / 3, abs=1e-3)


def test_clean_up_removes_specks_and_fills_holes():
    labels = np.ones((20, 20, 20), np.uint8)
    labels[4:16, 4:16, 4:16] = 2
    labels[9:11, 9:11, 9:11] = 1  # an enclosed hole
    labels[0, 0, 0] = 2  # a speck
    out = clean_labels(labels, [1, 2], [1], CleanUp(min_size=5, fill_holes=True))
    assert out[0, 0, 0] == 1 and (out[9:11, 9:11, 9:11] == 2).all()
    largest = clean_labels(labels, [1, 2], [1], CleanUp(keep_largest=True))
    assert largest[0, 0, 0] == 1 and largest[5, 5, 5] == 2


def test_fast_forest_votes_agree_with_scikit_learn(quick):
    from app.pipeline.quick import forest_choices, forest_votes

    model, _ = quick
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(5000, model.spec.count)).astype(np.float32)
    votes = forest_votes(model.forest, rows)
    expected = model.forest.predict_proba(rows)
    assert votes.shape == (len(model.classes), len(rows))
    assert np.allclose(votes.T / len(model.forest.estimators_), expected, atol=1e-5)
    choices = forest_choices(model.forest, np.asfortranarray(rows))  # strided rows, as segmentation passes them
    clear = np.abs(expected[:, 1] - expected[:, 0]) > 1e-4  # exact ties may fall either way
    assert clear.mean() > 0.9 and np.array_equal(choices[clear], np.argmax(expected, 1)[clear])
