"""Alignment score vs a direct NumPy transcription of the paper's code; summary, CI, controls."""

import numpy as np
import pytest
from scipy import stats

from defocus_xai.analysis import AlignmentResult, AlignmentSummary, alignment_score, alignment_scores
from defocus_xai.analysis._permutation import constrained_derangement

EPS = 1e-8


def reference_alignment(fake, real, shap, bins=20, eps=EPS):
    """The paper's alignment code, written out: histograms of fake defocus values over [0, 1] weighted by
    |fake - real| (A) and by |SHAP| (B), L1-normalized; overlap = sum(min(A, B));
    KL = entropy(B + eps || A + eps)."""
    A, edges = np.histogram(fake.ravel(), bins=bins, range=(0.0, 1.0), weights=np.abs(fake - real).ravel())
    B, _ = np.histogram(fake.ravel(), bins=bins, range=(0.0, 1.0), weights=np.abs(shap).ravel())
    A = A / A.sum()
    B = B / B.sum()
    p = (B + eps) / (B + eps).sum()
    q = (A + eps) / (A + eps).sum()
    return np.minimum(A, B).sum(), float(np.sum(p * np.log(p / q))), A, B, edges


def _triples(n=8, h=12, w=10, seed=0):
    rng = np.random.default_rng(seed)
    real = rng.random((n, h, w))
    fake = np.clip(real + rng.normal(0, 0.2, (n, h, w)), 0, 1)
    attr = rng.normal(size=(n, h, w))
    return fake, real, attr


def test_alignment_score_matches_reference_transcription():
    fake, real, attr = _triples()
    fake[0, 0, :4] = [0.0, 0.05, 0.5, 1.0]  # values on bin edges
    for i in range(fake.shape[0]):
        f0, r0, a0 = fake[i].copy(), real[i].copy(), attr[i].copy()
        res = alignment_score(attr[i], real_map=real[i], fake_map=fake[i])
        np.testing.assert_array_equal(fake[i], f0)
        np.testing.assert_array_equal(attr[i], a0)
        ov, kl, A, B, edges = reference_alignment(fake[i], real[i], attr[i])
        assert res.overlap == pytest.approx(ov, abs=1e-12)
        assert res.kl == pytest.approx(kl, rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(res.hist_diff, A, atol=1e-14)
        np.testing.assert_allclose(res.hist_attr, B, atol=1e-14)
        np.testing.assert_allclose(res.bin_edges, edges)
        assert res.kl == pytest.approx(stats.entropy(B + EPS, A + EPS))
    assert isinstance(res, AlignmentResult) and set(res.to_dict()) == {"overlap", "kl", "hist_diff",
                                                                        "hist_attr", "bin_edges"}


def test_alignment_score_channels_bins_and_perfect_alignment():
    fake, real, _ = _triples(n=1)
    rng = np.random.default_rng(1)
    a3 = rng.normal(size=(3, 12, 10))
    res3 = alignment_score(a3, real_map=real[0], fake_map=fake[0], bins=7)
    res1 = alignment_score(np.abs(a3).sum(axis=0), real_map=real[0], fake_map=fake[0], bins=7)
    assert res3.overlap == pytest.approx(res1.overlap) and res3.hist_attr.shape == (7,)
    perfect = alignment_score(3.0 * np.abs(fake[0] - real[0]), real_map=real[0], fake_map=fake[0])
    assert perfect.overlap == pytest.approx(1.0) and perfect.kl == pytest.approx(0.0, abs=1e-9)
    # value_range=None bins over the fake's own range
    res_none = alignment_score(a3, real_map=real[0] * 4, fake_map=fake[0] * 4, value_range=None)
    assert 0.0 <= res_none.overlap <= 1.0


def test_alignment_score_degenerate_and_invalid_inputs_raise():
    fake, real, attr = _triples(n=1)
    with pytest.raises(ValueError, match="fake - real"):
        alignment_score(attr[0], real_map=fake[0], fake_map=fake[0])
    with pytest.raises(ValueError, match="attribution is zero"):
        alignment_score(np.zeros_like(attr[0]), real_map=real[0], fake_map=fake[0])
    with pytest.raises(ValueError, match="outside value_range"):
        alignment_score(attr[0], real_map=real[0], fake_map=fake[0] + 2.0)
    ok = alignment_score(attr[0], real_map=real[0], fake_map=fake[0] + 2.0, normalize=True)
    assert 0.0 <= ok.overlap <= 1.0
    with pytest.raises(ValueError, match=r"real_map has shape \(12, 9\).*fake_map has shape \(12, 10\)"):
        alignment_score(attr[0], real_map=real[0][:, :9], fake_map=fake[0])


def test_alignment_scores_per_sample_summary_and_ci():
    fake, real, attr = _triples(n=10)
    s = alignment_scores(attr, real_maps=real, fake_maps=fake, n_boot=500, n_permutations=30)
    assert isinstance(s, AlignmentSummary)
    ref = np.array([reference_alignment(fake[i], real[i], attr[i])[0] for i in range(10)])
    np.testing.assert_allclose(s.per_sample["overlap"], ref, atol=1e-12)
    assert s.mean_overlap == pytest.approx(ref.mean()) and s.std_overlap == pytest.approx(ref.std(ddof=1))
    assert s.ci_low <= s.mean_overlap <= s.ci_high
    assert s.kl_ci_low <= s.mean_kl <= s.kl_ci_high
    assert (s.n, s.n_units, s.n_skipped) == (10, 10, 0)
    g = np.repeat(["v0", "v1", "v2", "v3", "v4"], 2)
    sg = alignment_scores(attr, real_maps=real, fake_maps=fake, groups=g, n_boot=500, n_permutations=30)
    assert sg.n_units == 5 and list(sg.per_sample["group"]) == list(g)
    assert sg.mean_overlap == pytest.approx(s.mean_overlap)
    d = sg.to_dict(include_per_sample=True)
    assert d["n_units"] == 5 and len(d["per_sample"]) == 10 and len(d["baseline_means"]) == 30


def test_bootstrap_ci_contains_true_mean_on_simple_case():
    from defocus_xai.analysis import bootstrap_mean_ci

    rng = np.random.default_rng(7)
    covered = sum(
        (lambda ci: ci.low <= 2.0 <= ci.high)(bootstrap_mean_ci(rng.normal(2.0, 1.0, 100), n_boot=400, seed=k))
        for k in range(20))
    assert covered >= 16
    ci = bootstrap_mean_ci(np.arange(12.0), groups=np.repeat([0, 1, 2], 4), n_boot=100)
    assert ci.n_units == 3 and ci.estimate == pytest.approx(5.5)


def test_permutation_baseline_random_vs_aligned_attributions():
    # random attributions: the observed mean is one more draw from the baseline distribution,
    # so p-values are spread over (0, 1] (deterministic seeds; one data set alone proves little)
    pvals = []
    for k in range(10):
        fake, real, attr = _triples(n=24, seed=10 + k)
        rand = alignment_scores(attr, real_maps=real, fake_maps=fake, n_boot=20, n_permutations=99, seed=k)
        assert abs(rand.mean_overlap - rand.baseline_mean_overlap) < 0.05
        pvals.append(rand.p_value)
    assert sum(p < 0.05 for p in pvals) <= 2 and 0.25 < np.mean(pvals) < 0.75
    diff = np.abs(fake - real)
    aligned = alignment_scores(diff, real_maps=real, fake_maps=fake, n_boot=200, n_permutations=99, seed=0)
    assert aligned.mean_overlap == pytest.approx(1.0)
    assert aligned.baseline_mean_overlap < 0.99
    assert aligned.p_value == pytest.approx(1 / 100)
    assert aligned.baseline_means.shape == (99,)


def test_permutation_baseline_two_samples_is_the_swap():
    fake, real, attr = _triples(n=2, seed=3)
    s = alignment_scores(attr, real_maps=real, fake_maps=fake, n_boot=50, n_permutations=5)
    swap = np.mean([alignment_score(attr[1], real_map=real[0], fake_map=fake[0]).overlap,
                    alignment_score(attr[0], real_map=real[1], fake_map=fake[1]).overlap])
    np.testing.assert_allclose(s.baseline_means, swap, atol=1e-6)


def test_derangement_respects_groups_and_infeasible_groups_raise():
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(10), 4)
    for _ in range(20):
        p = constrained_derangement(codes, rng)
        assert sorted(p) == list(range(40)) and np.all(codes[p] != codes)
    p = constrained_derangement(np.arange(7), rng)
    assert np.all(p != np.arange(7))
    fake, real, attr = _triples(n=6)
    with pytest.raises(ValueError, match="largest group"):
        alignment_scores(attr, real_maps=real, fake_maps=fake, groups=[0, 0, 0, 0, 1, 2], n_boot=10)


def test_alignment_scores_degenerate_skip_or_raise():
    fake, real, attr = _triples(n=6)
    attr[2] = 0.0
    real[4] = fake[4]  # identical maps: nothing changed, the difference histogram is empty
    with pytest.raises(ValueError, match="sample 2"):
        alignment_scores(attr, real_maps=real, fake_maps=fake, n_boot=10, n_permutations=0, on_degenerate="raise")
    with pytest.warns(UserWarning, match=r"skipped 2 of 6 .*2 \(zero_attribution\), 4 \(identical_maps\)"):
        s = alignment_scores(attr, real_maps=real, fake_maps=fake, n_boot=10, n_permutations=10)
    assert s.n_skipped == 2 and s.skipped == (2, 4) and s.skip_reasons == ("zero_attribution", "identical_maps")
    assert not {2, 4} & set(s.per_sample["sample"])
    assert "2 degenerate sample(s) skipped: 2 (zero_attribution), 4 (identical_maps)" in s.text
    with pytest.warns(UserWarning):
        none = alignment_scores(attr, real_maps=real, fake_maps=fake, n_boot=10, n_permutations=0)
    assert none.p_value is None and none.baseline_mean_overlap is None and none.baseline_means.size == 0
    assert none.controls["permutation"] is None and set(none.control_details) == {"map_value", "uniform"}
    with pytest.raises(ValueError, match="all 2 samples are degenerate"):
        alignment_scores(np.zeros((2, 12, 10)), real_maps=real[:2], fake_maps=fake[:2], n_boot=10)
    with pytest.raises(ValueError, match="attributions has shape"):
        alignment_scores(attr[:4], real_maps=real, fake_maps=fake)


def test_controls_map_value_catches_an_attribution_equal_to_the_map():
    fake, real, _ = _triples(n=30, seed=5)
    fake[:, :4] = np.clip(fake[:, :4] + 0.5, 0, 1)
    s = alignment_scores(fake.copy(), real_maps=real, fake_maps=fake, n_boot=50, n_permutations=20)
    np.testing.assert_allclose(s.per_sample["overlap"], s.per_sample["overlap_map_value"], atol=1e-12)
    mv = s.control_details["map_value"]
    assert mv["share_beaten"] == 0.0 and mv["p_value"] == 1.0 and not mv["beaten"]
    assert not s.beats_all_controls and "map value" in s.text.split("does NOT beat these controls:")[1]
    assert set(s.controls) == {"permutation", "map_value", "uniform"}
    assert s.controls["map_value"] == pytest.approx(s.mean_overlap)
    # the true difference beats every control
    good = alignment_scores(np.abs(fake - real), real_maps=real, fake_maps=fake, n_boot=50, n_permutations=20)
    assert good.beats_all_controls and "beats every control" in good.text
    assert all(d["share_beaten"] > 0.9 for d in good.control_details.values())


def test_controls_match_direct_scores_and_group_level_tests():
    fake, real, attr = _triples(n=12, seed=8)
    g = np.repeat(np.arange(6), 2)
    s = alignment_scores(attr, real_maps=real, fake_maps=fake, groups=g, n_boot=50, n_permutations=10)
    for i in (0, 7):
        assert s.per_sample["overlap_uniform"][i] == pytest.approx(
            alignment_score(np.ones_like(fake[i]), real_map=real[i], fake_map=fake[i]).overlap)
        assert s.per_sample["overlap_map_value"][i] == pytest.approx(
            alignment_score(fake[i], real_map=real[i], fake_map=fake[i]).overlap)
    np.testing.assert_allclose(s.per_sample["overlap_permutation"].mean(), s.baseline_mean_overlap)
    d = (s.per_sample["overlap"] - s.per_sample["overlap_uniform"]).groupby(g).mean()
    u = s.control_details["uniform"]
    assert u["n_units"] == 6 and u["share_beaten"] == pytest.approx(np.mean(d > 0))
    assert u["p_value"] == pytest.approx(stats.wilcoxon(d, alternative="greater").pvalue)
    assert "sample-level" in s.text  # the permutation p-value with groups is flagged
    assert s.to_dict()["controls"] == s.controls
