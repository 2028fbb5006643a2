"""The draws of expected gradients: stratified vs shap's, unbiasedness on closed-form models, determinism."""

import numpy as np
import pytest
import torch
from torch import nn

from defocus_xai.explain import attribute
from defocus_xai.explain.samplers import SAMPLERS, draws, sample_seed, shap_draws, stratified_draws

torch.set_num_threads(1)
C, H = 3, 4  # images (B, 3, 4, 4): 48 features


class Polynomial(nn.Module):
    """``f(x) = sum(w * x ** power)`` per sample: an RGB "detector" with a closed-form expected gradient."""

    def __init__(self, power: int, seed: int = 0):
        super().__init__()
        self.power = power
        self.register_buffer("w", torch.randn(1, C, H, H, generator=torch.Generator().manual_seed(seed)))

    def forward(self, x):
        return (self.w * x ** self.power).flatten(1).sum(1, keepdim=True)


def _closed_form(model: Polynomial, x: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """Expected gradients of ``sum(w x^p)`` (p = 1, 2) over the rows of ``bg``: ``mean_b w (x^p - b^p)``."""
    return model.w * (x.double() ** model.power - (bg.double() ** model.power).mean(0, keepdim=True))


@pytest.fixture(scope="module")
def setup():
    g = torch.Generator().manual_seed(5)
    return torch.rand(1, C, H, H, generator=g), torch.rand(5, C, H, H, generator=g)


def _replicas(model, x, bg, sampler, reps, n, seed=0, **kw):
    """``reps`` independent estimates of one input: copies of ``x`` with distinct sample indices."""
    xs = x.expand(reps, -1, -1, -1)
    return attribute(model, xs, method="shap_gradient", space="rgb", background=bg, n_samples=n, seed=seed,
                     sampler=sampler, sample_indices=range(reps), **kw).double()


@pytest.mark.parametrize("n, k", [(20, 4), (23, 4), (3, 7), (9, 1), (200, 10)])
def test_stratified_draws_balance_rows_and_cover_strata(n, k):
    rows, ts = stratified_draws(sample_seed(0, 3), n, k)
    counts = np.bincount(rows, minlength=k)
    assert counts.sum() == n and counts.max() - counts.min() <= (0 if n % k == 0 else 1)
    assert set(counts.tolist()) <= {n // k, n // k + 1}
    for b0 in range(0, n - n % k, k):  # each full block of k strata holds every row once
        assert sorted(rows[b0:b0 + k].tolist()) == list(range(k))
    tail = rows[n - n % k:]
    assert len(set(tail.tolist())) == len(tail)  # the remainder without replacement
    assert np.array_equal(np.floor(ts * n).astype(int), np.arange(n))  # one t in each stratum
    assert ((ts >= 0) & (ts < 1)).all()


def test_stratified_draws_are_jittered_and_seeded():
    a, b = stratified_draws(11, 50, 5), stratified_draws(11, 50, 5)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    c = stratified_draws(12, 50, 5)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])
    # within-stratum offsets are uniform: over many seeds their mean is 1/2 and they fill [0, 1)
    offsets = np.concatenate([stratified_draws(s, 50, 5)[1] * 50 % 1 for s in range(200)])
    assert abs(offsets.mean() - 0.5) < 0.01 and offsets.min() < 0.01 and offsets.max() > 0.99
    # each draw's row is uniform over the rows (what makes the estimator unbiased)
    first = np.array([stratified_draws(s, 7, 3)[0] for s in range(3000)])
    freq = np.stack([(first == r).mean(0) for r in range(3)])
    assert np.abs(freq - 1 / 3).max() < 0.04


def test_draws_dispatch():
    assert SAMPLERS == ("stratified", "shap")
    assert all(np.array_equal(u, v) for u, v in zip(draws("shap", 4, 9, 3), shap_draws(4, 9, 3)))
    assert all(np.array_equal(u, v) for u, v in zip(draws("stratified", 4, 9, 3), stratified_draws(4, 9, 3)))
    with pytest.raises(ValueError, match="unknown sampler"):
        draws("sobol", 4, 9, 3)
    with pytest.raises(ValueError, match="n >= 1"):
        stratified_draws(4, 0, 3)


def test_linear_model_exact_with_balanced_rows(setup):
    """A linear model: the gradient is constant, so balanced rows give the exact value for any draw."""
    x, bg = setup
    lin = Polynomial(1)
    want = _closed_form(lin, x, bg)[0]
    got = _replicas(lin, x, bg, "stratified", reps=6, n=20)
    torch.testing.assert_close(got, want.expand_as(got), rtol=1e-5, atol=1e-6)
    shap_like = _replicas(lin, x, bg, "shap", reps=6, n=20)  # random rows: not exact
    assert float((shap_like - want).abs().max()) > 1e-3


@pytest.mark.parametrize("sampler, n", [("stratified", 20), ("stratified", 13), ("shap", 20)])
def test_quadratic_model_unbiased(setup, sampler, n):
    """The mean of many independent estimates is within a few standard errors of the closed form."""
    x, bg = setup
    quad = Polynomial(2)
    reps = 400
    est = _replicas(quad, x, bg, sampler, reps=reps, n=n, seed=1)
    se = est.std(0) / reps ** 0.5
    z = (est.mean(0) - _closed_form(quad, x, bg)[0]) / (se + 1e-12)
    assert float(z.abs().max()) < 4.5, float(z.abs().max())  # 48 features: |z| < 4.5 fails with p < 4e-4
    assert float(se.max()) > 0  # the estimates do vary


def test_stratified_lower_variance_than_shap_at_equal_passes(setup):
    x, bg = setup
    quad = Polynomial(2)
    var = {s: float(_replicas(quad, x, bg, s, reps=200, n=20, seed=2).var(0).sum()) for s in SAMPLERS}
    # with 199 degrees of freedom a sum of variances is within about +-25 % of its value; the true ratio is
    # far above the bar
    assert var["shap"] > 20 * var["stratified"], var  # measured: about 100x


@pytest.mark.parametrize("method", ["shap_gradient", "gradient_shap"])
def test_values_depend_on_seed_and_index_only(setup, method):
    x, bg = setup
    quad = Polynomial(2)
    xs = torch.rand(6, C, H, H, generator=torch.Generator().manual_seed(9))
    kw = dict(method=method, space="rgb", background=bg, n_samples=17, seed=3)
    full = attribute(quad, xs, **kw)
    for bs, ebs in ((1, 1), (2, 5), (6, 64)):
        torch.testing.assert_close(attribute(quad, xs, batch_size=bs, eval_batch_size=ebs, **kw), full,
                                   rtol=1e-6, atol=1e-7)
    part = attribute(quad, xs[[4, 1]], sample_indices=[4, 1], **kw)  # a shard / resumed batch
    torch.testing.assert_close(part, full[[4, 1]], rtol=1e-6, atol=1e-7)
    assert not torch.allclose(attribute(quad, xs, **{**kw, "seed": 4}), full)


def test_gradient_shap_noise_is_shap_local_smoothing(setup):
    """gradient_shap's stdevs is the batched estimator's input noise, seeded per sample like the draws."""
    x, bg = setup
    quad = Polynomial(2)
    xs = x.expand(3, -1, -1, -1)
    gs = attribute(quad, xs, method="gradient_shap", space="rgb", background=bg, n_samples=12, seed=1,
                   sampler="shap", method_kwargs={"stdevs": 0.1})
    sg = attribute(quad, xs, method="shap_gradient", space="rgb", background=bg, n_samples=12, seed=1,
                   sampler="shap", method_kwargs={"local_smoothing": 0.1})
    torch.testing.assert_close(gs, sg, rtol=1e-6, atol=1e-7)
    plain = attribute(quad, xs, method="gradient_shap", space="rgb", background=bg, n_samples=12, seed=1,
                      sampler="shap")
    assert not torch.allclose(gs, plain)


def test_meta_and_refused_combinations(setup):
    x, bg = setup
    quad = Polynomial(2)
    _, meta = attribute(quad, x, space="rgb", background=bg, n_samples=4, return_meta=True)
    assert meta["sampler"] == "stratified" and meta["params"]["draws"].startswith("stratified")
    _, meta = attribute(quad, x, space="rgb", background=bg, n_samples=4, sampler="shap", return_meta=True)
    assert meta["sampler"] == "shap" and meta["params"]["draws"].startswith("shap")
    _, meta = attribute(quad, x, method="gradient_shap", engine="captum", space="rgb", background=bg,
                        n_samples=4, return_meta=True)
    assert meta["sampler"] == "shap"
    for method, engine in (("shap_gradient", "shap"), ("shap_gradient", "captum"), ("gradient_shap", "captum")):
        with pytest.raises(ValueError, match="sampler='stratified' needs engine='batched'"):
            attribute(quad, x, method=method, engine=engine, sampler="stratified", space="rgb", background=bg,
                      n_samples=4)
    with pytest.raises(ValueError, match="unknown sampler"):
        attribute(quad, x, space="rgb", sampler="latin")
