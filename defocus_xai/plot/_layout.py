"""Layout helpers shared by the plot functions (private): axes, panel sizes, labels, sample names, captions."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from . import style as S

__all__: list[str] = []

_GROUP_COLUMNS = ("method", "group", "family")


def group_column(df: pd.DataFrame, group: str | None) -> str | None:
    """The column that splits ``df`` into lines: ``group`` or the first of method / group / family."""
    if group is not None:
        if group not in df.columns:
            raise ValueError(f"group column {group!r} not in DataFrame columns {list(df.columns)}")
        return group
    for c in _GROUP_COLUMNS:
        if c in df.columns:
            return c
    return None


def single_ax(ax, *, width="single", aspect=0.72):
    """``(figure, ax)``: the given axes, or a new one-panel figure in the house style."""
    if ax is not None:
        return ax.figure, ax
    return S.new_figure(width=width, aspect=aspect)


def panel_height(h: int, w: int, ncols: int, width: float, extra: float = 0.3, cbar: float = 0.75,
                 suptitle: bool = False) -> float:
    """Figure height that fits ``ncols`` images of aspect h/w in ``width`` inches.

    ``cbar`` inches of the width go to a colorbar with its label; ``extra`` to the panel titles.
    """
    img_w = (width - cbar - 0.05 * ncols) / ncols
    return img_w * (h / w) + extra + (0.25 if suptitle else 0.0)


def units_label(units: str) -> str:
    """Colorbar label of a map: sigma in pixels, normalized defocus, or the string given."""
    if units == "sigma":
        return S.LABEL_SIGMA
    if units == "normalized":
        return S.LABEL_NORMALIZED
    return units


def sample_label(*, sample_id=None, family=None, source_id=None, score=None) -> str:
    """How an example figure names its sample: ``"#12, splice, source s0003, score 0.93"`` (known parts only)."""
    parts = []
    if sample_id is not None:
        parts.append(f"#{sample_id}" if isinstance(sample_id, (int, np.integer)) else str(sample_id))
    if family is not None:
        parts.append(str(family))
    if source_id is not None:
        parts.append(f"source {source_id}")
    if score is not None:
        parts.append(f"score {float(score):.2f}")
    return ", ".join(parts)


def join_title(title: str | None, *lines: str | None, fig=None) -> str:
    """``title`` and the non-empty extra lines, one per line (each wrapped to ``fig``'s width when given)."""
    chars = None if fig is None else max(30, int(0.9 * fig.get_figwidth() * 72 / (0.58 * 8)))
    out = [t if chars is None else textwrap.fill(t, chars) for t in (title, *lines) if t]
    return "\n".join(out)


def caption_text(caption: str | None = None, *, n=None, n_label: str = "n", background: str | None = None,
                 baseline: str | None = None, bands: str | None = None) -> str:
    """What was computed, in one caption: ``"n = 40 pairs; reference: zeros; bands: 95% CI. <caption>"``."""
    facts = []
    if n is not None:
        facts.append(f"n = {int(n):,}" + (f" {n_label}" if n_label and n_label != "n" else ""))
    if background is not None:
        facts.append(f"attribution reference: {background}")
    if baseline is not None:
        facts.append(f"deleted pixels replaced by: {baseline}")
    if bands is not None:
        facts.append(bands if bands.startswith("band") else f"bands: {bands}")
    text = "; ".join(facts)
    return (text + ". " if text else "") + (caption or "")


def add_caption(fig, text: str, *, width_in: float | None = None) -> None:
    """Wrap ``text`` to the figure width and put it under the figure (kept inside by constrained layout)."""
    text = text.strip()
    if not text:
        return
    width_in = fig.get_figwidth() if width_in is None else width_in
    chars = max(30, int(0.95 * width_in * 72 / (0.55 * 7)))
    fig.supxlabel(textwrap.fill(text, chars), fontsize=7, color="0.25", ha="center")


def identify(fig, title: str | None, caption: str, *, prefix: str = "", **sample) -> None:
    """Suptitle ``title`` plus the sample's name (``prefix`` + :func:`sample_label`), and ``caption`` under it."""
    who = sample_label(**sample)
    if title or who:
        fig.suptitle(join_title(title, f"{prefix}{who}" if who else None, fig=fig))
    add_caption(fig, caption)
