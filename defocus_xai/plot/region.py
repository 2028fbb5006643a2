"""Region blur contrast figure: per-class distributions of the per-video contrast, AUC in the caption."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns

from . import style as S
from ._convert import attr
from ._layout import add_caption, single_ax

__all__ = ["region_contrast_plot"]


def _classes(units: pd.DataFrame, class_names) -> list[tuple[str, np.ndarray, str]]:
    """(name, per-unit contrasts, colour) per class, real first; one unlabelled class without labels."""
    if "label" not in units.columns:
        return [("all", units["contrast"].to_numpy(dtype=float), S.PALETTE[2])]
    out = []
    for lab, name, colour in ((0, class_names[0], S.REAL_COLOR), (1, class_names[1], S.FAKE_COLOR)):
        v = units.loc[units["label"] == lab, "contrast"].to_numpy(dtype=float)
        if v.size:
            out.append((name, v, colour))
    return out


def _facts(result) -> str:
    auc = attr(result, "auc")
    n_units = attr(result, "n_units")
    parts = []
    if auc is not None:
        lo, hi = attr(result, "auc_ci_low"), attr(result, "auc_ci_high")
        ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and np.isfinite(lo) else " (no CI: too few units)"
        parts.append(f"AUC fake vs real {auc:.2f}{ci}, groups resampled; Mann-Whitney p = {attr(result, 'p_value'):.2g}")
        parts.append(f"{attr(result, 'n_units_real')} real and {attr(result, 'n_units_fake')} fake units")
    parts.append(f"n = {int(n_units)} units ({int(attr(result, 'n'))} frames)")
    return "; ".join(parts) + ". Points: one per unit (its frames averaged); diamond and bar: the class mean and " \
        "the central 95% of its units."


def region_contrast_plot(result, *, class_names=("real", "fake"), units: str = "sigma (px)", seed: int = 0,
                         title: str | None = None, caption: str | None = None, ax=None):
    """Per-class distributions of the region blur contrast (inside minus outside), one point per unit.

    Parameters
    ----------
    result : RegionContrastResult
        Output of :func:`defocus_xai.analysis.region_contrast`; its ``per_unit`` table gives the points
        (one per video), its AUC, test and unit counts the caption.
    class_names : (str, str)
        Names of label 0 and label 1.
    units : str
        Unit of the maps, for the axis label (``"normalized defocus"`` for normalized maps).
    seed : int
        Seed of the jitter.
    title, caption : str, optional
        Title, and text under the figure after the computed facts.
    ax : Axes, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from defocus_xai.analysis import centre_region, region_contrast
    >>> maps = np.random.default_rng(0).random((8, 20, 20))
    >>> res = region_contrast(maps, centre_region((20, 20), 10), labels=[0, 1] * 4, n_boot=100)
    >>> fig = region_contrast_plot(res)
    >>> len(fig.axes)
    1
    """
    units_df = attr(result, "per_unit")
    if not isinstance(units_df, pd.DataFrame) or "contrast" not in units_df.columns:
        raise ValueError("region_contrast_plot needs a RegionContrastResult (with a per_unit table)")
    classes = _classes(units_df, class_names)
    with S.house_style():
        fig, ax = single_ax(ax, width="single", aspect=0.85)
        long = pd.DataFrame({"class": np.repeat([c[0] for c in classes], [c[1].size for c in classes]),
                             "contrast": np.concatenate([c[1] for c in classes])})
        order, palette = [c[0] for c in classes], [c[2] for c in classes]
        sns.violinplot(data=long, x="class", y="contrast", hue="class", order=order, palette=palette, cut=0,
                       inner=None, linewidth=0, alpha=0.25, legend=False, ax=ax)
        state = np.random.get_state()  # seaborn jitters with numpy's global RNG: seed it, give it back after
        np.random.seed(seed)
        try:
            sns.stripplot(data=long, x="class", y="contrast", hue="class", order=order, palette=palette, size=3,
                          alpha=0.7, jitter=0.15, linewidth=0, legend=False, ax=ax)
        finally:
            np.random.set_state(state)
        for i, (name, v, _) in enumerate(classes):
            lo, hi = np.quantile(v, [0.025, 0.975]) if v.size > 1 else (v[0], v[0])
            ax.errorbar([i + 0.3], [v.mean()], yerr=[[v.mean() - lo], [hi - v.mean()]], fmt="D", color="0.1",
                        ms=3.5, capsize=2.5, lw=1)
        ax.axhline(0.0, color="0.5", lw=0.6, ls=(0, (2, 2)))
        ax.set_xticks(range(len(classes)), [f"{name}\nmean {v.mean():.2f} (n={v.size})" for name, v, _ in classes])
        ax.set_xlabel("")
        ax.set_ylabel(f"inside minus outside, {units}")
        if title:
            ax.set_title(title)
        add_caption(fig, _facts(result) + (f" {caption}" if caption else ""))
    return fig
