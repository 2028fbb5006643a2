"""Localization metrics on hand-built cases with known answers (Quantus definitions)."""

import numpy as np
import pytest

from defocus_xai.analysis import (LocalizationSummary, attribution_auroc, localization_scores, pointing_game,
                                  relevance_mass_accuracy, relevance_rank_accuracy)


def _mask(shape, *cells):
    m = np.zeros(shape, dtype=bool)
    for c in cells:
        m[c] = True
    return m


def test_pointing_game_hit_miss_ties_tolerance_weighted():
    a = np.zeros((6, 6))
    a[1, 1] = 3.0
    m = _mask((6, 6), (1, 1), (1, 2))
    assert pointing_game(a, m) == 1.0
    far = _mask((6, 6), (4, 4))
    assert pointing_game(a, far) == 0.0
    assert pointing_game(a, far, tolerance=4.0) == 0.0  # distance sqrt(18) ~ 4.24
    assert pointing_game(a, far, tolerance=4.3) == 1.0
    assert pointing_game(a, m, weighted=True) == pytest.approx(1 - 2 / 36)
    # tie between a pixel outside and one inside: a hit (any maximum inside), as Quantus
    a2 = a.copy()
    a2[5, 5] = 3.0
    assert pointing_game(a2, m) == 1.0
    # sign: the largest magnitude is negative and outside; the largest positive is inside
    a3 = np.zeros((6, 6))
    a3[1, 1], a3[5, 5] = 1.0, -4.0
    assert pointing_game(a3, m, mode="abs") == 0.0
    assert pointing_game(a3, m, mode="positive") == 1.0
    # (C, H, W): channels summed in |.|
    c = np.zeros((3, 6, 6))
    c[0, 4, 4], c[1, 4, 4], c[2, 1, 1] = 2.0, -2.0, 3.0  # |.|-sum 4 at (4,4), 3 at (1,1)
    assert pointing_game(c, far) == 1.0
    assert pointing_game(c, far, mode="raw") == 0.0  # signed sum 0 at (4,4)


def test_relevance_mass_accuracy_by_hand():
    a = np.array([[4.0, -2.0], [1.0, 3.0]])
    m = _mask((2, 2), (0, 0), (0, 1))
    assert relevance_mass_accuracy(a, m) == pytest.approx(6 / 10)  # |a|
    assert relevance_mass_accuracy(a, m, mode="positive") == pytest.approx(4 / 8)
    assert relevance_mass_accuracy(a, m, mode="raw") == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="total relevance"):
        relevance_mass_accuracy(-np.abs(a) + [[0, 0], [0, 0.5]], m, mode="raw")
    with pytest.raises(ValueError, match="empty"):
        relevance_mass_accuracy(a, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="expected"):
        relevance_mass_accuracy(a, np.zeros((3, 2)))


def test_relevance_rank_accuracy_by_hand_and_ties():
    a = np.array([[9.0, 8.0, 1.0], [7.0, 2.0, 0.5]])
    m = _mask((2, 3), (0, 0), (0, 2), (1, 0))  # K = 3, top-3 = 9, 8, 7 -> 2 of them inside
    assert relevance_rank_accuracy(a, m) == pytest.approx(2 / 3)
    # tie at the K-th value: top-2 of [[2,1],[1,0]] = 2 and one of the two 1s (one in, one out)
    t = np.array([[2.0, 1.0], [1.0, 0.0]])
    mt = _mask((2, 2), (0, 1), (1, 1))
    assert relevance_rank_accuracy(t, mt) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="constant"):
        relevance_rank_accuracy(np.ones((2, 2)), mt)


def test_attribution_auroc_vs_pairwise_count():
    rng = np.random.default_rng(0)
    a = rng.random((8, 8))
    a[0, 0] = a[7, 7]  # one tie across classes
    m = rng.random((8, 8)) > 0.7
    pos, neg = a[m], a[~m]
    brute = np.mean([1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg])
    assert attribution_auroc(a, m) == pytest.approx(brute)
    assert attribution_auroc(m.astype(float) + 0.1 * a, m) == 1.0
    assert attribution_auroc(-(m.astype(float)) - 1.0, m, mode="raw") == 0.0
    with pytest.raises(ValueError, match="whole image"):
        attribution_auroc(a, np.ones((8, 8)))


def test_localization_scores_table_skips_and_groups():
    rng = np.random.default_rng(1)
    n, h, w = 8, 10, 10
    masks = np.zeros((n, h, w), dtype=np.uint8)
    for i in range(n):
        masks[i, i % 5:i % 5 + 4, 2:6] = 1
    attrs = rng.normal(size=(n, 3, h, w)) + 4.0 * masks[:, None]
    masks[6] = 0  # empty mask
    attrs[7] = 0.0  # dead attribution
    before = attrs.copy()
    with pytest.warns(UserWarning, match="skipped 2 of 8"):
        s = localization_scores(attrs, masks, groups=[0, 0, 1, 1, 2, 2, 3, 3], n_boot=200)
    np.testing.assert_array_equal(attrs, before)
    assert isinstance(s, LocalizationSummary)
    assert s.n == 6 and s.n_skipped == 2 and s.n_units == 3
    assert dict(zip(s.skipped["sample"], s.skipped["reason"])) == {6: "empty_mask", 7: "constant_attribution"}
    for _, row in s.per_sample.iterrows():
        i = int(row["sample"])
        assert row["pointing_game"] == pointing_game(attrs[i], masks[i])
        assert row["relevance_mass_accuracy"] == pytest.approx(relevance_mass_accuracy(attrs[i], masks[i]))
        assert row["relevance_rank_accuracy"] == pytest.approx(relevance_rank_accuracy(attrs[i], masks[i]))
        assert row["auroc"] == pytest.approx(attribution_auroc(attrs[i], masks[i]))
        assert row["mask_fraction"] == pytest.approx(16 / 100)
    summ = s.summary.set_index("metric")
    assert summ.loc["auroc", "mean"] > 0.9 and summ.loc["pointing_game", "mean"] == 1.0
    for metric, row in summ.iterrows():
        assert row["ci_low"] <= row["mean"] <= row["ci_high"] and row["n_units"] == 3
    # random attributions: near chance
    rand = localization_scores(rng.normal(size=(20, h, w)), np.repeat(masks[:1], 20, axis=0), n_boot=100)
    assert abs(rand.summary.set_index("metric").loc["auroc", "mean"] - 0.5) < 0.1
    assert s.to_dict()["n_skipped"] == 2
    assert "2 degenerate sample(s) skipped: 6 (empty_mask), 7 (constant_attribution)" in s.text
    # a CI on one group is flagged, not zero-width
    one = localization_scores(attrs[:2], masks[:2], groups=[0, 0], n_boot=50)
    assert one.summary["too_few_units"].all() and one.summary["ci_low"].isna().all()
    assert "Too few units" in one.text
