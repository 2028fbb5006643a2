"""dx.plot: every figure function on small synthetic inputs (Agg backend, no figure left open)."""

import dataclasses
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


def _legend(fig):
    """The figure's legend: outside the axes (figure legend) when the function made the figure."""
    legs = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legs) == 1, legs
    return legs[0]


def _drawn_lines(ax):
    """Lines with data (seaborn also adds empty proxies for its legend)."""
    return [line for line in ax.lines if len(line.get_xdata())]


def _cbar_labels(fig):
    return [ax.get_ylabel() or ax.get_xlabel() for ax in fig.axes if hasattr(ax, "_colorbar")]


def _all_figures():
    """One call of every plot function (name, thunk)."""
    x = np.linspace(0, 1, 6)
    real = RNG.random((4, 16, 16))
    fake = real.copy()
    fake[:, 4:8, 4:8] *= 0.2
    align = A.alignment_score(np.abs(fake - real)[0], real_map=real[0], fake_map=fake[0])
    df = pd.DataFrame({"layer": ["a", "b"] * 4, "spearman": RNG.random(8), "method": "shap"})
    return [
        ("defocus_triptych", lambda: P.defocus_triptych(RNG.random((8, 8, 3)), RNG.random((8, 8)), RNG.random((8, 8)))),
        ("mask_triptych", lambda: P.mask_triptych(real_map=real[0], fake_map=fake[0])),
        ("activation_curve", lambda: P.activation_curve(_activation_df())),
        ("variance_pair", lambda: P.variance_pair(real_map=real[0], fake_map=fake[0], window=3)),
        ("variance_distributions", lambda: P.variance_distributions(real_values=RNG.random(9),
                                                                    fake_values=RNG.random(9))),
        ("embedding_scatter", lambda: P.embedding_scatter(RNG.normal(size=(10, 2)), np.repeat([0, 1], 5))),
        ("alignment_histogram", lambda: P.alignment_histogram(align)),
        ("alignment_comparison", lambda: P.alignment_comparison({"a": RNG.random(5)})),
        ("attribution_overlay", lambda: P.attribution_overlay(RNG.normal(size=(8, 8)))),
        ("localization_curves", lambda: P.localization_curves({"shap": x}, fractions=x)),
        ("deletion_curves", lambda: P.deletion_curves(x, {"shap": RNG.random((3, 6))})),
        ("randomization_plot", lambda: P.randomization_plot(df)),
    ]


@pytest.mark.parametrize("name, make", _all_figures(), ids=[n for n, _ in _all_figures()])
def test_every_plot_leaves_rcparams_identical(name, make):
    matplotlib.rcParams["font.size"] = 11.5  # a user's own setting survives
    before = dict(matplotlib.rcParams)
    try:
        fig = make()
        _close(fig)
        after = dict(matplotlib.rcParams)
        assert {k for k in before if before[k] != after[k]} == set(), name
    finally:
        matplotlib.rcParams.update(matplotlib.rcParamsDefault)
    assert name in P.__all__


def test_house_theme_is_seaborn_colorblind_inside_the_context():
    import seaborn as sns

    with P.style.house_style():
        cycle = [c for c in matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]]
    assert set(cycle) == set(sns.color_palette("colorblind").as_hex())
    assert cycle[:2] == [P.style.REAL_COLOR, P.style.FAKE_COLOR]


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


def test_example_figures_name_their_sample():
    real, fake = RNG.random((12, 12)), RNG.random((12, 12))
    who = dict(sample_id=5, family="splice", source_id="v1", score=0.8)
    for fig in (P.mask_triptych(real_map=real, fake_map=fake, **who), P.variance_pair(real_map=real, fake_map=fake,
                window=3, **who), P.defocus_triptych(RNG.random((12, 12, 3)), real, fake, **who, caption="c.")):
        assert "#5, splice, source v1, score 0.80" in fig.get_suptitle()
        _close(fig)


def test_defocus_rows_can_share_one_colorbar():
    fig, axs = plt.subplots(2, 3)
    for r in range(2):
        P.defocus_triptych(RNG.random((8, 8, 3)), RNG.random((8, 8)), RNG.random((8, 8)) * 2, vmax=2.0,
                           colorbar=r == 1, axes=list(axs[r]))
    assert _cbar_labels(fig) == ["sigma (px)"]
    assert {ax.images[0].get_clim() for ax in axs[:, 1:].ravel()} == {(0.0, 2.0)}
    _close(fig)


def test_activation_legend_is_framed_outside_the_data():
    fig = P.activation_curve(_activation_df(), n=20)
    assert fig.axes[0].get_legend() is None and fig.legends[0].get_frame_on()
    assert "n = 20 pairs" in fig.get_supxlabel()
    _close(fig)


def test_progress_is_quiet_without_a_terminal(capsys):
    from defocus_xai._progress import interactive, progress

    bar = progress(range(3), desc="x")
    assert list(bar) == [0, 1, 2]
    assert bar.disable is (not interactive())
    assert progress(range(3), enabled=False).disable
    assert capsys.readouterr().err == ""


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
    assert "95% CI" in _legend(fig).get_title().get_text()
    _close(fig)
    fig = P.activation_curve(_activation_df(), band="minmax", fraction=False)
    assert "min-max" in _legend(fig).get_title().get_text()
    _close(fig)
    with pytest.raises(ValueError, match="q25"):
        P.activation_curve(_activation_df(), band="iqr")


def test_activation_curve_legend_fits_five_groups():
    fams = ["no_dof", "splice", "depth_inconsistent", "generator_smoothing", "face_swap"]
    df = pd.DataFrame([{"threshold": t, "mean": 100.0 * i + t, "ci_low": 0.0, "ci_high": 900.0, "n_pairs": 9,
                        "family": f} for i, f in enumerate(fams) for t in (0.1, 0.01, 0.001)])
    df.attrs["n_pixels"] = 16384
    fig = P.activation_curve(df)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    leg, ax = _legend(fig).get_window_extent(renderer), fig.axes[0]
    assert leg.x0 >= 0 and leg.x1 <= fig.bbox.width and leg.y1 <= fig.bbox.height
    assert leg.y0 >= ax.get_tightbbox(renderer).y1 - 1  # above the axes, clear of the y label
    assert fig.get_figheight() > 3.4 * 0.72
    _close(fig)


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
    assert "normalized defocus$^2$" in fig.axes[0].get_xlabel()
    _close(fig)


@pytest.mark.parametrize("kind", ["both", "violin+ecdf", "hist", "kde", "ecdf", "violin"])
def test_variance_distributions_per_family(kind):
    rv, fv = RNG.normal(1, 0.1, 20), np.r_[RNG.normal(0.7, 0.1, 10), RNG.normal(1.4, 0.1, 10)]
    fam = ["no_dof"] * 10 + ["splice"] * 10
    fig = P.variance_distributions(real_values=rv, fake_values=fv, families=fam, kind=kind)
    texts = [t.get_text() for leg in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
             for t in leg.get_texts()]
    if kind == "violin":
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["real", "no_dof", "splice"]
    else:
        assert len(texts) == 3 and any(t.startswith("splice (n=10, D = ") for t in texts)
    for ax in fig.axes:  # the statistic is in the title and legend, never written on the data
        assert not ax.texts
    _close(fig)
    with pytest.raises(ValueError, match="families"):
        P.variance_distributions(real_values=rv, fake_values=fv, families=fam[:3])


def test_embedding_scatter_title_numbers():
    e = RNG.normal(size=(30, 2))
    y = np.repeat([0, 1], 15)
    fig = P.embedding_scatter(e, y, separability={"silhouette": 0.25, "knn_accuracy": 0.8})
    t = fig.axes[0].get_title()
    assert "silhouette 0.25" in t and "kNN accuracy 0.80" in t
    _close(fig)
    fam = np.array(["real"] * 15 + ["Deepfakes"] * 8 + ["FaceSwap"] * 7)
    fig = P.embedding_scatter(e, y, families=fam[15:].tolist() and fam, method="t-SNE", perplexity=30,
                              embedding_seed=1, separability={"silhouette": 0.25})
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["real (n=15)", "Deepfakes (n=8)", "FaceSwap (n=7)"]
    assert "(on the features)" in fig.axes[0].get_title()
    assert "perplexity 30" in fig.get_supxlabel() and "seed 1" in fig.get_supxlabel()
    assert fig.axes[0].get_xlabel() == "t-SNE 1"
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
    hd, ha = np.r_[np.full(5, 0.2), np.zeros(15)], np.r_[np.zeros(2), np.full(4, 0.25), np.zeros(14)]
    fig = P.alignment_histogram(hist_diff=hd, hist_attr=ha, bin_edges=np.linspace(0, 1, 21), sample_id=2,
                                family="splice")
    lo, hi = fig.axes[0].get_xlim()
    assert lo == pytest.approx(0.0) and hi == pytest.approx(0.325)  # empty bins trimmed (half a bin kept)
    assert "#2, splice" in fig.axes[0].get_title()
    _close(fig)
    s1 = A.alignment_scores(attr, real_maps=real, fake_maps=fake, n_boot=50, n_permutations=10)
    s2 = A.alignment_scores(RNG.random((6, 16, 16)), real_maps=real, fake_maps=fake, n_boot=50,
                            n_permutations=10)
    for kind in ("strip", "bars"):
        fig = P.alignment_comparison({"defocus": s1, "rgb": s2}, kind=kind, background="zeros")
        assert "95% CI" in fig.axes[0].get_title()
        text = " ".join(t.get_text() for leg in fig.legends for t in leg.get_texts()) + fig.get_supxlabel()
        assert "chance" not in text
        if kind == "strip":
            assert "permutation baseline" in text and "map-value control" in text and "uniform control" in text
            assert "defocus CI lies above the permutation" in fig.get_supxlabel().replace("\n", " ")
            lo, hi = fig.axes[0].get_ylim()  # the empty part of [0, 1] is trimmed
            assert hi <= 1.02 and lo >= -0.02
        _close(fig)
    close = dataclasses.replace(s1, controls={"permutation": 0.774, "map_value": 0.775, "uniform": 0.770})
    fig = P.alignment_comparison({"defocus": close})
    starts = sorted(seg[0][0] for c in fig.axes[0].collections if hasattr(c, "get_segments")
                    for seg in c.get_segments() if len(seg) == 2 and seg[0][1] == seg[1][1])
    assert len(starts) == 3 and len(set(np.round(starts, 6))) == 3  # side by side, not drawn as one line
    assert all(h.get_marker() not in (None, "None", "") for h in fig.legends[0].legend_handles[1:])
    _close(fig)
    fig = P.alignment_comparison({"a": RNG.random(5)})
    assert "normal approx" in fig.axes[0].get_title()
    _close(fig)


@pytest.mark.parametrize("percentile", [99.0, None])
def test_attribution_overlay_symmetric_limits_over_the_image(percentile):
    a = RNG.normal(size=(16, 16)) + 0.5
    fig = P.attribution_overlay(a, image=RNG.random((32, 32, 3)), dmap=RNG.random((16, 16)), percentile=percentile)
    assert len(fig.axes) == 2  # the panel over the image (not over the map) + colorbar
    assert fig.axes[0].get_title() == "on image"
    lim = np.percentile(np.abs(a), 99) if percentile else np.abs(a).max()
    lo, hi = fig.axes[0].images[-1].get_clim()
    assert lo == pytest.approx(-hi) and hi == pytest.approx(lim)
    assert _cbar_labels(fig) == ["attribution"]
    _close(fig)


def test_attribution_panels_share_one_limit_one_colorbar_and_name_the_sample():
    a, b = RNG.normal(size=(16, 16)) * 0.1, RNG.normal(size=(16, 16)) * 0.3
    lim = P.style.symmetric_limit(np.stack([a, b]))
    fig, axs = plt.subplots(1, 2)
    mask = np.zeros((16, 16))
    mask[4:9, 4:9] = 1
    P.attribution_overlay(a, dmap=RNG.random((16, 16)), limit=lim, colorbar=False, axes=[axs[0]], mask=mask)
    P.attribution_overlay(b, image=RNG.random((16, 16, 3)), limit=lim, axes=[axs[1]], mask=mask, sample_id=3,
                          family="splice", source_id="v7", score=0.93, background="zeros")
    assert axs[0].images[-1].get_clim() == axs[1].images[-1].get_clim() == (-lim, lim)
    assert len(_cbar_labels(fig)) == 1
    contour_colors = {tuple(np.round(c.get_edgecolor()[0], 3)) for ax in axs for c in ax.collections}
    assert contour_colors == {(0.0, 0.0, 0.0, 1.0)}  # the mask in one colour in both panels
    assert "#3, splice, source v7, score 0.93" in fig.get_suptitle()
    assert "attribution reference: zeros" in fig.get_supxlabel()
    _close(fig)
    with pytest.raises(ValueError, match="limit"):
        P.attribution_overlay(a, limit=0.0)


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
    assert "AUC 0.300" in _legend(fig).get_texts()[0].get_text()
    _close(fig)
    class Curve:  # duck-typed explain.faithfulness.CurveSet
        fractions, scores, auc = x, RNG.random((4, 6)), 0.42

    fig = P.deletion_curves(result={"attribution": Curve(), "random": Curve()}, kind="insertion")
    assert len(_drawn_lines(fig.axes[0])) == 2 and "AUC 0.420" in _legend(fig).get_texts()[1].get_text()
    _close(fig)
    fig = P.localization_curves({"shap": x}, fractions=x)
    assert len(_drawn_lines(fig.axes[0])) == 1
    _close(fig)
    df = pd.DataFrame({"layer": ["logits", "b2", "b1"] * 2, "spearman": [0.9, 0.3, 0.0, 0.9, 0.9, 0.9],
                       "method": ["shap"] * 3 + ["edge"] * 3})
    fig = P.randomization_plot(df, n=12, background="zeros")
    ax = fig.axes[0]
    assert ax.get_ylim() == (0.0, 1.05)  # nothing below 0: the axis starts at 0
    assert "n = 12 samples" in fig.get_supxlabel() and "zeros" in fig.get_supxlabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["logits", "b2", "b1"]
    assert any(np.allclose(line.get_ydata(), 0) for line in ax.lines)  # zero line
    _close(fig)
    neg = df.assign(spearman=df["spearman"] - 0.5)
    fig = P.randomization_plot(pd.concat([neg, neg]))  # two rows per layer: a bootstrap band
    assert fig.axes[0].get_ylim() == (-1.05, 1.05)
    assert "bootstrap CI" in fig.get_supxlabel()
    _close(fig)


def test_deletion_curves_say_what_was_computed_and_share_y():
    x = np.linspace(0, 1, 6)
    fig, axs = plt.subplots(1, 2)
    for ax, kind in zip(axs, ("deletion", "insertion")):
        P.deletion_curves(x, {"shap": RNG.random((7, 6))}, kind=kind, ylim=(0, 1), baseline="blurred map", ax=ax)
    assert axs[0].get_ylim() == axs[1].get_ylim() == (0, 1)
    cap = fig.get_supxlabel().replace("\n", " ")
    assert "n = 7 samples" in cap and "blurred map" in cap and "95% bootstrap CI" in cap
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
