"""Local variance vs a direct scipy.ndimage computation; the KS test vs scipy; effect sizes; CIs."""

import numpy as np
import pytest
from scipy import ndimage, stats

from defocus_xai.analysis import (VarianceTestResult, cliffs_delta, cohens_d, local_variance,
                                  mean_local_variance, variance_test)


def _direct(x, w, mode="reflect"):
    """Independent reference: uniform_filter of x and x^2 in float64 (spatial axes only)."""
    x = np.asarray(x, dtype=np.float64)
    size = (1, w, w) if x.ndim == 3 else (w, w)
    m1 = ndimage.uniform_filter(x, size=size, mode=mode)
    m2 = ndimage.uniform_filter(x * x, size=size, mode=mode)
    return m2 - m1 * m1


def _minmax(x):
    lo = x.min(axis=(-2, -1), keepdims=True)
    hi = x.max(axis=(-2, -1), keepdims=True)
    return (x - lo) / (hi - lo)


@pytest.mark.parametrize("w", [3, 5, 15])
def test_local_variance_matches_uniform_filter_reflect(w):
    x = np.random.default_rng(w).random((3, 31, 27))
    before = x.copy()
    np.testing.assert_allclose(local_variance(x, window=w, normalize=False), _direct(x, w), atol=1e-12)
    np.testing.assert_allclose(local_variance(x, window=w), _direct(_minmax(x), w), atol=1e-12)
    np.testing.assert_array_equal(x, before)


def test_local_variance_valid_and_zero_borders():
    x = np.random.default_rng(0).random((2, 20, 18))
    w, h = 5, 2
    ref = _direct(x, w)[:, h:-h, h:-h]  # windows fully inside: any padding mode gives the same values
    out = local_variance(x, window=w, border="valid", normalize=False)
    assert out.shape == (2, 16, 14)
    np.testing.assert_allclose(out, ref, atol=1e-12)
    np.testing.assert_allclose(local_variance(x, window=w, border="zeros", normalize=False),
                               _direct(x, w, mode="constant"), atol=1e-12)
    np.testing.assert_allclose(local_variance(x, window=w, border="nearest", normalize=False),
                               _direct(x, w, mode="nearest"), atol=1e-12)
    # even window, valid: direct loop
    out4 = local_variance(x[0], window=4, border="valid", normalize=False)
    direct = np.array([[x[0, i:i + 4, j:j + 4].var() for j in range(15)] for i in range(17)])
    np.testing.assert_allclose(out4, direct, atol=1e-12)
    with pytest.raises(ValueError, match="smaller than"):
        local_variance(x, window=25, border="valid")
    with pytest.raises(ValueError, match="border"):
        local_variance(x, border="wrap")


def test_local_variance_is_stable_under_large_offsets_and_never_negative():
    x = np.random.default_rng(1).random((2, 25, 25))
    v = local_variance(x, window=7, normalize=False)
    v_off = local_variance(x + 1e4, window=7, normalize=False)
    np.testing.assert_allclose(v_off, v, rtol=0, atol=1e-9)
    # piecewise constant with a huge level: flat regions exactly zero, nothing negative
    y = np.where(np.arange(30)[None, :] < 15, 1e6, 1e6 + 1.0) * np.ones((30, 1))
    vy = local_variance(y, window=5, normalize=False)
    assert vy.min() >= 0.0
    assert vy[:, :10].max() == 0.0 and vy[:, 20:].max() == 0.0
    assert vy[:, 14].max() == pytest.approx(0.24, abs=1e-9)  # 2 of 5 columns differ by 1: 0.4 * 0.6
    assert local_variance(np.zeros((3, 10, 10)), window=5).min() >= 0.0


def test_local_variance_layouts():
    x = np.random.default_rng(2).random((2, 1, 12, 12)).astype(np.float32)
    out = local_variance(x, window=3)
    assert out.shape == (2, 1, 12, 12) and out.dtype == np.float64
    np.testing.assert_allclose(out[:, 0], local_variance(x[:, 0], window=3))
    np.testing.assert_allclose(local_variance(x[0, 0], window=3), out[0, 0])
    np.testing.assert_allclose(mean_local_variance(x, window=3), out.mean(axis=(1, 2, 3)))


def test_variance_test_matches_scipy_and_direct_effect_sizes():
    rng = np.random.default_rng(3)
    real = rng.random((30, 20, 20))
    fake = ndimage.uniform_filter(rng.random((25, 20, 20)), size=(1, 3, 3))
    before = real.copy()
    res = variance_test(real_maps=real, fake_maps=fake, window=5, n_boot=500, seed=1)
    np.testing.assert_array_equal(real, before)
    vr = _direct(_minmax(real), 5).mean(axis=(1, 2))
    vf = _direct(_minmax(fake), 5).mean(axis=(1, 2))
    np.testing.assert_allclose(res.values_real, vr, atol=1e-12)
    np.testing.assert_allclose(res.values_fake, vf, atol=1e-12)
    ks = stats.ks_2samp(vr, vf)
    assert res.ks_statistic == pytest.approx(ks.statistic) and res.p_value == pytest.approx(ks.pvalue)
    assert res.mean_real == pytest.approx(vr.mean()) and res.mean_fake == pytest.approx(vf.mean())
    assert res.mean_difference == pytest.approx(vf.mean() - vr.mean())
    brute = np.mean([np.sign(b - a) for a in vr for b in vf])
    assert res.cliffs_delta == pytest.approx(brute)
    sp = np.sqrt(((vr.size - 1) * vr.var(ddof=1) + (vf.size - 1) * vf.var(ddof=1)) / (vr.size + vf.size - 2))
    assert res.cohens_d == pytest.approx((vf.mean() - vr.mean()) / sp)
    assert res.ci_low <= res.mean_difference <= res.ci_high
    assert (res.n_real, res.n_fake, res.n_units_real, res.n_units_fake) == (30, 25, 30, 25)
    assert res.unit == "image" and res.paired_p_value is None and res.n_pairs == 0
    assert not res.values_real.flags.writeable
    d = res.to_dict()
    assert d["ks_statistic"] == res.ks_statistic and len(d["values_fake"]) == 25
    assert "values_real" not in res.to_dict(include_values=False)
    less = variance_test(real_maps=real, fake_maps=fake, window=5, n_boot=50, alternative="less")
    assert less.p_value == pytest.approx(stats.ks_2samp(vr, vf, alternative="less").pvalue)
    with pytest.raises(ValueError, match="alternative"):
        variance_test(real_maps=real, fake_maps=fake, alternative="bigger")


def test_variance_test_groups():
    rng = np.random.default_rng(4)
    real = rng.random((24, 16, 16))
    fake = rng.random((24, 16, 16)) ** 2
    g = np.repeat(np.arange(6), 4)  # 6 videos x 4 frames
    res = variance_test(real_maps=real, fake_maps=fake, window=3, real_groups=g, fake_groups=g, n_boot=300)
    assert (res.n_units_real, res.n_units_fake) == (6, 6)
    gm_r = res.values_real.reshape(6, 4).mean(axis=1)
    gm_f = res.values_fake.reshape(6, 4).mean(axis=1)
    gks = stats.ks_2samp(gm_r, gm_f)
    assert res.unit == "group"
    assert res.ks_statistic == pytest.approx(gks.statistic)
    assert res.p_value == pytest.approx(gks.pvalue)
    plain = variance_test(real_maps=real, fake_maps=fake, window=3, n_boot=300)
    assert plain.unit == "image" and plain.p_value == plain.p_value_frames
    assert res.ks_statistic_frames == plain.ks_statistic and res.p_value_frames == plain.p_value
    assert "frame-level" in res.text and "Warning" in res.text and "Warning" not in plain.text
    # shared ids: a paired design; signed-rank test on per-source differences
    assert res.paired and res.n_units == 6 and res.n_pairs == 6
    assert res.paired_p_value == pytest.approx(stats.wilcoxon(gm_f - gm_r).pvalue)
    assert isinstance(res, VarianceTestResult)


def test_group_ks_is_not_inflated_by_duplicated_frames():
    rng = np.random.default_rng(6)
    # 8 videos per side, each frame a near copy of its video's map: 4 frames add no information
    base_r, base_f = rng.random((8, 16, 16)), rng.random((8, 16, 16)) ** 1.5
    real = np.repeat(base_r, 4, axis=0) + rng.normal(0, 1e-6, (32, 16, 16))
    fake = np.repeat(base_f, 4, axis=0) + rng.normal(0, 1e-6, (32, 16, 16))
    g = np.repeat(np.arange(8), 4)
    res = variance_test(real_maps=real, fake_maps=fake, window=3, real_groups=g, fake_groups=g, n_boot=200)
    assert res.ks_statistic == pytest.approx(res.ks_statistic_frames)
    assert res.p_value > res.p_value_frames  # same D, 8 units instead of 32 frames
    assert (res.n_units_real, res.n_real) == (8, 32)


def test_effect_size_helpers_and_ci_contains_truth():
    assert cliffs_delta([1, 2, 3], [1, 2, 3]) == 0.0
    assert cliffs_delta([3, 4], [1, 2]) == -1.0
    assert cohens_d([1.0, 1.0], [1.0, 1.0]) == 0.0
    rng = np.random.default_rng(5)
    hits = 0
    for rep in range(20):
        x = rng.normal(0, 1, 200)
        y = rng.normal(0.5, 1, 200)
        from defocus_xai.analysis import bootstrap_difference_ci
        ci = bootstrap_difference_ci(x, y, n_boot=400, seed=rep)
        hits += ci.low <= 0.5 <= ci.high
    assert hits >= 16  # nominal 95 %


def _video_maps(n_videos, n_frames, size, seed):
    """Null data with video structure: every frame is its video's map plus a little noise."""
    rng = np.random.default_rng(seed)
    base = rng.random((n_videos, size, size)) ** rng.uniform(0.5, 3.0, (n_videos, 1, 1))
    return np.repeat(base, n_frames, axis=0) + rng.normal(0, 0.01, (n_videos * n_frames, size, size))


def test_variance_test_null_video_data_headline_not_significant():
    # 40 videos x 32 frames, real and fake drawn alike: no class signal, strong video structure
    real = _video_maps(20, 32, 16, seed=0)
    fake = _video_maps(20, 32, 16, seed=1)
    g_r, g_f = np.repeat(np.arange(20), 32), np.repeat(np.arange(20, 40), 32)
    res = variance_test(real_maps=real, fake_maps=fake, window=5, real_groups=g_r, fake_groups=g_f, n_boot=300)
    assert res.unit == "group" and (res.n_units_real, res.n_units_fake) == (20, 20)
    assert res.p_value > 0.05          # the headline: 20 vs 20 videos
    assert res.p_value_frames < 1e-3   # the frame-level test mistakes video structure for a class effect
    assert not res.paired and res.n_pairs == 0 and res.n_units == 40
    assert "Warning" in res.text and "frame-level" in res.text


def test_variance_test_refuses_mismatched_grids_and_large_windows():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"\(16, 16\).*\(8, 8\)"):
        variance_test(real_maps=rng.random((4, 16, 16)), fake_maps=rng.random((4, 8, 8)), window=3)
    with pytest.raises(ValueError, match="50x50 window"):
        local_variance(rng.random((4, 4)), window=50)
    with pytest.raises(ValueError, match="larger than|smaller than"):
        variance_test(real_maps=rng.random((4, 8, 8)), fake_maps=rng.random((4, 8, 8)), window=15)
    bad = rng.random((4, 8, 8))
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        variance_test(real_maps=bad, fake_maps=rng.random((4, 8, 8)), window=3)


def test_variance_test_ci_from_one_group_is_flagged():
    rng = np.random.default_rng(1)
    with pytest.warns(UserWarning, match="fewer than 2"):
        res = variance_test(real_maps=rng.random((4, 8, 8)), fake_maps=rng.random((4, 8, 8)), window=3,
                            real_groups=[0] * 4, fake_groups=[1] * 4, n_boot=50)
    assert res.too_few_units and np.isnan(res.ci_low) and np.isnan(res.ci_high)
    assert "no CI" in res.text
