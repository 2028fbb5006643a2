"""2-D embedding scatter (t-SNE / PCA / UMAP), real vs fake or per fake family."""

from __future__ import annotations

import numpy as np

from . import style as S
from ._convert import attr

__all__ = ["embedding_scatter"]


def _point_groups(y: np.ndarray, fam) -> list:
    """(name, boolean selection, colour) per group of points: reals, then fakes (or each family)."""
    yb = y.astype(int) == 1
    groups = [("real", (~yb), S.REAL_COLOR)]
    if fam is None:
        return groups + [("fake", yb, S.FAKE_COLOR)]
    pal = [c for c in S.PALETTE if c != S.REAL_COLOR]
    for k, name in enumerate(dict.fromkeys(fam[yb])):
        groups.append((name, yb & (fam == name), pal[k % len(pal)]))
    return groups


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
        are shown in the title (numbers computed on the features or the embedding, as the
        analysis states; this function only displays them).
    families : array-like of str, (N,), optional
        Fake family per sample: fakes are coloured per family, reals stay one colour.
    method : str
        Name of the embedding for the axis labels.
    max_points : int or None
        Draw at most this many points (a seeded random subset, for readable PDFs); ``None`` all.
    seed : int
        Seed of that subset.
    title : str, optional
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
    groups = _point_groups(y, fam)
    parts = [method] + _separability_parts(separability)
    with S.house_style():
        fig, ax = (ax.figure, ax) if ax is not None else S.new_figure(width="single", aspect=0.9)
        ms = 6 if idx.size > 1000 else 10
        for name, m, c in groups:
            sel = idx[m[idx]]
            ax.scatter(e[sel, 0], e[sel, 1], s=ms, c=c, alpha=0.7, lw=0, label=f"{name} (n={int(m.sum()):,})",
                       rasterized=idx.size > 500)
        ax.set_xlabel(f"{method} 1")
        ax.set_ylabel(f"{method} 2")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="best", markerscale=2, handletextpad=0.3)
        t = " | ".join(parts)
        ax.set_title(f"{title}\n{t}" if title else t)
    return fig
