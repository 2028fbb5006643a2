"""2-D embedding scatter (t-SNE / PCA / UMAP), real vs fake or per fake family."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns

from . import style as S
from ._convert import attr
from ._layout import add_caption, join_title, single_ax

__all__ = ["embedding_scatter"]


def _points(e: np.ndarray, y: np.ndarray, fam, idx: np.ndarray) -> tuple[pd.DataFrame, list]:
    """Drawn points (x, y, class real / fake, group = class or fake family with n) and the group order."""
    cls = np.where(y.astype(int) == 1, "fake", "real")
    grp = cls.astype(object) if fam is None else np.where(cls == "real", "real", fam).astype(object)
    counts = pd.Series(grp).value_counts()
    names = {g: f"{g} (n={int(counts[g]):,})" for g in counts.index}
    return pd.DataFrame({"x": e[idx, 0], "y": e[idx, 1], "class": cls[idx],
                         "group": [names[g] for g in grp[idx]]}), [names[g] for g in dict.fromkeys(
                             ["real"] + [g for g in dict.fromkeys(grp) if g != "real"]) if g in names]


def _separability_parts(separability) -> list:
    parts = []
    sil = attr(separability, "silhouette")
    knn = attr(separability, "knn_accuracy")
    if sil is not None:
        parts.append(f"silhouette {float(sil):.2f}")
    if knn is not None:
        chance = attr(separability, "chance_accuracy")
        of_chance = f" (chance {float(chance):.2f})" if chance is not None else ""
        parts.append(f"kNN accuracy {float(knn):.2f}{of_chance}")
    return parts


def embedding_scatter(
    embedding,
    labels,
    *,
    separability=None,
    families=None,
    method: str = "t-SNE",
    max_points: int | None = 5000,
    seed: int = 0,
    title: str | None = None,
    perplexity: float | None = None,
    embedding_seed: int | None = None,
    computed_on: str = "the features",
    caption: str | None = None,
    ax=None,
):
    """2-D embedding (t-SNE / PCA / UMAP) of features, real vs fake or per fake family.

    Parameters
    ----------
    embedding : array-like, (N, 2)
        Output of :func:`defocus_xai.analysis.embed`.
    labels : array-like, (N,)
        0 = real, 1 = fake.
    separability : Separability or dict, optional
        Output of :func:`defocus_xai.analysis.separability`; ``silhouette`` and ``knn_accuracy``
        are shown in the title, which says they were computed on ``computed_on``.
    families : array-like of str, (N,), optional
        Fake family per sample: colour (hue) per family, reals one colour; the marker (style)
        tells real from fake.
    method : str
        Name of the embedding for the axis labels.
    max_points : int or None
        Draw at most this many points (a seeded random subset, for readable PDFs); ``None`` all.
    seed : int
        Seed of that subset.
    title : str, optional
    perplexity : float, optional
        t-SNE perplexity used, stated in the caption.
    embedding_seed : int, optional
        Seed of the embedding, stated in the caption.
    computed_on : str
        What the separability numbers were computed on (default ``"the features"``; the 2-D picture
        itself distorts distances).
    caption : str, optional
        Text under the figure, after the embedding's settings.
    ax : Axes, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = embedding_scatter(rng.normal(size=(40, 2)), np.repeat([0, 1], 20),
    ...                         separability={"silhouette": 0.12, "knn_accuracy": 0.7})
    >>> "silhouette 0.12" in fig.axes[0].get_title()
    True
    """
    e = np.asarray(S.to_numpy(embedding, name="embedding"))
    y = np.asarray(S.to_numpy(labels, name="labels", dtype=None)).ravel()
    if e.ndim != 2 or e.shape[1] != 2:
        raise ValueError(f"embedding must have shape (N, 2), got {e.shape}")
    if y.shape[0] != e.shape[0]:
        raise ValueError(f"labels has {y.shape[0]} entries, embedding {e.shape[0]} rows")
    fam = None if families is None else np.asarray(families).astype(str).ravel()
    if fam is not None and fam.shape[0] != e.shape[0]:
        raise ValueError(f"families has {fam.shape[0]} entries, embedding {e.shape[0]} rows")
    idx = np.arange(e.shape[0])
    if max_points is not None and e.shape[0] > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(e.shape[0], max_points, replace=False))
    pts, order = _points(e, y, fam, idx)
    sep = _separability_parts(separability)
    settings = [f"{method} of {e.shape[0]:,} samples"]
    if perplexity is not None:
        settings.append(f"perplexity {perplexity:g}")
    if embedding_seed is not None:
        settings.append(f"seed {embedding_seed}")
    if idx.size < e.shape[0]:
        settings.append(f"{idx.size:,} points drawn (random subset, seed {seed})")
    palette = dict(zip(order, [S.REAL_COLOR] + ([S.FAKE_COLOR] if len(order) == 2 else S.PALETTE[1:])))
    created = ax is None
    with S.house_style():
        fig, ax = single_ax(ax, aspect=0.9)
        sns.scatterplot(data=pts, x="x", y="y", hue="group", hue_order=order, palette=palette, style="class",
                        style_order=["real", "fake"], markers={"real": "o", "fake": "X"},
                        s=8 if idx.size > 1000 else 14, alpha=0.75, linewidth=0, ax=ax, rasterized=idx.size > 500)
        ax.set_xlabel(f"{method} 1")
        ax.set_ylabel(f"{method} 2")
        ax.set_xticks([])
        ax.set_yticks([])
        handles, labels = ax.get_legend_handles_labels()
        ax.get_legend().remove()
        keep = [(h, lab) for h, lab in zip(handles, labels) if lab in order]
        for h, lab in keep:  # the hue legend shows each group with its class's marker
            h.set_marker("o" if lab.startswith("real") else "X")
            h.set_label(lab)
        S._legend(ax, created=created, handles=[h for h, _ in keep], ncols=min(len(keep), 3), markerscale=1.3,
                  handletextpad=0.3)
        ax.set_title(join_title(title, f"{', '.join(sep)} (on {computed_on})" if sep else None, fig=fig))
        add_caption(fig, "; ".join(settings) + "." + (f" {caption}" if caption else ""))
    return fig
