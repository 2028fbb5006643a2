"""Defocus maps for the detectors: sigma (pixels) -> ``[0, 1]``, and the estimator a detector owns.

The trade-off between the two scalings is explained in ``docs/detectors.md`` ("Map normalization").
"""

from __future__ import annotations

import inspect
import warnings

import torch

__all__ = ["scale_sigma_maps", "MAP_NORMS"]

#: Accepted ``map_norm`` values.
MAP_NORMS = ("minmax", "fixed")
#: Keys of an estimator configuration that describe it but are not constructor parameters.
_ESTIMATOR_INFO_KEYS = frozenset({"class", "version", "type", "name", "library_version"})


def check_maps(maps: torch.Tensor, where: str) -> torch.Tensor:
    """``(B, 1, H, W)`` (or ``(B, H, W)``) floating maps -> ``(B, 1, H, W)``; a named error otherwise."""
    if not torch.is_tensor(maps):
        raise TypeError(f"{where}: maps must be a torch.Tensor (B, 1, H, W), got {type(maps).__name__}")
    if maps.ndim == 3:
        maps = maps.unsqueeze(1)
    if maps.ndim != 4 or maps.shape[1] != 1:
        raise ValueError(f"{where}: maps must have shape (B, 1, H, W), got {tuple(maps.shape)}")
    if not maps.is_floating_point():
        raise TypeError(f"{where}: maps must be floating point, got dtype {maps.dtype}")
    return maps


def scale_sigma_maps(sigma: torch.Tensor, method: str = "minmax", *, sigma_max: float = 5.0,
                     eps: float = 1e-8) -> torch.Tensor:
    """Scale defocus maps (sigma in pixels) to ``[0, 1]`` the way a detector's backbone sees them.

    The analyses' :func:`defocus_xai.analysis.normalize_maps` is the numpy per-sample min-max for
    figures and statistics; this is the torch scaling that is part of a detector.

    Parameters
    ----------
    sigma : torch.Tensor
        ``(B, 1, H, W)`` maps in pixels.
    method : {"minmax", "fixed"}
        ``"minmax"``: per-sample ``(m - min) / (max - min)`` (a constant map gives zeros);
        ``"fixed"``: ``clamp(m / sigma_max, 0, 1)``.
    sigma_max : float
        The blur (pixels) mapped to 1 by ``"fixed"``.
    eps : float
        A per-sample range at or below ``eps`` counts as constant.

    Returns
    -------
    torch.Tensor
        Same shape, float, in ``[0, 1]``.

    Examples
    --------
    >>> m = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    >>> scale_sigma_maps(m, "minmax").flatten().tolist()
    [0.0, 0.25, 0.5, 1.0]
    >>> scale_sigma_maps(m, "fixed", sigma_max=2.0).flatten().tolist()
    [0.0, 0.5, 1.0, 1.0]
    """
    if method == "fixed":
        if not sigma_max > 0:
            raise ValueError(f"sigma_max must be > 0, got {sigma_max!r}")
        return torch.clamp(sigma / float(sigma_max), 0.0, 1.0)
    if method != "minmax":
        raise ValueError(f"map_norm must be one of {MAP_NORMS}, got {method!r}")
    flat = sigma.flatten(1)
    lo = flat.min(dim=1).values.view(-1, *([1] * (sigma.ndim - 1)))
    hi = flat.max(dim=1).values.view(-1, *([1] * (sigma.ndim - 1)))
    rng = hi - lo
    ok = rng > eps
    out = (sigma - lo) / torch.where(ok, rng, torch.ones_like(rng))
    return torch.where(ok, out, torch.zeros_like(out))


def build_estimator(estimator):
    """None | DefocusEstimator | dict (its ``config()`` or constructor kwargs) -> DefocusEstimator."""
    from ..defocus import DefocusEstimator, EstimatorConfig

    if estimator is None:
        return DefocusEstimator()
    if isinstance(estimator, DefocusEstimator):
        return estimator
    if isinstance(estimator, dict):
        params = {*inspect.signature(EstimatorConfig).parameters, "device"}
        kwargs = {k: v for k, v in estimator.items() if k in params}
        dropped = sorted(set(estimator) - set(kwargs))
        if set(dropped) - _ESTIMATOR_INFO_KEYS:
            warnings.warn(f"estimator config keys not understood by DefocusEstimator and ignored: {dropped}")
        return DefocusEstimator(**kwargs)
    raise TypeError(
        f"estimator must be None, a DefocusEstimator or a dict of its parameters, got {type(estimator).__name__}"
    )


def estimator_config(estimator) -> dict:
    """The estimator's parameters as a plain dict (recorded in identities and sidecars)."""
    return dict(estimator.config())


def square_size(size) -> int | None:
    """An estimator's ``size`` (int, ``(h, w)`` or None) -> the side of its square grid, or None."""
    if isinstance(size, int):
        return size
    if isinstance(size, (tuple, list)) and len(size) == 2 and int(size[0]) == int(size[1]):
        return int(size[0])
    return None
