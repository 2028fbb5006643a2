"""Deletion and insertion curves of an attribution on the defocus map (Petsiuk et al. 2018, RISE).

An attribution ranks the pixels of a defocus map by how much evidence for "fake" they carry. If the
ranking is faithful to the model, then

* **deletion**: replacing the top-ranked pixels by a baseline (information removed) makes the model's
  probability of fake drop fast: a *low* area under the curve is good;
* **insertion**: starting from the baseline and putting back the top-ranked pixels first makes the
  probability rise fast: a *high* area under the curve is good.

:func:`deletion_insertion` computes both curves for every sample at ``steps + 1`` fractions of pixels,
their trapezoid areas over the fraction in ``[0, 1]``, and the same for a seeded random ranking of the
pixels, the chance level to judge an attribution against.

Conventions
    * Ranking: by the attribution *as given*, largest first (positive = evidence for fake, as the
      detectors' logit is "fake"). Pass ``abs(attribution)`` to rank by magnitude instead (then a
      pixel of strong evidence for *real* is deleted early and the deletion curve can rise). Ties are
      broken by the pixel's row-major index, smallest first (a stable sort), so the result is
      deterministic.
    * Step ``k`` changes the first ``round(k * P / steps)`` pixels of the ranking (``P`` pixels per map);
      ``fractions`` holds the exact fraction changed, ``k / steps`` when ``P`` is divisible by ``steps``.
    * Score: the model's probability of fake, ``sigmoid(forward_map(map))`` (with a two-column output:
      ``softmax`` and column ``target``, default 1); ``score="logit"`` records the logit instead.
    * The same baseline map serves both curves: deletion ends at it and insertion starts from it.

Examples
--------
>>> import torch
>>> from defocus_xai.detect.models import DefocusDetector
>>> det = DefocusDetector("small-cnn", estimator={"size": 32}, widths=(4, 8)).eval()
>>> maps = torch.rand(2, 1, 32, 32)
>>> res = deletion_insertion(det, maps, torch.randn(2, 1, 32, 32), steps=4, baseline="zero")
>>> res.deletion.shape, res.fractions.tolist()
((2, 5), [0.0, 0.25, 0.5, 0.75, 1.0])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .attribute import unwrap
from .._device import module_device

__all__ = ["FaithfulnessResult", "CurveSet", "deletion_insertion", "trapezoid_auc", "make_baseline"]

BASELINES = ("blur", "zero", "mean")


@dataclass(frozen=True)
class CurveSet:
    """One family of curves in the form :func:`defocus_xai.plot.deletion_curves` reads (``result=``).

    Attributes
    ----------
    fractions : numpy.ndarray, (K,)
    scores : numpy.ndarray, (N, K)
        Probability of fake per sample and fraction.
    auc : float
        Mean area under the curves.
    """

    fractions: np.ndarray
    scores: np.ndarray
    auc: float


@dataclass(frozen=True)
class FaithfulnessResult:
    """Deletion / insertion curves and their areas, for the attribution and for a random ranking.

    Attributes
    ----------
    fractions : numpy.ndarray, (steps + 1,) float64
        Fraction of pixels deleted (inserted) at each step, from 0 to 1.
    deletion, insertion : numpy.ndarray, (N, steps + 1) float64
        The model's probability of fake (or logit, with ``score="logit"``) along the curves.
        ``deletion[:, 0]`` is the score on the original map and ``deletion[:, -1]`` on the baseline;
        ``insertion`` runs the other way.
    deletion_auc, insertion_auc : numpy.ndarray, (N,) float64
        Trapezoid areas over the fraction in ``[0, 1]`` (lower deletion, higher insertion = better).
    random_deletion, random_insertion : numpy.ndarray or None, (N, steps + 1)
        The same with a seeded random ranking of the pixels (None when ``random_baseline=False``).
    random_deletion_auc, random_insertion_auc : numpy.ndarray or None, (N,)
    baseline : str
        Description of the baseline map (``"blur (sigma 1.6 px)"``, ``"zero"``, ``"mean"``, ``"0.5"``,
        ``"given"``).
    steps : int
    seed : int
        Seed of the random rankings (sample ``i`` uses ``(seed, i)``).
    score : str
        ``"probability"`` (of fake) or ``"logit"``: what the curves record.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: np.ndarray
    insertion_auc: np.ndarray
    random_deletion: np.ndarray | None
    random_insertion: np.ndarray | None
    random_deletion_auc: np.ndarray | None
    random_insertion_auc: np.ndarray | None
    baseline: str
    steps: int
    seed: int
    score: str = "probability"

    def __len__(self) -> int:
        return int(self.deletion.shape[0])

    def to_dict(self) -> dict:
        """Fields as plain Python values (arrays become lists)."""
        return {f.name: (v.tolist() if isinstance(v := getattr(self, f.name), np.ndarray) else v)
                for f in fields(self)}

    def curves(self, kind: str = "deletion") -> dict[str, CurveSet]:
        """``{"attribution": CurveSet, "random": CurveSet}`` for ``plot.deletion_curves(result=...)``.

        Examples
        --------
        >>> from defocus_xai.plot import deletion_curves                        # doctest: +SKIP
        >>> deletion_curves(result=res.curves("insertion"), kind="insertion")   # doctest: +SKIP
        """
        if kind not in ("deletion", "insertion"):
            raise ValueError(f"kind must be 'deletion' or 'insertion', got {kind!r}")
        out = {"attribution": CurveSet(self.fractions, getattr(self, kind),
                                       float(np.mean(getattr(self, f"{kind}_auc"))))}
        rnd = getattr(self, f"random_{kind}")
        if rnd is not None:
            out["random"] = CurveSet(self.fractions, rnd, float(np.mean(getattr(self, f"random_{kind}_auc"))))
        return out

    def summary(self) -> pd.DataFrame:
        """Mean, standard deviation and standard error of each area over samples.

        Rows: ``deletion_auc``, ``insertion_auc``, ``insertion_minus_deletion`` (per-sample difference,
        higher = better), ``score_original`` and ``score_baseline`` (the model's score on the original
        and on the baseline map: when they are close, no ranking can make a curve move) and, when
        computed, the ``random_`` counterparts and ``*_vs_random`` (attribution minus random per
        sample: negative is better for deletion, positive for insertion) with the fraction of samples
        where the attribution beats chance (``win_rate``).
        """
        rows = {"deletion_auc": self.deletion_auc, "insertion_auc": self.insertion_auc,
                "insertion_minus_deletion": self.insertion_auc - self.deletion_auc,
                "score_original": self.deletion[:, 0], "score_baseline": self.deletion[:, -1]}
        wins = {}
        if self.random_deletion_auc is not None:
            rows["random_deletion_auc"] = self.random_deletion_auc
            rows["random_insertion_auc"] = self.random_insertion_auc
            rows["deletion_vs_random"] = self.deletion_auc - self.random_deletion_auc
            rows["insertion_vs_random"] = self.insertion_auc - self.random_insertion_auc
            wins["deletion_vs_random"] = float(np.mean(rows["deletion_vs_random"] < 0))
            wins["insertion_vs_random"] = float(np.mean(rows["insertion_vs_random"] > 0))
        recs = []
        for name, v in rows.items():
            v = np.asarray(v, dtype=np.float64)
            n = v.size
            sd = float(v.std(ddof=1)) if n > 1 else float("nan")
            recs.append({"metric": name, "mean": float(v.mean()), "std": sd,
                         "sem": sd / math.sqrt(n) if n > 1 else float("nan"), "n": n,
                         "win_rate": wins.get(name, float("nan"))})
        return pd.DataFrame.from_records(recs)


# ------------------------------------------------------------------------------------------ helpers


def trapezoid_auc(fractions: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Trapezoid area under ``scores`` (..., K) over ``fractions`` (K,).

    Examples
    --------
    >>> trapezoid_auc(np.array([0.0, 0.5, 1.0]), np.array([1.0, 0.5, 0.0])).item()
    0.5
    """
    x = np.asarray(fractions, dtype=np.float64)
    y = np.asarray(scores, dtype=np.float64)
    return ((y[..., 1:] + y[..., :-1]) * 0.5 * np.diff(x)).sum(axis=-1)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with reflect padding (radius ceil(3 sigma), at most H-1/W-1)."""
    if sigma <= 0:
        return x.clone()
    h, w = x.shape[-2:]
    out = x
    for dim, size in ((-1, w), (-2, h)):
        r = int(min(math.ceil(3.0 * sigma), size - 1))
        if r < 1:
            continue
        t = torch.arange(-r, r + 1, dtype=torch.float64)
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        k = (k / k.sum()).to(device=x.device, dtype=x.dtype)
        c = out.shape[1]
        if dim == -1:
            out = F.conv2d(F.pad(out, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
                           groups=c)
        else:
            out = F.conv2d(F.pad(out, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                           groups=c)
    return out


def make_baseline(maps: torch.Tensor, baseline: Any = "blur", *, blur_sigma: float | None = None
                  ) -> tuple[torch.Tensor, str]:
    """The baseline ("removed information") map for each map, and its description.

    Parameters
    ----------
    maps : torch.Tensor, (N, C, H, W)
    baseline : {"blur", "zero", "mean"}, float or tensor
        ``"blur"``: the map blurred with a Gaussian of ``blur_sigma`` pixels (reflect padding): local
        structure removed, coarse layout kept, as RISE's insertion start; ``"zero"``: 0 (in a normalized
        defocus map: the sharpest value); ``"mean"``: each map's own mean value (a constant map, no
        layout at all); a number: that constant; a tensor broadcastable to ``maps``: as given.
    blur_sigma : float, optional
        Default: 5% of the smaller side, at least 1 pixel.

    Examples
    --------
    >>> m = torch.arange(16.0).view(1, 1, 4, 4)
    >>> make_baseline(m, "mean")[0].unique().tolist(), make_baseline(m, 0.5)[1]
    ([7.5], '0.5')
    """
    if isinstance(baseline, str):
        if baseline == "zero":
            return torch.zeros_like(maps), "zero"
        if baseline == "mean":
            return maps.mean(dim=(-2, -1), keepdim=True).expand_as(maps).clone(), "mean"
        if baseline == "blur":
            s = float(blur_sigma) if blur_sigma is not None else max(1.0, 0.05 * min(maps.shape[-2:]))
            if not s > 0:
                raise ValueError(f"blur_sigma must be > 0, got {blur_sigma!r}")
            return _gaussian_blur(maps, s), f"blur (sigma {s:.3g} px)"
        raise ValueError(f"baseline must be one of {BASELINES}, a number or a tensor, got {baseline!r}")
    if isinstance(baseline, (int, float, np.floating, np.integer)) and not isinstance(baseline, bool):
        v = float(baseline)
        if not math.isfinite(v):
            raise ValueError(f"baseline must be finite, got {baseline!r}")
        return torch.full_like(maps, v), f"{v:g}"
    if isinstance(baseline, np.ndarray):
        baseline = torch.from_numpy(np.ascontiguousarray(baseline))
    if torch.is_tensor(baseline):
        b = baseline.to(device=maps.device, dtype=maps.dtype)
        try:
            b = torch.broadcast_to(b, maps.shape).clone()
        except RuntimeError:
            raise ValueError(f"baseline of shape {tuple(baseline.shape)} does not broadcast to maps "
                             f"{tuple(maps.shape)}") from None
        if not torch.isfinite(b).all():
            raise ValueError("baseline contains NaN or infinity")
        return b, "given"
    raise TypeError(f"baseline must be a string, a number or a tensor, got {type(baseline).__name__}")


def _as_maps(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}")
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise ValueError(f"{name} must be (N, 1, H, W) or (N, H, W), got shape {tuple(x.shape)}")
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int32, torch.int64)):
        raise TypeError(f"{name} must be numeric, got dtype {x.dtype}")
    x = x.detach().float()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return x



def _order(scores: np.ndarray) -> np.ndarray:
    """Per row, pixel indices sorted by decreasing score; ties by increasing index (stable)."""
    return np.argsort(-scores, axis=1, kind="stable")


def _random_order(n: int, p: int, seed: int) -> np.ndarray:
    out = np.empty((n, p), dtype=np.int64)
    for i in range(n):
        out[i] = np.random.default_rng(np.random.SeedSequence([int(seed), i])).permutation(p)
    return out


def _ranks(order: np.ndarray) -> torch.Tensor:
    """Inverse permutation: rank[i, pixel] = position of pixel in order[i]."""
    r = np.empty_like(order)
    rows = np.arange(order.shape[0])[:, None]
    r[rows, order] = np.arange(order.shape[1])[None, :]
    return torch.from_numpy(r)


def _score(logits: torch.Tensor, target: int | None, score: str) -> torch.Tensor:
    out = logits.reshape(logits.shape[0], -1).float()
    if out.shape[1] == 1:
        if target not in (None, 0):
            raise ValueError(f"target={target} out of range for a model with one output")
        return torch.sigmoid(out[:, 0]) if score == "probability" else out[:, 0]
    t = 1 if target is None else int(target)
    if not 0 <= t < out.shape[1]:
        raise ValueError(f"target={t} out of range for a model with {out.shape[1]} outputs")
    return torch.softmax(out, dim=1)[:, t] if score == "probability" else out[:, t]


def _curves(fn, x: torch.Tensor, base: torch.Tensor, ranks: torch.Tensor, counts: torch.Tensor,
            batch_size: int, target: int | None, device: torch.device, score: str
            ) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion probabilities (N, K) for one ranking, in batches of <= batch_size maps."""
    n, c, h, w = x.shape
    k = counts.numel()
    flat_x, flat_b = x.reshape(n, c, h * w), base.reshape(n, c, h * w)
    dele = np.empty(n * k)
    ins = np.empty(n * k)
    total = n * k
    for s in range(0, total, batch_size):
        j = torch.arange(s, min(total, s + batch_size))
        i, step = j // k, j % k
        changed = (ranks[i] < counts[step][:, None]).unsqueeze(1)  # (b, 1, P)
        xi, bi = flat_x[i], flat_b[i]
        d_in = torch.where(changed, bi, xi).reshape(-1, c, h, w)
        i_in = torch.where(changed, xi, bi).reshape(-1, c, h, w)
        both = torch.cat([d_in, i_in]).to(device)
        p = _score(fn(both), target, score).double().cpu().numpy()
        m = j.numel()
        dele[s:s + m], ins[s:s + m] = p[:m], p[m:]
    return dele.reshape(n, k), ins.reshape(n, k)


# --------------------------------------------------------------------------------------------- API


def deletion_insertion(detector: nn.Module, maps: Any, attributions: Any, *, steps: int = 20,
                       baseline: Any = "blur", batch_size: int = 64, target: int | None = None, seed: int = 0,
                       random_baseline: bool = True, blur_sigma: float | None = None,
                       score: str = "probability") -> FaithfulnessResult:
    """Deletion and insertion curves (and their AUC) of defocus-map attributions.

    Parameters
    ----------
    detector : nn.Module
        A detector with ``forward_map`` (normalized maps -> logits), e.g.
        :class:`~defocus_xai.detect.models.DefocusDetector`; DataParallel / DDP are unwrapped. It runs in
        eval mode without gradients on its own device; its modes are restored.
    maps : tensor or array, (N, 1, S, S) or (N, S, S)
        The normalized defocus maps in ``[0, 1]`` that were explained.
    attributions : tensor or array, same shape as ``maps``
        One value per map pixel; larger = more evidence for fake (see the module documentation for
        ``abs``). E.g. the output of :func:`~defocus_xai.explain.attribute.attribute` with
        ``space="defocus"``.
    steps : int
        Number of steps between 0 and all pixels (``steps + 1`` points per curve).
    baseline : {"blur", "zero", "mean"}, float or tensor
        What a deleted pixel becomes and where insertion starts (see :func:`make_baseline`).
    batch_size : int
        Maps per forward pass (deletion and insertion inputs together).
    target : int, optional
        Output column for models with several outputs (softmax; default 1). One-logit models: sigmoid.
    seed : int
        Seed of the random ranking (sample ``i``: ``numpy.random.SeedSequence([seed, i])``).
    random_baseline : bool
        Also compute the curves of a random ranking, the chance level.
    blur_sigma : float, optional
        Sigma in pixels of ``baseline="blur"`` (default 5% of the map side, at least 1).
    score : {"probability", "logit"}
        What the curves record: the probability of fake (default, bounded, comparable across models) or
        the raw logit. A confident model saturates the sigmoid (probabilities stuck near 0 or 1 while the
        logit moves): then all AUCs are close to each other and to chance, and ``"logit"`` shows the
        differences (its AUCs are in logit units and not bounded).

    Returns
    -------
    FaithfulnessResult
        Curves, areas, the random ranking's curves and areas; ``summary()`` tabulates the areas and
        ``curves(kind)`` feeds :func:`defocus_xai.plot.deletion_curves`.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.detect.models import DefocusDetector
    >>> det = DefocusDetector("small-cnn", estimator={"size": 32}, widths=(4, 8)).eval()
    >>> maps = torch.rand(2, 1, 32, 32)
    >>> res = deletion_insertion(det, maps, torch.randn(2, 1, 32, 32), steps=5)
    >>> res.deletion_auc.shape, res.summary()["metric"].tolist()[:2]
    ((2,), ['deletion_auc', 'insertion_auc'])
    """
    if score not in ("probability", "logit"):
        raise ValueError(f"score must be 'probability' or 'logit', got {score!r}")
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if int(batch_size) < 2:
        raise ValueError(f"batch_size must be >= 2 (a deletion and an insertion input), got {batch_size}")
    det = unwrap(detector)
    if not hasattr(det, "forward_map"):
        raise ValueError(f"deletion_insertion needs a detector with forward_map (maps -> logits), got "
                         f"{type(det).__name__}")
    x = _as_maps(maps, "maps")
    a = _as_maps(attributions, "attributions")
    if a.shape != x.shape:
        if a.ndim == 4 and x.shape[1] == 1 and a.shape[0] == x.shape[0] and a.shape[2:] == x.shape[2:]:
            a = a.sum(1, keepdim=True)  # per-channel attributions of a repeated map: one value per pixel
        else:
            raise ValueError(f"attributions of shape {tuple(a.shape)} do not match maps {tuple(x.shape)}")
    n, c, h, w = x.shape
    if n == 0:
        raise ValueError("maps is empty")
    p = h * w
    base, desc = make_baseline(x, baseline, blur_sigma=blur_sigma)
    counts_np = np.rint(np.arange(steps + 1) * p / steps).astype(np.int64)
    fractions = counts_np / p
    counts = torch.from_numpy(counts_np)
    # one ranking per sample; channels (if several) share the pixel's rank
    order = _order(a.sum(1).reshape(n, p).double().numpy())
    device = module_device(det)
    per_pass = max(1, int(batch_size) // 2)
    modes = {m: m.training for m in det.modules()}
    det.eval()
    try:
        with torch.no_grad():
            dele, ins = _curves(det.forward_map, x, base, _ranks(order), counts, per_pass, target, device,
                                score)
            r_dele = r_ins = None
            if random_baseline:
                r_dele, r_ins = _curves(det.forward_map, x, base, _ranks(_random_order(n, p, seed)), counts,
                                        per_pass, target, device, score)
    finally:
        for m, t in modes.items():
            m.training = t
    return FaithfulnessResult(
        fractions=fractions,
        deletion=dele,
        insertion=ins,
        deletion_auc=trapezoid_auc(fractions, dele),
        insertion_auc=trapezoid_auc(fractions, ins),
        random_deletion=r_dele,
        random_insertion=r_ins,
        random_deletion_auc=None if r_dele is None else trapezoid_auc(fractions, r_dele),
        random_insertion_auc=None if r_ins is None else trapezoid_auc(fractions, r_ins),
        baseline=desc,
        steps=steps,
        seed=int(seed),
        score=score,
    )
