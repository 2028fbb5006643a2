"""dx.plot: every figure function on small synthetic inputs (Agg backend, no figure left open)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from defocus_xai import analysis as A  # noqa: E402
from defocus_xai import plot as P  # noqa: E402

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _no_open_figures():
    before = set(plt.get_fignums())
    yield
    leaked = set(plt.get_fignums()) - before
    plt.close("all")
    assert not leaked, f"figures left open: {leaked}"


def _close(fig):
    plt.close(fig)


def _cbar_labels(fig):
    return [ax.get_ylabel() or ax.get_xlabel() for ax in fig.axes if hasattr(ax, "_colorbar")]


def test_public_api_and_rcparams_untouched():
    before = dict(matplotlib.rcParams)
    fig = P.variance_pair(real_map=RNG.random((16, 16)), fake_map=RNG.random((16, 16)), window=3)
    _close(fig)
    assert matplotlib.rcParams["font.size"] == before["font.size"]
    for name in P.__all__:
        assert hasattr(P, name), name


def test_defocus_triptych_shared_scale_and_units():
    img = (RNG.random((20, 24, 3)) * 255).astype(np.uint8)
    dense = RNG.random((20, 24)) * 3
    edges = RNG.random((20, 24)) > 0.8
    sparse = np.where(edges, dense, 0.0)
    fig = P.defocus_triptych(img, sparse, dense, edges=edges, title="t")
    assert len(fig.axes) == 4
    assert _cbar_labels(fig) == ["sigma (px)"]
    assert fig.axes[1].images[0].get_clim() == fig.axes[2].images[0].get_clim()
    assert "sparse" in fig.axes[1].get_title() and "dense" in fig.axes[2].get_title()
    _close(fig)


def test_defocus_triptych_accepts_result_and_torch():
    torch = pytest.importorskip("torch")

    class R:  # duck-typed DefocusResult
        dense = torch.rand(2, 1, 16, 16) * 2
        edges = (torch.rand(2, 1, 16, 16) > 0.7).float()
        sparse = dense * edges

    fig = P.defocus_triptych(torch.rand(2, 3, 32, 32), result=R(), index=1, units="normalized")
    assert _cbar_labels(fig) == ["normalized defocus"]
    assert fig.axes[0].images[0].get_array().shape[:2] == (16, 16)  # image shown on the map grid
    _close(fig)


def test_mask_triptych_counts_in_title():
    real = RNG.random((16, 16))
    fake = real.copy()
    fake[:4, :4] = 1.0 - fake[:4, :4] + 2.0
    fig = P.mask_triptych(real_map=real, fake_map=fake, threshold=0.1, normalize=False)
    assert len(fig.axes) == 4
    n = int((np.abs(fake - real) > 0.1).sum())
    assert f"{n:,} px" in fig.axes[2].get_title()
    assert fig.axes[0].images[0].get_clim() == fig.axes[1].images[0].get_clim()
    assert _cbar_labels(fig) == ["sigma (px)"]
    _close(fig)
    fig = P.mask_triptych(real_map=real, fake_map=fake)
    assert _cbar_labels(fig) == ["normalized defocus"]
    _close(fig)


def _activation_df():
    rows = []
    for m, k in [("Deepfakes", 1.0), ("FaceSwap", 0.7)]:
        for t in (0.1, 0.01, 0.001):
            v = k * 1000 * (1 - np.log10(t))
            rows.append(dict(threshold=t, method=m, mean=v, min=v / 2, max=v * 1.5, median=v,
                             mean_fraction=v / 1e4, n_pairs=10, ci_low=v * 0.9, ci_high=v * 1.1))
    return pd.DataFrame(rows)


def test_activation_curve_reversed_log_axis():
    fig = P.activation_curve(_activation_df())
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.xaxis_inverted()
    assert len(ax.lines) == 2
    assert "95% CI" in ax.get_legend().get_title().get_text()
    _close(fig)
    fig = P.activation_curve(_activation_df(), band="minmax", fraction=False)
    assert "min-max" in fig.axes[0].get_legend().get_title().get_text()
    _close(fig)
    with pytest.raises(ValueError, match="q25"):
        P.activation_curve(_activation_df(), band="iqr")


def test_activation_curve_from_analysis():
    real = RNG.random((4, 12, 12))
    fake = real + 0.2 * RNG.random((4, 12, 12))
    df = A.mask_activation(real_maps=real, fake_maps=fake, real_ids=list("abcd"), fake_ids=list("abcd"),
                           n_boot=50)
    fig = P.activation_curve(df)
    assert "of 144" in fig.axes[0].get_ylabel()
    _close(fig)


def test_variance_pair_shared_scale():
    fig = P.variance_pair(real_map=RNG.random((24, 24)), fake_map=RNG.random((24, 24)), window=5)
    assert len(fig.axes) == 3
    assert fig.axes[0].images[0].get_clim() == fig.axes[1].images[0].get_clim()
    assert "local variance" in _cbar_labels(fig)[0]
    assert "mean" in fig.axes[0].get_title()
    _close(fig)


def test_variance_distributions_from_result_and_arrays():
    fig = P.variance_distributions(real_values=RNG.normal(1, 0.1, 30), fake_values=RNG.normal(1.2, 0.1, 30))
    assert len(fig.axes) == 2 and "KS D" in fig.get_suptitle()
    _close(fig)
    res = A.variance_test(real_maps=RNG.random((6, 16, 16)), fake_maps=RNG.random((6, 16, 16)), window=3,
                          n_boot=50, real_groups=list("aabbcc"), fake_groups=list("ddeeff"))
    fig = P.variance_distributions(res, kind="ecdf")
    assert len(fig.axes) == 1
    assert f"D = {res.ks_statistic:.3f}" in fig.get_suptitle() and "per group" in fig.get_suptitle()
    _close(fig)


def test_embedding_scatter_title_numbers():
    e = RNG.normal(size=(30, 2))
    y = np.repeat([0, 1], 15)
    fig = P.embedding_scatter(e, y, separability={"silhouette": 0.25, "knn_accuracy": 0.8})
    t = fig.axes[0].get_title()
    assert "silhouette 0.25" in t and "kNN accuracy 0.80" in t
    _close(fig)
    fam = np.array(["real"] * 15 + ["Deepfakes"] * 8 + ["FaceSwap"] * 7)
    fig = P.embedding_scatter(e, y, families=fam, method="PCA")
    assert len(fig.axes[0].collections) == 3
    assert fig.axes[0].get_xlabel() == "PCA 1"
    _close(fig)


def test_alignment_histogram_and_comparison():
    real = RNG.random((6, 16, 16))
    fake = real.copy()
    fake[:, 4:8, 4:8] *= 0.2
    attr = np.abs(fake - real) + 0.01 * RNG.random((6, 16, 16))
    r = A.alignment_score(attr[0], real_map=real[0], fake_map=fake[0])
    fig = P.alignment_histogram(r, yscale="log")
    t = fig.axes[0].get_title()
    assert f"overlap {r.overlap:.3f}" in t and f"KL {r.kl:.3f}" in t
    assert len(fig.axes[0].patches) == 2 * (len(r.bin_edges) - 1)
    _close(fig)
    s1 = A.alignment_scores(attr, real_maps=real, fake_maps=fake, n_boot=50, n_permutations=10)
    s2 = A.alignment_scores(RNG.random((6, 16, 16)), real_maps=real, fake_maps=fake, n_boot=50,
                            n_permutations=10)
    for kind in ("strip", "bars"):
        fig = P.alignment_comparison({"defocus": s1, "rgb": s2}, kind=kind)
        assert "95% CI" in fig.axes[0].get_title()
        _close(fig)
    fig = P.alignment_comparison({"a": RNG.random(5)})
    assert "normal approx" in fig.axes[0].get_title()
    _close(fig)


@pytest.mark.parametrize("percentile", [99.0, None])
def test_attribution_overlay_symmetric_limits(percentile):
    a = RNG.normal(size=(16, 16)) + 0.5
    fig = P.attribution_overlay(a, image=RNG.random((32, 32, 3)), dmap=RNG.random((16, 16)), percentile=percentile)
    assert len(fig.axes) == 3  # two panels + colorbar
    lim = np.percentile(np.abs(a), 99) if percentile else np.abs(a).max()
    for ax in fig.axes[:2]:
        lo, hi = ax.images[-1].get_clim()
        assert lo == pytest.approx(-hi) and hi == pytest.approx(lim)
    assert _cbar_labels(fig) == ["attribution"]
    _close(fig)


def test_attribution_overlay_rgb_sum_and_separate():
    a = RNG.normal(size=(3, 12, 12))
    fig = P.attribution_overlay(a)
    assert len(fig.axes) == 2 and "sum over RGB" in fig.axes[0].get_title()
    assert fig.axes[0].images[0].get_array().shape == (12, 12)
    _close(fig)
    fig = P.attribution_overlay(a, image=RNG.random((12, 12, 3)), channels="separate")
    assert len(fig.axes) == 4
    lims = {ax.images[-1].get_clim() for ax in fig.axes[:3]}
    assert len(lims) == 1  # one shared scale
    _close(fig)


def test_curves_and_randomization():
    x = np.linspace(0, 1, 6)
    fig = P.deletion_curves(x, {"shap": RNG.random((5, 6)), "random": 1 - x}, auc={"shap": 0.3})
    assert "AUC 0.300" in fig.axes[0].get_legend().get_texts()[0].get_text()
    _close(fig)
    class Curve:  # duck-typed explain.faithfulness.CurveSet
        fractions, scores, auc = x, RNG.random((4, 6)), 0.42

    fig = P.deletion_curves(result={"attribution": Curve(), "random": Curve()}, kind="insertion")
    assert len(fig.axes[0].lines) == 2 and "AUC 0.420" in fig.axes[0].get_legend().get_texts()[1].get_text()
    _close(fig)
    fig = P.localization_curves({"shap": x}, fractions=x)
    assert len(fig.axes[0].lines) == 1
    _close(fig)
    df = pd.DataFrame({"layer": ["logits", "b2", "b1"] * 2, "spearman": [0.9, 0.3, 0.0, 0.9, 0.9, 0.9],
                       "method": ["shap"] * 3 + ["edge"] * 3})
    fig = P.randomization_plot(df)
    ax = fig.axes[0]
    assert ax.get_ylim() == (-1.05, 1.05)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["logits", "b2", "b1"]
    assert any(np.allclose(line.get_ydata(), 0) for line in ax.lines)  # zero line
    _close(fig)


def test_localization_from_summary():
    m = np.zeros((4, 12, 12))
    m[:, 3:6, 3:6] = 1
    s = A.localization_scores(m * 2 + RNG.random((4, 12, 12)), m, n_boot=50)
    fig = P.localization_curves({"shap": s, "random": A.localization_scores(RNG.random((4, 12, 12)), m, n_boot=50)})
    assert "chance" in fig.axes[0].get_title()
    assert fig.axes[0].get_ylim()[1] <= 1.05
    _close(fig)


def test_mask_triptych_draws_the_analysis_mask_and_sides_are_keyword_only():
    real = RNG.random((12, 12)) * 3
    fake = real.copy()
    fake[2:6, 2:6] = RNG.random((4, 4))
    fig = P.mask_triptych(real_map=real, fake_map=fake, threshold=0.05)
    expected = A.binary_mask(real_map=real, fake_map=fake, threshold=0.05)
    np.testing.assert_array_equal(fig.axes[2].images[0].get_array(), expected.astype(float))
    assert f"{int(expected.sum()):,} px" in fig.axes[2].get_title()
    _close(fig)
    with pytest.raises(TypeError, match="positional"):
        P.mask_triptych(real, fake)
    with pytest.raises(TypeError, match="positional"):
        P.variance_pair(real, fake)


def test_plot_modules_import_neither_explain_nor_pipeline():
    import ast
    import pathlib

    for path in pathlib.Path(P.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = "." * node.level + (node.module or "")
                assert not mod.lstrip(".").startswith(("explain", "pipeline", "detect", "cli")), (path.name, mod)
                assert not mod.startswith(("defocus_xai.explain", "defocus_xai.pipeline")), (path.name, mod)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith(("defocus_xai.explain", "defocus_xai.pipeline", "torch"))
                               for a in node.names), path.name


def test_draws_into_given_axes():
    fig, axs = plt.subplots(1, 3)
    out = P.mask_triptych(real_map=RNG.random((8, 8)), fake_map=RNG.random((8, 8)), axes=axs)
    assert out is fig
    _close(fig)
