"""Embeddings (PCA / t-SNE / UMAP) and the separability figure of merit."""

import importlib.util

import numpy as np
import pytest

from defocus_xai.analysis import SeparabilityResult, embed, separability


def _blobs(n=40, d=12, gap=8.0, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 1, (n, d)), rng.normal(gap, 1, (n, d))])
    return x, np.array([0] * n + [1] * n)


def test_embed_pca_matches_svd_projection():
    x, _ = _blobs(d=6)
    before = x.copy()
    out = embed(x, method="pca")
    np.testing.assert_array_equal(x, before)
    xc = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    ref = xc @ vt[:2].T
    for k in range(2):  # components are defined up to sign
        assert min(np.abs(out[:, k] - ref[:, k]).max(), np.abs(out[:, k] + ref[:, k]).max()) < 1e-8


def test_embed_tsne_shape_determinism_and_errors():
    x, y = _blobs(n=25, d=60)  # wider than pca_dims: PCA step first
    a = embed(x, perplexity=10, seed=3)
    b = embed(x, perplexity=10, seed=3)
    assert a.shape == (50, 2) and np.isfinite(a).all()
    np.testing.assert_allclose(a, b)
    assert separability(a, y).knn_accuracy == 1.0
    with pytest.raises(ValueError, match="perplexity"):
        embed(x[:10], perplexity=30)
    with pytest.raises(ValueError, match="method"):
        embed(x, method="lle")
    with pytest.raises(ValueError, match="NaN"):
        embed(np.full((5, 3), np.nan), method="pca")


@pytest.mark.skipif(importlib.util.find_spec("umap") is not None, reason="umap-learn is installed")
def test_embed_umap_without_package_says_how_to_install():
    with pytest.raises(ImportError, match="pip install umap-learn"):
        embed(np.random.default_rng(0).random((10, 3)), method="umap")


def test_separability_high_for_blobs_and_chance_for_shuffled_labels():
    x, y = _blobs(n=40, d=5)
    res = separability(x, y, k=5, seed=0)
    assert isinstance(res, SeparabilityResult)
    assert res.knn_accuracy == 1.0 and res.silhouette > 0.7
    assert res.chance_accuracy == 0.5 and res.n == 80 and res.n_classes == 2
    # one blob, random labels: nothing to separate
    rng = np.random.default_rng(1)
    z = rng.normal(size=(200, 5))
    lab = rng.permutation(np.repeat([0, 1], 100))
    chance = separability(z, lab, k=5, seed=0)
    assert abs(chance.knn_accuracy - 0.5) < 0.12
    assert abs(chance.silhouette) < 0.05
    assert chance.to_dict()["k"] == 5


def test_separability_errors_and_caps():
    x, y = _blobs(n=3, d=2)
    res = separability(x, y, k=10, n_splits=10)
    assert res.n_splits == 3 and res.k <= 4
    with pytest.raises(ValueError, match="two classes"):
        separability(x, np.zeros(6))
    with pytest.raises(ValueError, match="at least 2 samples"):
        separability(x, [0, 0, 0, 0, 0, 1])
    with pytest.raises(ValueError, match="entries"):
        separability(x, [0, 1])


def test_grouped_separability_on_null_video_data_is_near_chance():
    # 60 videos x 8 frames, labels per video with no class signal: only video identity is in the features
    rng = np.random.default_rng(0)
    video = np.repeat(np.arange(60), 8)
    x = rng.normal(0, 1, (60, 16))[video] + rng.normal(0, 0.05, (480, 16))
    y = np.repeat(rng.permutation(np.repeat([0, 1], 30)), 8)
    leaky = separability(x, y)
    grouped = separability(x, y, groups=video)
    assert leaky.knn_accuracy > 0.95 and leaky.cv == "stratified" and leaky.n_units == 480
    assert 0.35 < grouped.knn_accuracy < 0.65
    assert grouped.cv == "group" and grouped.n_units == 60
    with pytest.raises(ValueError, match="2 groups"):
        separability(x, y, groups=y)


def test_embed_refuses_identical_rows_instead_of_crashing():
    import subprocess
    import sys

    code = ("import numpy as np\nfrom defocus_xai.analysis import embed\n"
            "try:\n    embed(np.ones((30, 8)), method='tsne', perplexity=5)\n"
            "except ValueError as e:\n    print('refused:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "refused: all 30 feature rows are identical" in out.stdout
    for method in ("pca", "tsne"):
        with pytest.raises(ValueError, match="identical"):
            embed(np.full((10, 3), 2.5), method=method, perplexity=3)
    with pytest.raises(ValueError, match="NaN"):
        embed(np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), method="pca")
