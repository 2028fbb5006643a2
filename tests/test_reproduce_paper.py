"""The paper's settings by name: the preset switches each one, and the analyses under it reproduce direct
NumPy transcriptions of the notebook formulas on the reference frames (``../shared/reference_maps``,
skipped when absent; the frames are for checking, not tuning)."""

import os
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy import stats

from defocus_xai import analysis as A
from defocus_xai.pipeline import PipelineSettings, stage_alignment, stage_variance
from defocus_xai.pipeline.settings import PAPER_SETTINGS

PAPER = PipelineSettings(**PAPER_SETTINGS, n_boot=50, n_permutations=0)  # the analysis part of .paper()


def _reference_dir() -> Path:
    env = os.environ.get("DEFOCUS_XAI_REFERENCE_MAPS")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "reference_maps"
    if not (root / "index.csv").is_file() or not (root / "frames").is_dir():
        pytest.skip("reference maps not found (../shared/reference_maps or $DEFOCUS_XAI_REFERENCE_MAPS)")
    return root


@pytest.fixture(scope="module")
def reference():
    """(frames (N, 299, 299, 3) in [0, 1], maps (N, 299, 299) in [0, 1], labels) of the saved grids."""
    import pandas as pd
    from PIL import Image

    root = _reference_dir()
    index = pd.read_csv(root / "index.csv", dtype=str)
    grids = [np.asarray(Image.open(root / "frames" / f).convert("RGB"), dtype=np.float64) / 255 for f in index.file]
    frames = np.stack([g[2:301, 2:301] for g in grids])
    maps = np.stack([g[2:301, 303:602, 0] for g in grids])
    return frames, maps, index.label.astype(int).to_numpy()


# ---- the notebook formulas, written out -------------------------------------------------------------

def _minmax(x):
    lo, hi = x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
    return np.where(hi > lo, (x - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)


def paper_mean_local_variance(maps, w=15):
    """avg_pool2d(x, w, stride=1, padding=w // 2) (count_include_pad) of x and x^2; mean(x^2) - mean(x)^2."""
    x = np.pad(_minmax(maps), ((0, 0), (w // 2, w // 2), (w // 2, w // 2)))
    mu = sliding_window_view(x, (w, w), axis=(1, 2)).mean(axis=(-2, -1))
    mu2 = sliding_window_view(x * x, (w, w), axis=(1, 2)).mean(axis=(-2, -1))
    return (mu2 - mu * mu).mean(axis=(1, 2))


def paper_alignment(fake, real, shap, bins=20, eps=1e-8):
    """Histograms of the fake's values weighted by |fake - real| and |shap|, each divided by (sum + eps);
    overlap = sum(min); KL = entropy(B + eps, A + eps)."""
    A_, _ = np.histogram(fake.ravel(), bins=bins, range=(0, 1), weights=np.abs(fake - real).ravel())
    B_, _ = np.histogram(fake.ravel(), bins=bins, range=(0, 1), weights=np.abs(shap).ravel())
    A_, B_ = A_ / (A_.sum() + eps), B_ / (B_.sum() + eps)
    return np.minimum(A_, B_).sum(), stats.entropy(B_ + eps, A_ + eps)


def _index_pairs(labels, n=None):
    """The notebook's pairing: i-th fake with i-th real."""
    fake, real = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    k = min(fake.size, real.size) if n is None else n
    return np.stack([fake[:k], real[:k]], axis=1)


# ---- the preset ----------------------------------------------------------------------------------------

def test_paper_preset_switches_every_named_setting():
    ours, paper = PipelineSettings(), PipelineSettings.paper()
    for name, value in PAPER_SETTINGS.items():
        assert getattr(paper, name) == value, name
    assert {"variance_border", "alignment_eps", "rgb_reduction", "embed_seed"} <= set(PAPER_SETTINGS)
    # conventions are our defaults too; the flaws (channel 0 only, zero padding counted as data) are not
    assert ours.differences_from_paper() == {"rgb_reduction": ("sum_abs", "channel0"),
                                             "variance_border": ("reflect", "zeros")}
    assert paper.differences_from_paper() == {}
    meta = paper.attribution.to_meta()
    assert meta["method"] == "shap_gradient" and meta["space"] == "defocus"
    assert paper.attribution.wrapper == "paper224"
    assert paper.attribution.background == "data" and paper.attribution.background_size == 10
    assert paper.to_dict()["attribution"] == meta
    assert PipelineSettings.paper(n_boot=7).n_boot == 7
    with pytest.raises(ValueError, match="rgb_reduction"):
        PipelineSettings(rgb_reduction="channel1")
    with pytest.raises(ValueError, match="variance_border"):
        PipelineSettings(variance_border="wrap")


def test_reduce_rgb_channel0_is_the_papers_reduction():
    a = np.random.default_rng(0).normal(size=(2, 3, 6, 6))
    np.testing.assert_array_equal(A.reduce_rgb(a, method="channel0"), np.abs(a[:, 0]))
    np.testing.assert_allclose(A.reduce_rgb(a), np.abs(a).sum(axis=1))
    with pytest.raises(ValueError, match="method"):
        A.reduce_rgb(a, method="mean")


def _arrays(rng, n=6, size=24):
    real = rng.random((n, size, size))
    fake = np.clip(real + rng.normal(0, 0.2, real.shape), 0, 1)
    return {"dmaps": np.concatenate([real, fake]), "labels": np.repeat([0, 1], n),
            "source_ids": np.tile([f"s{i}" for i in range(n)], 2),
            "rgb_shaps": rng.normal(size=(2 * n, 3, size, size))}


def test_stages_follow_the_preset():
    arrays = _arrays(np.random.default_rng(1))
    fi, ri = np.arange(6, 12), np.arange(6)
    for s, method in ((PAPER, "channel0"), (PAPER.replace(rgb_reduction="sum_abs"), "sum_abs")):
        got = stage_alignment(arrays, s).numbers["rgb"]
        want = A.alignment_scores(A.reduce_rgb(arrays["rgb_shaps"][fi], method=method), real_maps=arrays["dmaps"][ri],
                                  fake_maps=arrays["dmaps"][fi], n_permutations=0, n_boot=50)
        assert got["mean_overlap"] == pytest.approx(want.mean_overlap, abs=1e-12)
        assert got["eps"] == s.alignment_eps
    v = stage_variance(arrays, PAPER.replace(variance_border="reflect")).numbers
    assert v["border"] == "reflect"
    assert stage_variance(arrays, PAPER).numbers["border"] == "zeros"


# ---- the formulas on the reference frames -------------------------------------------------------------

def test_local_variance_and_ks_reproduce_the_notebook(reference):
    _, maps, labels = reference
    want = paper_mean_local_variance(maps)
    got = A.mean_local_variance(maps, window=PAPER.window, border=PAPER.variance_border)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    vt = A.variance_test(real_maps=maps[labels == 0], fake_maps=maps[labels == 1], window=PAPER.window,
                         border=PAPER.variance_border, n_boot=50)
    ks = stats.ks_2samp(want[labels == 0], want[labels == 1])
    assert vt.ks_statistic_frames == pytest.approx(ks.statistic) and vt.p_value_frames == pytest.approx(ks.pvalue)
    # the border is not a detail: without the zero-padding edge the means are clearly lower
    assert A.mean_local_variance(maps).mean() < 0.95 * got.mean()


def test_binary_mask_reproduces_the_notebook(reference):
    _, maps, labels = reference
    pairs = _index_pairs(labels)
    want = np.array([(np.abs(maps[f] - maps[r]) > PAPER.threshold).sum() for f, r in pairs])
    got = np.array([A.binary_mask(real_map=maps[r], fake_map=maps[f], threshold=PAPER.threshold).sum()
                    for f, r in pairs])
    np.testing.assert_array_equal(got, want)


def test_alignment_with_channel0_rgb_reproduces_the_notebook(reference):
    frames, maps, labels = reference
    pairs = _index_pairs(labels)
    pairs = pairs[[not np.array_equal(maps[f], maps[r]) for f, r in pairs]]
    rgb_attr = np.moveaxis(frames - frames.mean(axis=(1, 2), keepdims=True), -1, 1)  # a signed (N, 3, H, W) stand-in
    reduced = A.reduce_rgb(rgb_attr, method=PAPER.rgb_reduction)
    for f, r in pairs:
        ov, kl = paper_alignment(maps[f], maps[r], rgb_attr[f, 0])
        res = A.alignment_score(reduced[f], real_map=maps[r], fake_map=maps[f], bins=PAPER.alignment_bins,
                                eps=PAPER.alignment_eps)
        # ours normalizes the histograms exactly; the notebook divides by (sum + eps): a relative 1e-8 / sum
        assert res.overlap == pytest.approx(ov, rel=1e-6)
        assert res.kl == pytest.approx(kl, rel=1e-6, abs=1e-9)
    summary = A.alignment_scores(reduced[pairs[:, 0]], real_maps=maps[pairs[:, 1]], fake_maps=maps[pairs[:, 0]],
                                 eps=PAPER.alignment_eps, n_permutations=0, n_boot=50)
    want = np.mean([paper_alignment(maps[f], maps[r], rgb_attr[f, 0])[0] for f, r in pairs])
    assert summary.mean_overlap == pytest.approx(want, rel=1e-6)


def test_tsne_with_the_papers_seed_reproduces_sklearn(reference):
    from sklearn.manifold import TSNE

    _, maps, _ = reference
    feats = maps[:, ::19, ::19].reshape(len(maps), -1)
    want = TSNE(n_components=2, perplexity=10, random_state=42).fit_transform(feats)
    got = A.embed(feats, method="tsne", perplexity=10, pca_dims=None, seed=PAPER.embed_seed)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_report_states_reference_controls_units_and_paper_differences(tmp_path):
    from defocus_xai.pipeline import jsonable, write_report

    arrays = _arrays(np.random.default_rng(2), n=8)
    s = PipelineSettings(n_boot=50, n_permutations=20)
    results = jsonable({
        "settings": {"n": 16, "size": 24, "seed": 0, "device": "cpu", "analysis": s.to_dict(),
                     "detectors": {"rgb": {"name": "toy", "backbone": "none"}}},
        "export": {"n": 16, "keys": ["dmaps"], "n_pairs": 8, "background": "data: 10 real training samples"},
        "variance": stage_variance(arrays, s).numbers, "alignment": stage_alignment(arrays, s).numbers,
        "timings": {"total": 1.0}})
    text = write_report(tmp_path / "report.md", results, figures={}, captions={}, formats=("png",))[0].read_text()
    assert text.count("data: 10 real training samples") >= 2  # header and the alignment section
    assert "permutation baseline" in text and "map-value control" in text and "uniform control" in text
    assert "beat every control" in text or "beats every control" in text
    assert "per source" in text and "frame-level" in text
    assert "rgb_reduction 'sum_abs' (paper 'channel0')" in text and "variance_border 'reflect' (paper 'zeros')" in text
