"""Bootstrap CIs: paired (joint) resampling of shared ids against direct computations; flagged CIs."""

import numpy as np
import pytest
from scipy import stats

from defocus_xai.analysis import BootstrapCI, bootstrap_difference_ci, bootstrap_mean_ci, paired_signed_rank


def _paired(n_src=12, frames=3, seed=0):
    """Per-source level shared by the real and the fake side (strongly correlated sides)."""
    rng = np.random.default_rng(seed)
    level = rng.normal(0, 5, n_src)
    ids = np.repeat(np.arange(n_src), frames).astype(str)
    x = level.repeat(frames) + rng.normal(0, 0.2, ids.size)
    y = level.repeat(frames) + 0.3 + rng.normal(0, 0.2, ids.size)
    return x, y, ids


def test_paired_bootstrap_equals_mean_ci_of_per_source_differences():
    # one frame per source on each side: the joint resampling is the bootstrap of per-source differences,
    # draw for draw (same generator, same multinomial counts)
    x, y, ids = _paired(frames=1)
    ci = bootstrap_difference_ci(x, y, ids, ids, n_boot=500, seed=3)
    direct = bootstrap_mean_ci(y - x, ids, n_boot=500, seed=3)
    assert ci.paired and ci.n_units == 12 and not ci.too_few_units
    assert ci.estimate == pytest.approx(direct.estimate)
    assert (ci.low, ci.high) == pytest.approx((direct.low, direct.high), abs=1e-12)


def test_paired_bootstrap_matches_a_direct_loop_over_source_ids():
    x, y, ids = _paired(frames=3)
    ci = bootstrap_difference_ci(x, y, ids, ids, n_boot=400, seed=5)
    rng = np.random.default_rng(5)
    uniq = np.unique(ids)  # codes follow sorted ids
    reps = []
    for _ in range(400):
        counts = rng.multinomial(uniq.size, np.full(uniq.size, 1.0 / uniq.size))
        drawn = np.repeat(uniq, counts)
        xs = np.concatenate([x[ids == u] for u in drawn])
        ys = np.concatenate([y[ids == u] for u in drawn])
        reps.append(ys.mean() - xs.mean())
    lo, hi = np.quantile(reps, [0.025, 0.975])
    assert (ci.low, ci.high) == pytest.approx((lo, hi), abs=1e-12)
    assert ci.n_units == 12  # distinct sources, not 24
    # independent resampling ignores the shared source level: a far wider interval
    indep = bootstrap_difference_ci(x, y, ids, np.char.add("f", ids), n_boot=400, seed=5)
    assert not indep.paired and indep.n_units == 24
    assert (indep.high - indep.low) > 5 * (ci.high - ci.low)
    assert ci.low <= 0.3 <= ci.high


def test_cis_on_fewer_than_two_units_are_flagged_not_zero_width():
    with pytest.warns(UserWarning, match="fewer than 2"):
        ci = bootstrap_mean_ci([1.0, 2.0, 3.0], groups=["a", "a", "a"], n_boot=50)
    assert isinstance(ci, BootstrapCI) and ci.too_few_units and np.isnan(ci.low) and np.isnan(ci.high)
    assert ci.estimate == 2.0 and ci.n_units == 1
    with pytest.warns(UserWarning, match="fewer than 2"):
        d = bootstrap_difference_ci([0.0, 1.0], [2.0, 3.0, 4.0], ["a", "a"], ["b", "c", "d"], n_boot=50)
    assert d.too_few_units and np.isnan(d.low)
    with pytest.warns(UserWarning, match="fewer than 2"):
        p = bootstrap_difference_ci([0.0, 1.0], [2.0, 3.0], ["a", "a"], ["a", "a"], n_boot=50)
    assert p.paired and p.too_few_units and p.n_units == 1


def test_paired_signed_rank_on_per_source_means():
    x, y, ids = _paired(frames=3)
    stat, p, n = paired_signed_rank(x, y, ids, ids)
    d = y.reshape(12, 3).mean(axis=1) - x.reshape(12, 3).mean(axis=1)
    order = np.argsort(np.unique(ids).astype(int))  # ids sorted as strings
    assert n == 12 and p == pytest.approx(stats.wilcoxon(d).pvalue)
    assert stat == pytest.approx(stats.wilcoxon(d[order]).statistic)
    assert paired_signed_rank([1.0, 2.0], [1.0, 2.0], ["a", "b"], ["a", "b"])[1] == 1.0
    assert paired_signed_rank([1.0, 2.0], [1.0, 2.0], ["a", "b"], ["c", "b"]) == (None, None, 1)
