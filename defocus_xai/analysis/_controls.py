"""Controls of the alignment score (private): what an uninformative attribution would score.

``map_value``: |attribution| = the fake's map value (what gradient x input with an all-zero reference
grows with); ``uniform``: the same weight on every pixel; ``permutation``: another sample's attribution.
Each is compared with the attribution per independent unit. See docs/analysis.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

__all__: list[str] = []

#: Names of the controls, in report order.
CONTROL_NAMES = ("permutation", "map_value", "uniform")


def control_overlaps(idx: np.ndarray, A: np.ndarray, fake: np.ndarray, bins: int) -> tuple[float, float]:
    """(map-value, uniform) overlaps of one sample with its difference histogram ``A`` (NaN: empty)."""
    out = []
    for w in (np.abs(fake).ravel(), None):
        h = np.bincount(idx, weights=w, minlength=bins)
        tot = h.sum()
        out.append(float(np.minimum(A, h / tot).sum()) if tot > 0 else float("nan"))
    return out[0], out[1]


def control_test(observed: np.ndarray, control: np.ndarray, groups, alpha: float) -> dict:
    """How the attribution's overlaps compare with a control's, per independent unit.

    Per-sample differences ``observed - control`` are averaged per group (when given); ``share_beaten``
    is the share of units with a positive difference and ``p_value`` the one-sided Wilcoxon signed-rank
    test that the differences tend to be positive (1.0 when all differences are zero; ``None`` with
    fewer than 2 units). ``beaten``: a higher mean and ``p_value < alpha``.
    """
    ok = np.isfinite(control)
    if not ok.any():
        return {"mean_overlap": None, "share_beaten": None, "p_value": None, "n_units": 0, "n_undefined":
                int(control.size), "beaten": False}
    d = observed[ok] - control[ok]
    if groups is not None:
        d = pd.Series(d).groupby(np.asarray(groups)[ok]).mean().to_numpy()
    if d.size < 2:
        p = None
    elif not np.any(d):
        p = 1.0
    else:
        p = float(stats.wilcoxon(d, alternative="greater").pvalue)
    mean_c = float(control[ok].mean())
    return {"mean_overlap": mean_c, "share_beaten": float(np.mean(d > 0)), "p_value": p, "n_units": int(d.size),
            "n_undefined": int((~ok).sum()),
            "beaten": bool(p is not None and p < alpha and float(observed[ok].mean()) > mean_c)}


def _fmt(p) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def alignment_text(s: dict, grouped: bool) -> str:
    """The alignment summary in words (``s``: the summary's fields)."""
    unit = f"{s['n_units']} groups" if grouped else "no groups: each sample is one unit"
    ci = ("no CI (fewer than 2 units)" if s["too_few_units"] else
          f"{100 * s['confidence']:.0f}% CI [{s['ci_low']:.3f}, {s['ci_high']:.3f}]")
    text = f"Mean overlap {s['mean_overlap']:.3f}, {ci}, over {s['n']} samples ({unit}). "
    parts, failed = [], []
    for name in CONTROL_NAMES:
        c = s["control_details"].get(name)
        if c is None or c["mean_overlap"] is None:
            continue
        parts.append(f"{name.replace('_', ' ')} {c['mean_overlap']:.3f} (beaten on {100 * c['share_beaten']:.0f}% "
                     f"of {c['n_units']} units, p = {_fmt(c['p_value'])})")
        if not c["beaten"]:
            failed.append(name.replace("_", " "))
    if parts:
        text += "Controls (mean overlap; one-sided signed-rank test per unit): " + "; ".join(parts) + ". "
        text += ("The attribution beats every control. " if not failed else
                 f"The attribution does NOT beat these controls: {', '.join(failed)}; its alignment is not "
                 "evidence that it follows the manipulation. ")
    if s["p_value"] is not None:
        text += f"Permutation test of the mean overlap: p = {_fmt(s['p_value'])}"
        text += (" (sample-level; frames of one group are not independent, so read the per-unit tests "
                 "above). " if grouped else ". ")
    if s["n_skipped"]:
        named = ", ".join(f"{i} ({r})" for i, r in zip(s["skipped"], s["skip_reasons"]))
        text += f"{s['n_skipped']} degenerate sample(s) skipped: {named}."
    return text.strip()
