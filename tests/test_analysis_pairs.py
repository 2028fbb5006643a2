"""Pairing of store arrays, RGB reduction and random controls (dx.analysis.pairs); keyword-only sides."""

import numpy as np
import pytest

from defocus_xai.analysis import (alignment_score, alignment_scores, binary_mask, fake_real_pairs, mask_activation,
                                  pair_by_source, random_attributions, reduce_rgb, variance_test)


def test_fake_real_pairs_indexes_the_full_arrays():
    labels = np.array([0, 1, 0, 1, 1], dtype=np.int8)
    sid = np.array(["a", "b", "b", "a", "zz"])
    p = fake_real_pairs(labels, sid)
    np.testing.assert_array_equal(p, [[1, 2], [3, 0]])  # the unmatched fake "zz" is left out
    assert p.dtype == np.int64
    assert np.all(labels[p[:, 0]] == 1) and np.all(labels[p[:, 1]] == 0)
    np.testing.assert_array_equal(sid[p[:, 0]], sid[p[:, 1]])


def test_fake_real_pairs_with_frames_and_errors():
    labels = [0, 0, 1, 1]
    sid = ["v", "v", "v", "v"]
    with pytest.raises(ValueError, match="ambiguous"):
        fake_real_pairs(labels, sid)
    p = fake_real_pairs(labels, sid, frame_ids=["f1", "f0", "f0", "f1"])
    np.testing.assert_array_equal(p, [[2, 1], [3, 0]])
    with pytest.raises(ValueError, match="no fake sample has a matching real"):
        fake_real_pairs([0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="source_ids has 3 entries"):
        fake_real_pairs([0, 1], ["a", "b", "c"])


def test_reduce_rgb_sums_absolute_channels_and_resamples():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    before = a.copy()
    out = reduce_rgb(a)
    np.testing.assert_array_equal(a, before)
    assert out.shape == (2, 8, 8) and out.dtype == np.float64
    np.testing.assert_allclose(out, np.abs(a.astype(np.float64)).sum(axis=1))
    assert reduce_rgb(a, grid=(8, 8)).shape == (2, 8, 8)
    small = reduce_rgb(np.ones((2, 3, 8, 8)), grid=(4, 6))
    assert small.shape == (2, 4, 6)
    np.testing.assert_allclose(small, 3.0)  # bilinear resampling keeps a constant map
    np.testing.assert_allclose(reduce_rgb(-np.ones((1, 5, 5))), 1.0)  # the reference's (N, H, W) layout
    with pytest.raises(ValueError, match=r"got \(8, 8\)"):
        reduce_rgb(np.ones((8, 8)))
    with pytest.raises(ValueError, match="NaN"):
        reduce_rgb(np.full((1, 3, 2, 2), np.nan))


def test_random_attributions_are_seeded():
    a = random_attributions((3, 4, 4), seed=2)
    assert a.shape == (3, 4, 4) and a.dtype == np.float32 and 0 <= a.min() and a.max() < 1
    np.testing.assert_array_equal(a, random_attributions((3, 4, 4), seed=2))
    assert not np.array_equal(a, random_attributions((3, 4, 4), seed=3))


def test_real_and_fake_sides_cannot_be_passed_by_position():
    m = np.random.default_rng(0).random((4, 6, 6))
    calls = [
        lambda: binary_mask(m[0], m[1]),
        lambda: pair_by_source(["a"], ["a"]),
        lambda: mask_activation(m, m),
        lambda: variance_test(m, m),
        lambda: alignment_score(m[0], m[1], m[2]),
        lambda: alignment_scores(m, m, m),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="positional"):
            call()
