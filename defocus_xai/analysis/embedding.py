"""2-D embeddings of detector features and a separability figure of merit.

:func:`embed` gives the t-SNE / PCA / UMAP picture; :func:`separability` the numbers that make it
comparable across runs (silhouette, cross-validated k-NN accuracy). See docs/analysis.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ._checks import as_float_array, as_labels

__all__ = ["embed", "separability", "SeparabilityResult"]


def _features_2d(features, name="features") -> np.ndarray:
    x = as_float_array(features, name).astype(np.float64, copy=False)
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (N, D) (or (N, ...), flattened), got {x.shape}")
    if x.ndim > 2:
        x = x.reshape(x.shape[0], -1)
    if x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"{name} needs at least 2 samples and 1 feature, got {x.shape}")
    return x


def embed(features, *, method: str = "tsne", perplexity: float = 30.0, pca_dims: int | None = 50,
          seed: int = 0, **kwargs) -> np.ndarray:
    """Embed feature vectors in two dimensions.

    Parameters
    ----------
    features : array_like, shape (N, D)
        One row per sample (e.g. globally pooled backbone features). (N, ...) is flattened to (N, D).
    method : {"tsne", "pca", "umap"}
        ``"tsne"``: ``sklearn.manifold.TSNE(perplexity=perplexity, init="pca", random_state=seed)``,
        after PCA to ``min(pca_dims, N, D)`` dimensions when ``D > pca_dims``. ``"pca"``: first two
        principal components. ``"umap"``: ``umap.UMAP(random_state=seed)`` when the ``umap-learn``
        package is installed (``ImportError`` with the install command otherwise); the PCA step applies
        as for t-SNE.
    perplexity : float
        t-SNE perplexity; must be smaller than N (the reference used 5, 10, 20, 40).
    pca_dims : int or None
        Dimensions kept by the PCA step before t-SNE / UMAP; ``None`` disables it.
    seed : int
        Random state for PCA, t-SNE and UMAP.
    **kwargs
        Extra keyword arguments for the TSNE / UMAP constructor.

    Returns
    -------
    ndarray of float64, shape (N, 2)

    Raises
    ------
    ValueError
        All rows are identical (scikit-learn's t-SNE would crash the interpreter on them), features are
        not finite, or fewer than 2 samples.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(30, 8))
    >>> embed(x, method="pca").shape
    (30, 2)
    """
    from sklearn.decomposition import PCA

    x = _features_2d(features)
    n, d = x.shape
    if not np.ptp(x, axis=0).any():
        raise ValueError(f"all {n} feature rows are identical (zero variance in every dimension): there is "
                         "nothing to embed (check the feature extraction: a dead layer or identical inputs)")
    if method == "pca":
        k = min(2, n, d)
        out = PCA(n_components=k, random_state=seed).fit_transform(x)
        if k < 2:  # a single feature: pad with zeros so the result is always (N, 2)
            out = np.concatenate([out, np.zeros((n, 2 - k))], axis=1)
        return np.asarray(out, dtype=np.float64)
    if method not in ("tsne", "umap"):
        raise ValueError(f"method must be 'tsne', 'pca' or 'umap', got {method!r}")
    if pca_dims is not None:
        if int(pca_dims) < 2:
            raise ValueError(f"pca_dims must be >= 2 or None, got {pca_dims!r}")
        if d > pca_dims:
            x = PCA(n_components=min(int(pca_dims), n, d), random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        if not 0 < float(perplexity) < n:
            raise ValueError(f"perplexity must be positive and smaller than the number of samples "
                             f"({n}), got {perplexity}")
        tsne = TSNE(n_components=2, perplexity=float(perplexity), init="pca", random_state=seed, **kwargs)
        return np.asarray(tsne.fit_transform(x), dtype=np.float64)
    try:
        import umap  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("method='umap' needs the umap-learn package: pip install umap-learn "
                          "(or pip install 'defocus-xai[umap]')") from exc
    kwargs.setdefault("n_neighbors", max(2, min(15, n - 1)))
    reducer = umap.UMAP(n_components=2, random_state=seed, **kwargs)
    return np.asarray(reducer.fit_transform(x), dtype=np.float64)


@dataclass(frozen=True)
class SeparabilityResult:
    """How well labels separate in a feature space or embedding.

    Attributes
    ----------
    silhouette : float
        Mean silhouette coefficient of the labels (Euclidean), in [-1, 1]; near 0 means overlapping
        classes, near 1 compact separated classes. Descriptive: frames of one video sit close together
        whatever their class, so with groups read ``knn_accuracy``.
    knn_accuracy : float
        Mean accuracy of a k-nearest-neighbour classifier under cross-validation: stratified k-fold, or
        with groups stratified *group* k-fold (no group in both the training and the test fold).
    knn_accuracy_std : float
        Standard deviation of the fold accuracies.
    chance_accuracy : float
        Accuracy of always predicting the most frequent class (what ``knn_accuracy`` should beat).
    k : int
        Neighbours.
    n_splits : int
        Cross-validation folds actually used.
    n, n_classes, n_features : int
        Samples, classes and feature dimensions.
    n_units : int
        Independent units (groups, or samples without groups).
    cv : {"stratified", "group"}
        How the folds were made.
    """

    silhouette: float
    knn_accuracy: float
    knn_accuracy_std: float
    chance_accuracy: float
    k: int
    n_splits: int
    n: int
    n_classes: int
    n_features: int
    n_units: int
    cv: str

    def to_dict(self) -> dict:
        """Plain-Python dictionary of the fields."""
        return asdict(self)


def _folds(y_codes: np.ndarray, counts: np.ndarray, groups, n_splits: int, seed: int):
    """(splitter, split groups or None, folds used, independent units)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if groups is None:
        splits = int(min(n_splits, counts.min()))
        return StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed), None, splits, y_codes.size
    g = as_labels(groups, "groups", y_codes.size)
    codes, uniques = pd.factorize(g)
    per_class = [np.unique(codes[y_codes == c]).size for c in range(counts.size)]
    if min(per_class) < 2:
        raise ValueError(f"with groups, every class needs at least 2 groups for cross-validation, got "
                         f"{per_class} groups per class")
    splits = int(min(n_splits, min(per_class)))
    return StratifiedGroupKFold(n_splits=splits, shuffle=True, random_state=seed), codes, splits, len(uniques)


def separability(embedding_or_features, labels, *, groups=None, k: int = 5, seed: int = 0,
                 n_splits: int = 5) -> SeparabilityResult:
    """Silhouette score and cross-validated k-NN accuracy of ``labels`` in a space.

    Parameters
    ----------
    embedding_or_features : array_like, shape (N, D)
        A 2-D embedding from :func:`embed` or the original features.
    labels : array_like, shape (N,)
        Class per sample (e.g. 0 real / 1 fake); at least two classes, each with >= 2 samples.
    groups : array_like, shape (N,), optional
        Independent unit per sample (video id). The folds then keep each group whole (scikit-learn's
        ``StratifiedGroupKFold``): without it, a frame's nearest neighbours are frames of its own video
        in the training fold and the accuracy measures video identity, not class.
    k : int
        Neighbours of the k-NN classifier (capped at the smallest training fold size).
    seed : int
        Shuffling seed of the folds.
    n_splits : int
        Folds (capped at the size of the smallest class, or its number of groups).

    Returns
    -------
    SeparabilityResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(0, 1, (20, 2)), rng.normal(10, 1, (20, 2))])
    >>> res = separability(x, [0] * 20 + [1] * 20)
    >>> res.knn_accuracy, res.silhouette > 0.8
    (1.0, True)
    >>> separability(x, [0] * 20 + [1] * 20, groups=np.arange(40) // 4).cv
    'group'
    """
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    x = _features_2d(embedding_or_features, "embedding_or_features")
    y = as_labels(labels, "labels", x.shape[0])
    classes, y_codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    if classes.size < 2:
        raise ValueError(f"labels must contain at least two classes, got {classes.tolist()}")
    if counts.min() < 2:
        raise ValueError(f"every class needs at least 2 samples for cross-validation, got counts "
                         f"{dict(zip(classes.tolist(), counts.tolist()))}")
    if classes.size >= x.shape[0]:
        raise ValueError("silhouette needs fewer classes than samples")
    if int(k) < 1 or int(n_splits) < 2:
        raise ValueError(f"k must be >= 1 and n_splits >= 2, got k={k}, n_splits={n_splits}")
    sil = float(silhouette_score(x, y_codes))
    cv, g_codes, splits, n_units = _folds(y_codes, counts, groups, int(n_splits), seed)
    smallest_train = min(len(train) for train, _ in cv.split(x, y_codes, g_codes))
    k_eff = int(min(int(k), smallest_train))
    scores = cross_val_score(KNeighborsClassifier(n_neighbors=k_eff), x, y_codes, groups=g_codes, cv=cv)
    return SeparabilityResult(
        silhouette=sil, knn_accuracy=float(scores.mean()), knn_accuracy_std=float(scores.std()),
        chance_accuracy=float(counts.max() / counts.sum()), k=k_eff, n_splits=splits,
        n=int(x.shape[0]), n_classes=int(classes.size), n_features=int(x.shape[1]), n_units=int(n_units),
        cv="stratified" if groups is None else "group")
