"""Random draws of the sampling attribution methods: per-sample seeds, the stratified and shap's draws of
(background row, t) pairs, isolated global RNGs.

The draws of sample ``i`` depend on ``(seed, i)`` only, so batch size, sharding and resuming never change a
value. Why the stratified draws estimate the same expectation with a lower variance: ``docs/attribution.md``.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

__all__ = ["SAMPLERS", "sample_seed", "draws", "stratified_draws", "shap_draws", "isolated_rng"]

SAMPLERS = ("stratified", "shap")
"""How expected gradients draw (background row, t) pairs: balanced rows and stratified t, or shap's draws."""


def sample_seed(seed: int, index: int) -> int:
    """The 32-bit seed of the random draws of sample ``index`` under the user's ``seed``.

    Derived with :class:`numpy.random.SeedSequence` from ``(seed, index)``; pass it as shap's ``rseed`` to
    reproduce a value of :func:`~defocus_xai.explain.attribute` with a direct ``shap.GradientExplainer`` call.

    Examples
    --------
    >>> sample_seed(0, 5) == sample_seed(0, 5) != sample_seed(0, 6)
    True
    """
    if int(seed) < 0 or int(index) < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def shap_draws(rseed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """shap GradientExplainer's ``n`` draws for ``rseed`` over ``k`` background rows.

    Per draw, a background row and then ``t ~ U(0, 1)``, from numpy's legacy generator (shap seeds the
    global one with ``np.random.seed(rseed)``: the same stream).

    Examples
    --------
    >>> rows, ts = shap_draws(1, 3, 4)
    >>> rows.shape, bool(((0 <= ts) & (ts < 1)).all())
    ((3,), True)
    """
    rs = np.random.RandomState(rseed)
    rows = np.empty(n, np.int64)
    ts = np.empty(n, np.float64)
    for j in range(n):
        rows[j] = rs.choice(k)
        ts[j] = rs.uniform()
    return rows, ts


def stratified_draws(rseed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` stratified (background row, t) draws for ``rseed`` over ``k`` background rows.

    ``t``: one uniform draw in each of ``n`` equal strata of ``[0, 1)`` (draw ``j`` in ``[j/n, (j+1)/n)``).
    Rows: the strata are cut into consecutive blocks of ``k``; each full block holds every row once, in a
    random order (a random permutation per block), and the last, partial block of ``n mod k`` strata holds
    distinct rows drawn without replacement. So every row is used ``n // k`` or ``n // k + 1`` times (equally
    often when ``k`` divides ``n``), each row's ``t`` values fall one per block, and each draw's row is
    uniform over the ``k`` rows and independent of its ``t``: the mean of ``g(row, t)`` over the draws is an
    unbiased estimate of ``mean_b integral_0^1 g(b, t) dt``. Drawn from ``numpy.random.default_rng(rseed)``.

    Parameters
    ----------
    rseed : int
        The sample's seed (:func:`sample_seed`).
    n : int
        Number of draws (``n_samples``).
    k : int
        Number of background rows.

    Returns
    -------
    rows : ndarray of int64, shape (n,)
    ts : ndarray of float64, shape (n,), increasing

    Examples
    --------
    >>> rows, ts = stratified_draws(1, 8, 4)
    >>> np.bincount(rows, minlength=4).tolist(), bool((np.floor(ts * 8) == np.arange(8)).all())
    ([2, 2, 2, 2], True)
    """
    if int(n) < 1 or int(k) < 1:
        raise ValueError(f"need n >= 1 draws and k >= 1 background rows, got n={n}, k={k}")
    rng = np.random.default_rng(int(rseed))
    q, r = divmod(int(n), int(k))
    blocks = [rng.permutation(k) for _ in range(q)]
    if r:
        blocks.append(rng.choice(k, size=r, replace=False))
    rows = np.concatenate(blocks).astype(np.int64)
    ts = (np.arange(n, dtype=np.float64) + rng.random(n)) / n
    return rows, np.minimum(ts, np.nextafter(1.0, 0.0))


def draws(sampler: str, rseed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` (background row, t) draws of ``sampler`` (one of :data:`SAMPLERS`) for seed ``rseed``.

    Examples
    --------
    >>> rows, ts = draws("shap", 3, 5, 2)
    >>> np.array_equal(rows, shap_draws(3, 5, 2)[0])
    True
    """
    if sampler == "stratified":
        return stratified_draws(rseed, n, k)
    if sampler == "shap":
        return shap_draws(rseed, n, k)
    raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")


@contextlib.contextmanager
def isolated_rng(device: torch.device) -> Iterator[None]:
    """Save numpy's and torch's global random states (and the CUDA one of ``device``); restore them on exit.

    shap reseeds numpy globally and captum draws from the global generators: this keeps a caller's random
    streams unchanged by an attribution.

    Examples
    --------
    >>> before = np.random.get_state()[1][:3].tolist()
    >>> with isolated_rng(torch.device("cpu")):
    ...     np.random.seed(123)
    >>> np.random.get_state()[1][:3].tolist() == before
    True
    """
    np_state = np.random.get_state()
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(np_state)
