"""Local variance of defocus maps and the real-vs-fake test on it.

The local variance over a ``w x w`` window is ``mean(x^2) - mean(x)^2`` (uniform weights, stride 1),
computed in float64 on centred data; the border handling is a parameter. See docs/analysis.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from ._checks import as_float_array, as_labels, check_confidence, readonly
from ._results import plain_dict
from .masks import normalize_maps
from .stats import bootstrap_difference_ci, cliffs_delta, cohens_d, group_codes, paired_signed_rank, shares_ids

__all__ = ["local_variance", "mean_local_variance", "variance_test", "VarianceTestResult"]

_NP_PAD = {"reflect": "symmetric", "nearest": "edge", "zeros": "constant"}
_BORDERS = ("reflect", "nearest", "zeros", "valid")


def _spatial_batch(maps) -> tuple[np.ndarray, tuple]:
    """(N, H, W) view of maps given as (H, W), (N, H, W) or (N, 1, H, W); plus the original shape."""
    arr = as_float_array(maps, "maps")
    shape = arr.shape
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(f"maps must have shape (H, W), (N, H, W) or (N, 1, H, W), got {shape}")
    return arr, shape


def _box_mean_valid(x: np.ndarray, w: int) -> np.ndarray:
    """Mean over every w x w window that fits in the last two axes (stride 1)."""
    for axis in (-2, -1):
        c = np.cumsum(x, axis=axis)
        n = x.shape[axis]
        lead = np.take(c, np.arange(w - 1, n), axis=axis)
        lag = np.take(c, np.arange(0, n - w), axis=axis)
        zeros_shape = list(lag.shape)
        zeros_shape[axis] = 1
        lag = np.concatenate([np.zeros(zeros_shape), lag], axis=axis)
        x = (lead - lag) / w
    return x


def _local_variance_batch(arr: np.ndarray, window: int, border: str, normalize: bool) -> np.ndarray:
    """Local variance of an (n, H, W) float batch, float64 output."""
    x = normalize_maps(arr) if normalize else arr
    x = x.astype(np.float64)
    if border != "valid":
        before = (window - 1) // 2
        after = window - 1 - before
        x = np.pad(x, ((0, 0), (before, after), (before, after)), mode=_NP_PAD[border])
    # centre each sample (after padding, so zero padding keeps its meaning)
    x = x - x.mean(axis=(1, 2), keepdims=True)
    m1 = _box_mean_valid(x, window)
    m2 = _box_mean_valid(x * x, window)
    return np.maximum(m2 - m1 * m1, 0.0)


def _check_args(window: int, border: str, shape_hw: tuple) -> int:
    if isinstance(window, bool) or int(window) != window or int(window) < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    window = int(window)
    if border not in _BORDERS:
        raise ValueError(f"border must be one of {_BORDERS}, got {border!r}")
    if shape_hw[0] < window or shape_hw[1] < window:
        raise ValueError(f"maps of size {tuple(shape_hw)} are smaller than the {window}x{window} window: "
                         "choose a window no larger than the map")
    return window


def local_variance(maps, window: int = 15, border: str = "reflect", normalize: bool = True,
                   chunk_size: int = 32) -> np.ndarray:
    """Local variance over a uniform ``window x window`` neighbourhood, stride 1.

    Parameters
    ----------
    maps : array_like
        (H, W), (N, H, W) or (N, 1, H, W) defocus maps. Not modified.
    window : int
        Side of the square window (15 in the reference), at most the map's height and width
        (``ValueError`` otherwise). Even sizes put the extra row/column after the centre.
    border : {"reflect", "nearest", "zeros", "valid"}
        ``"reflect"`` (default): mirror at the edge, output has the input's size, no invented edge.
        ``"zeros"``: the paper's code, zero padding counted as data (``avg_pool2d`` with
        ``padding=window // 2, count_include_pad=True``): a map that is bright at its border gets an
        artificial edge there, which adds to the variance (docs/reproduce_paper.md gives its size).
        ``"valid"``: only windows fully inside the map, output ``(H - window + 1, W - window + 1)``
        (average pooling with no padding). ``"nearest"``: edge replication.
    normalize : bool
        Per-sample min-max normalization to [0, 1] first (:func:`normalize_maps`), as the reference.
    chunk_size : int
        Samples processed at once.

    Returns
    -------
    ndarray of float64
        Same layout as ``maps`` (spatial size reduced for ``"valid"``); every value ``>= 0``.

    Examples
    --------
    >>> x = np.zeros((5, 5)); x[:, 3:] = 1.0
    >>> v = local_variance(x, window=3, normalize=False)
    >>> v.shape, round(float(v[2, 0]), 6), round(float(v[2, 2]), 6)
    ((5, 5), 0.0, 0.222222)
    >>> round(float(v[2, 4]), 6), round(float(local_variance(x, window=3, border="zeros", normalize=False)[2, 4]), 6)
    (0.0, 0.222222)
    """
    arr, shape = _spatial_batch(maps)
    window = _check_args(window, border, arr.shape[1:])
    step = max(1, int(chunk_size))
    parts = [_local_variance_batch(arr[s:s + step], window, border, normalize)
             for s in range(0, arr.shape[0], step)]
    out = np.concatenate(parts, axis=0)
    if len(shape) == 2:
        return out[0]
    if len(shape) == 4:
        return out[:, None]
    return out


def mean_local_variance(maps, window: int = 15, border: str = "reflect", normalize: bool = True,
                        chunk_size: int = 32) -> np.ndarray:
    """Per-image mean of :func:`local_variance`, shape (N,), computed chunk by chunk (low memory).

    Examples
    --------
    >>> mean_local_variance(np.zeros((3, 20, 20))).tolist()
    [0.0, 0.0, 0.0]
    """
    arr, _ = _spatial_batch(maps)
    window = _check_args(window, border, arr.shape[1:])
    step = max(1, int(chunk_size))
    return np.concatenate([_local_variance_batch(arr[s:s + step], window, border, normalize).mean(axis=(1, 2))
                           for s in range(0, arr.shape[0], step)])


@dataclass(frozen=True, eq=False)
class VarianceTestResult:
    """Result of :func:`variance_test` (real vs fake per-image mean local variance).

    Attributes
    ----------
    ks_statistic, p_value : float
        The headline two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``) at the level of
        ``unit``: on per-group means when groups were given (one value per video), otherwise on
        per-image values.
    unit : {"group", "image"}
        What one observation of the headline test is.
    ks_statistic_frames, p_value_frames : float
        The same test on per-image values. With groups it is secondary: frames of one video are not
        independent, so this p-value is too small (``text`` says so).
    paired_statistic, paired_p_value : float or None
        Wilcoxon signed-rank test on per-source differences (fake mean minus real mean per shared id)
        when ``real_groups`` and ``fake_groups`` share ids (a paired design); ``None`` otherwise or with
        fewer than 2 shared ids.
    n_pairs : int
        Ids present on both sides (0 for an unpaired design).
    mean_real, mean_fake : float
        Mean of the per-image values.
    mean_difference : float
        ``mean_fake - mean_real``.
    ci_low, ci_high : float
        Percentile bootstrap CI of ``mean_difference``: groups resampled when given, shared ids
        resampled jointly on both sides (``paired``); NaN with ``too_few_units``.
    confidence : float
    paired : bool
        The CI resampled shared ids jointly.
    too_few_units : bool
        The CI rests on fewer than 2 units (on a side); its bounds are NaN.
    cliffs_delta : float
        ``P(fake > real) - P(fake < real)`` over image pairs, in [-1, 1].
    cohens_d : float
        ``mean_difference`` divided by the pooled standard deviation (ddof 1).
    n_real, n_fake : int
        Images per side.
    n_units_real, n_units_fake : int
        Independent units per side (groups, or images without groups).
    n_units : int
        Units the CI resampled: distinct ids for a paired design, the sum of both sides otherwise.
    window, border, normalize, alternative, n_boot
        Settings used.
    text : str
        The result in words, with the unit of every test and a warning on frame-level p-values.
    values_real, values_fake : ndarray
        Per-image mean local variance (read-only), for plotting.
    """

    ks_statistic: float
    p_value: float
    unit: str
    ks_statistic_frames: float
    p_value_frames: float
    paired_statistic: float | None
    paired_p_value: float | None
    n_pairs: int
    mean_real: float
    mean_fake: float
    mean_difference: float
    ci_low: float
    ci_high: float
    confidence: float
    paired: bool
    too_few_units: bool
    cliffs_delta: float
    cohens_d: float
    n_real: int
    n_fake: int
    n_units_real: int
    n_units_fake: int
    n_units: int
    window: int
    border: str
    normalize: bool
    alternative: str
    n_boot: int
    text: str
    values_real: np.ndarray = field(repr=False)
    values_fake: np.ndarray = field(repr=False)

    def to_dict(self, include_values: bool = True) -> dict:
        """Fields as plain Python values; arrays become lists (dropped with ``include_values=False``)."""
        return plain_dict(self, optional=("values_real", "values_fake"), include_optional=include_values)


def _group_means(values: np.ndarray, groups) -> np.ndarray:
    codes, n_units = group_codes(groups, values.shape[0])
    return np.bincount(codes, weights=values, minlength=n_units) / np.bincount(codes, minlength=n_units)


def _fmt_p(p) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def _variance_text(r: dict, grouped: bool) -> str:
    """The result in words (``r``: the result's fields)."""
    ci = ("no CI (fewer than 2 units)" if r["too_few_units"] else
          f"{100 * r['confidence']:.0f}% CI [{r['ci_low']:.3g}, {r['ci_high']:.3g}]")
    how = (f"paired over {r['n_units']} shared sources" if r["paired"] else
           f"{r['n_units_real']} vs {r['n_units_fake']} {'groups' if grouped else 'images'}")
    text = (f"Mean local variance real {r['mean_real']:.4g}, fake {r['mean_fake']:.4g}; difference "
            f"{r['mean_difference']:.3g}, {ci} ({how}). ")
    if grouped:
        text += (f"Headline: KS test on per-group means ({r['n_units_real']} vs {r['n_units_fake']} groups), "
                 f"D = {r['ks_statistic']:.3f}, p = {_fmt_p(r['p_value'])}. ")
        if r["paired_p_value"] is not None:
            text += (f"Paired Wilcoxon signed-rank test over {r['n_pairs']} shared sources: "
                     f"p = {_fmt_p(r['paired_p_value'])}. ")
        text += (f"Warning: the frame-level KS p = {_fmt_p(r['p_value_frames'])} (D = {r['ks_statistic_frames']:.3f}, "
                 f"{r['n_real']} vs {r['n_fake']} frames) treats frames of one group as independent and is "
                 "too small; read the group-level p.")
    else:
        text += (f"KS test on per-image values ({r['n_real']} vs {r['n_fake']} images), D = {r['ks_statistic']:.3f}, "
                 f"p = {_fmt_p(r['p_value'])}; no groups were given, so frames are taken as independent.")
    return text


def _per_side(maps, name):
    arr, _ = _spatial_batch(maps)
    if arr.shape[0] < 2:
        raise ValueError(f"{name} needs at least two maps, got shape {arr.shape}")
    return arr


def variance_test(*, real_maps, fake_maps, window: int = 15, real_groups=None, fake_groups=None,
                  n_boot: int = 2000, seed=0, alternative: str = "two-sided", border: str = "reflect",
                  normalize: bool = True, confidence: float = 0.95) -> VarianceTestResult:
    """Compare the per-image mean local variance of real and fake defocus maps.

    Each map is min-max normalized (``normalize=True``), its local variance computed
    (:func:`local_variance`), and averaged over the image. The two distributions of these values are
    compared with the two-sample KS test, effect sizes and a bootstrap CI.

    Parameters
    ----------
    real_maps, fake_maps : array_like
        (N, H, W) or (N, 1, H, W), the same (H, W) on both sides; N may differ (no pairing needed).
    window : int
        Window side (15 in the reference), at most the maps' size.
    real_groups, fake_groups : array_like, optional
        Independent unit per image (video id). When given, the headline KS test runs on per-group
        means (``unit="group"``), the bootstrap resamples groups and the frame-level test is kept as
        ``p_value_frames``. Ids shared by both sides (a fake and its source video) make the design
        paired: the CI resamples shared ids jointly and a signed-rank test on per-source differences
        is added (``paired_p_value``, ``n_pairs``).
    n_boot : int
        Bootstrap replicates.
    seed : int or numpy.random.Generator
    alternative : {"two-sided", "less", "greater"}
        Passed to ``scipy.stats.ks_2samp(real, fake, alternative=...)``; the paired test uses the same
        direction (see Notes).
    border, normalize
        See :func:`local_variance`.
    confidence : float
        Level of the bootstrap CI.

    Returns
    -------
    VarianceTestResult

    Raises
    ------
    ValueError
        Grids differ between the sides (both shapes named), the window exceeds the maps, a side has
        fewer than 2 maps, or a map is not finite.

    Notes
    -----
    ``ks_2samp``'s one-sided alternatives are about the CDFs: "less" means the real CDF lies below the
    fake CDF (fake values tend to be *smaller*); the paired test then asks whether ``fake - real`` per
    source tends to be negative.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> real = rng.random((20, 24, 24)); fake = real[:, ::2, ::2].repeat(2, 1).repeat(2, 2)
    >>> res = variance_test(real_maps=real, fake_maps=fake, window=5, n_boot=200)
    >>> res.mean_fake < res.mean_real, res.unit
    (True, 'image')
    """
    if alternative not in ("two-sided", "less", "greater"):
        raise ValueError(f"alternative must be 'two-sided', 'less' or 'greater', got {alternative!r}")
    confidence = check_confidence(confidence)
    r_arr, f_arr = _per_side(real_maps, "real_maps"), _per_side(fake_maps, "fake_maps")
    if r_arr.shape[1:] != f_arr.shape[1:]:
        raise ValueError(f"real_maps has maps of shape {r_arr.shape[1:]} but fake_maps has {f_arr.shape[1:]}: "
                         "resample both sides to one grid first")
    vr = mean_local_variance(r_arr, window, border, normalize)
    vf = mean_local_variance(f_arr, window, border, normalize)
    if real_groups is not None:
        as_labels(real_groups, "real_groups", vr.size)
    if fake_groups is not None:
        as_labels(fake_groups, "fake_groups", vf.size)
    grouped = real_groups is not None or fake_groups is not None
    ks = stats.ks_2samp(vr, vf, alternative=alternative)
    head = stats.ks_2samp(_group_means(vr, real_groups), _group_means(vf, fake_groups),
                          alternative=alternative) if grouped else ks
    p_stat = p_p = None
    n_pairs = 0
    if shares_ids(real_groups, fake_groups):
        p_stat, p_p, n_pairs = paired_signed_rank(vr, vf, real_groups, fake_groups, alternative=alternative)
    ci = bootstrap_difference_ci(vr, vf, real_groups, fake_groups, n_boot=n_boot, confidence=confidence,
                                 seed=seed)
    r = dict(
        ks_statistic=float(head.statistic), p_value=float(head.pvalue), unit="group" if grouped else "image",
        ks_statistic_frames=float(ks.statistic), p_value_frames=float(ks.pvalue), paired_statistic=p_stat,
        paired_p_value=p_p, n_pairs=n_pairs, mean_real=float(vr.mean()), mean_fake=float(vf.mean()),
        mean_difference=float(vf.mean() - vr.mean()), ci_low=ci.low, ci_high=ci.high, confidence=confidence,
        paired=ci.paired, too_few_units=ci.too_few_units, cliffs_delta=cliffs_delta(vr, vf),
        cohens_d=cohens_d(vr, vf), n_real=int(vr.size), n_fake=int(vf.size),
        n_units_real=group_codes(real_groups, vr.size)[1], n_units_fake=group_codes(fake_groups, vf.size)[1],
        n_units=ci.n_units, window=int(window), border=border, normalize=bool(normalize),
        alternative=alternative, n_boot=int(n_boot))
    return VarianceTestResult(**r, text=_variance_text(r, grouped), values_real=readonly(vr),
                              values_fake=readonly(vf))
