"""Torch filter features: agreement with scipy, independence of the block, the spec."""

import numpy as np
import pytest

from app.pipeline.features import FeatureSpec, block_features, compute_features, parse_scales, read_padded


def _volume(shape=(12, 40, 36), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 1000).astype(np.uint16)


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_features_do_not_depend_on_the_block(mode):
    vol = _volume()
    spec = FeatureSpec(scales=(0.7, 1.6, 3.0), mode=mode)
    whole = block_features(vol, (0, 0, 0), vol.shape, spec, (0.0, 1000.0))
    part = block_features(vol, (3, 5, 7), (10, 30, 36), spec, (0.0, 1000.0))
    assert whole.shape == (spec.count, *vol.shape)
    assert np.array_equal(whole[:, 3:10, 5:30, 7:36], part)


def test_gaussian_feature_matches_scipy():
    from scipy import ndimage

    vol = _volume((6, 48, 48)).astype(np.float32)
    spec = FeatureSpec(scales=(2.0,), mode="2d")
    feats = block_features(vol, (0, 0, 0), vol.shape, spec, (0.0, 1.0))
    names = spec.names()
    ours = feats[names.index("gauss 2")]
    ref = ndimage.gaussian_filter(vol, sigma=(0, 2.0, 2.0), mode="mirror", truncate=3.0)
    assert np.allclose(ours, ref, rtol=1e-4, atol=1e-2)


def test_gradient_and_hessian_respond_to_an_edge():
    vol = np.zeros((2, 40, 40), np.float32)
    vol[:, :, 20:] = 1.0
    spec = FeatureSpec(scales=(1.0,), mode="2d")
    feats = block_features(vol, (0, 0, 0), vol.shape, spec, (0.0, 1.0))
    grad = feats[spec.names().index("gradient 1")]
    assert grad[0, 20, 19:21].max() > 0.3 and grad[0, 20, 5] < 1e-6


def test_read_padded_reflects_at_faces():
    vol = np.arange(10, dtype=np.float32).reshape(1, 1, 10).repeat(3, 0).repeat(3, 1)
    out = read_padded(vol, (0, 0, 0), (3, 3, 4), (0, 0, 2))
    assert out[0, 0].tolist() == [2, 1, 0, 1, 2, 3, 4, 5]


def test_spec_and_scales():
    spec = FeatureSpec(scales=(3.5, 0.7), mode="3d")
    assert spec.scales == (0.7, 3.5)
    assert spec.count == 1 + 2 * 10 and len(spec.names()) == spec.count
    assert spec.margin()[0] == spec.reach() > 0
    assert FeatureSpec(mode="2d").margin()[0] == 0
    assert parse_scales("0.7, 1.6,5") == (0.7, 1.6, 5.0)
    with pytest.raises(ValueError, match="scales"):
        parse_scales("a,b")
    with pytest.raises(ValueError, match="mode"):
        FeatureSpec(mode="4d")


def test_compute_features_rejects_a_block_smaller_than_its_margin():
    spec = FeatureSpec(scales=(5.0,))
    with pytest.raises(ValueError):
        compute_features(np.zeros((1, 10, 10), np.float32), spec, (0.0, 1.0))


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_feature_rows_are_the_stacked_features_one_row_per_voxel(mode):
    import torch

    from app.pipeline.features import compute_feature_rows, compute_features_torch

    spec = FeatureSpec(scales=(0.7, 2.0), mode=mode)
    margin = spec.margin()
    padded = _volume(tuple(n + 2 * m for n, m in zip((3, 21, 19), margin)))
    rows, shape = compute_feature_rows(padded, spec, (0.0, 1000.0))
    with torch.no_grad():
        stacked = compute_features_torch(torch.from_numpy(padded), spec, (0.0, 1000.0)).numpy()
    assert shape == (3, 21, 19) and rows.shape == (3 * 21 * 19, spec.count)
    assert np.array_equal(rows, stacked.reshape(spec.count, -1).T)
    assert np.array_equal(compute_features(padded, spec, (0.0, 1000.0)), stacked)


def test_closed_form_eigenvalues_match_linalg():
    import torch

    from app.pipeline.features import _eigen2_into, _eigen3_into

    g = torch.Generator().manual_seed(0)
    xx, yy, zz, xy, xz, yz = torch.randn(6, 20000, generator=g)
    xx[:10], yy[:10], zz[:10], xy[:10], xz[:10], yz[:10] = 1.0, 1.0, 1.0, 0.0, 0.0, 0.0  # a triple eigenvalue
    yy[10:20], xy[10:20] = xx[10:20], 0.0  # ... and some double ones
    outs = [torch.empty(20000) for _ in range(3)]
    _eigen3_into(xx, yy, zz, xy, xz, yz, outs)
    m = torch.stack([torch.stack([xx, xy, xz], -1), torch.stack([xy, yy, yz], -1), torch.stack([xz, yz, zz], -1)], -2)
    expected = torch.linalg.eigvalsh(m.double()).float()
    for i in range(3):
        assert torch.allclose(outs[i], expected[:, 2 - i], atol=1e-5)
    two = [torch.empty(20000) for _ in range(2)]
    _eigen2_into(xx, yy, xy, *two)
    expected2 = torch.linalg.eigvalsh(m[:, :2, :2].double()).float()
    assert torch.allclose(two[0], expected2[:, 1], atol=1e-5) and torch.allclose(two[1], expected2[:, 0], atol=1e-5)
