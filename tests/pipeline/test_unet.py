"""The deep model: sparse strokes, unbiased boundaries, final fit on all paint, cancel, fast inference."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from app.core.progress import Cancelled, ProgressContext
from app.pipeline.annotations import open_annotations
from app.pipeline.metrics import dice_per_class
from app.pipeline.quick import normalisation_for
from app.pipeline.sample import make_phantom
from app.pipeline.segment import segment_volume
from app.pipeline.training_data import read_paint
from app.pipeline.unet import UNetModel, UNetParams, _CentreSampler, _Plane, build_network, fold_batch_norm, train_unet
from app.pipeline.volume import write_volume

SHAPE = (16, 96, 96)
#: A short schedule: seconds on 2 cores.
SHORT = UNetParams(epochs=4, steps_per_epoch=15, batch=4, patch=48, base=8, lr=5e-3)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unet")
    image, truth = make_phantom(SHAPE, seed=3)
    return folder, write_volume(folder / "volume.zarr", image), truth


def _strokes(folder, truth, zs=(4, 8, 12)):
    """Sparse paint: 2-pixel-wide lines every 12 rows and columns of a few z-slices, labels from the truth."""
    annotations = open_annotations(folder / f"strokes_{'_'.join(map(str, zs))}.zarr", SHAPE, create=True)
    for z in zs:
        plane = np.zeros(SHAPE[1:], np.uint8)
        plane[3::12] = truth[z, 3::12]
        plane[4::12] = truth[z, 4::12]
        plane[:, 7::12] = truth[z, :, 7::12]
        annotations[z] = plane
    return annotations


def test_sparse_strokes_train_a_model_that_segments_the_whole_volume(phantom, tmp_path):
    folder, volume, truth = phantom
    annotations = _strokes(folder, truth)
    painted = int((np.asarray(annotations[...]) > 0).sum())
    assert painted < 0.05 * truth.size  # most of every painted slice is left unpainted
    model, metrics = train_unet(volume.levels[0], read_paint(annotations), SHORT, normalisation_for(volume))
    labels = segment_volume(volume.levels[0], model, tmp_path / "seg.zarr")[...]
    dice = dice_per_class(truth, labels, [1, 2])
    assert dice[1] > 0.97 and dice[2] > 0.8, dice
    assert metrics["held_out"] is not None and "final fit" in metrics["final_fit"]


def test_the_final_fit_continues_on_all_painted_slices(phantom):
    folder, volume, truth = phantom
    annotations = _strokes(folder, truth, zs=(2, 5, 8, 11, 14))
    progress = []
    ctx = ProgressContext(lambda f, m: progress.append((f, m)))
    params = UNetParams(epochs=2, steps_per_epoch=4, batch=2, patch=32, base=8, final_fit=0.5, patience=99)
    _, metrics = train_unet(volume.levels[0], read_paint(annotations), params, normalisation_for(volume), ctx)
    held = metrics["held_out_split"].split(": ")[1].split(", ")
    assert len(held) == 1  # one of the five slices held out for the honest metrics...
    assert "all 5 slices" in metrics["final_fit"]  # ...then seen in the final fit
    assert metrics["iterations"] == 2 * 4 + 4 and metrics["history"][-1]["final_fit"] == 4
    messages = [m for _, m in progress if m.startswith("iteration")]
    assert messages[-1].startswith("iteration 12/12, loss ")
    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_cancel_stops_training_at_the_next_iteration(phantom):
    folder, volume, truth = phantom
    annotations = _strokes(folder, truth)
    cancel = threading.Event()
    seen = []

    def report(fraction, message):
        if message.startswith("iteration"):
            seen.append(message)
            if len(seen) == 3:
                cancel.set()  # as the Cancel button does, from another thread

    ctx = ProgressContext(report, cancel)
    params = UNetParams(epochs=50, steps_per_epoch=50, batch=2, patch=32, base=8)
    with pytest.raises(Cancelled):
        train_unet(volume.levels[0], read_paint(annotations), params, normalisation_for(volume), ctx)
    assert len(seen) == 3


def test_patch_centres_are_balanced_between_classes():
    labels = np.full((64, 64), -1, np.int64)
    labels[:40] = 0  # lots of one class
    labels[50, 10:14] = 1  # four pixels of another
    sampler = _CentreSampler([_Plane(np.zeros((5, 64, 64), np.float32), labels, "z=0")], 2)
    rng = np.random.default_rng(0)
    drawn = np.array([labels[y, x] for _, y, x in (sampler.draw(rng) for _ in range(2000))])
    assert abs((drawn == 1).mean() - 0.5) < 0.05


def test_folded_batch_norm_predicts_as_the_network_does():
    import torch

    torch.manual_seed(0)
    net = build_network(5, 3, 8, 2)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    net.eval()
    x = torch.randn(2, 5, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(net(x), fold_batch_norm(net)(x), atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fold_batch_norm(net).modules())


def test_a_saved_model_predicts_the_same_labels_after_loading(phantom, tmp_path):
    folder, volume, truth = phantom
    annotations = _strokes(folder, truth, zs=(5, 10))
    params = UNetParams(epochs=1, steps_per_epoch=3, batch=2, patch=32, base=8)
    model, _ = train_unet(volume.levels[0], read_paint(annotations), params, normalisation_for(volume))
    model.save(tmp_path / "m")
    again = UNetModel.load(tmp_path / "m")
    assert again.preferred_block()[1:] == (512, 512)
    a = segment_volume(volume.levels[0], model, tmp_path / "a.zarr", block=(16, 96, 96))[...]
    b = segment_volume(volume.levels[0], again, tmp_path / "b.zarr", block=(5, 48, 40), workers=2)[...]
    assert np.array_equal(a, b)
