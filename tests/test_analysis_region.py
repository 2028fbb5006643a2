"""Region blur contrast: per-frame contrasts by hand, video-level summary, grouped AUC; reference frames."""

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from defocus_xai.analysis import RegionContrastResult, box_region, centre_region, region_contrast

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference_maps"


def test_region_helpers():
    m = centre_region((10, 12), (4, 6))
    assert m.sum() == 24 and m[3:7, 3:9].all()
    assert centre_region((299, 299), 150).sum() == 150 * 150
    np.testing.assert_array_equal(box_region((5, 5), (1, 2, 3, 4)), np.pad(np.ones((2, 2), bool), ((1, 2), (2, 1))))
    with pytest.raises(ValueError, match="does not fit"):
        centre_region((10, 10), 11)
    with pytest.raises(ValueError, match="empty or outside"):
        box_region((5, 5), (2, 2, 2, 4))


def test_region_contrast_per_frame_and_video_level():
    rng = np.random.default_rng(0)
    maps = rng.random((12, 16, 16))
    before = maps.copy()
    region = centre_region((16, 16), 8)
    groups = np.repeat(list("abcdef"), 2)
    labels = np.repeat([0, 1, 0, 1, 0, 1], 2)
    maps[labels == 1] += 0.5 * region  # fakes: blurrier centre
    res = region_contrast(maps, region, groups=groups, labels=labels, n_boot=300)
    assert isinstance(res, RegionContrastResult)
    np.testing.assert_array_equal(maps[labels == 0], before[labels == 0])
    direct = np.array([x[region].mean() - x[~region].mean() for x in maps])
    np.testing.assert_allclose(res.per_sample["contrast"], direct)
    unit = direct.reshape(6, 2).mean(axis=1)
    np.testing.assert_allclose(res.per_unit["contrast"], unit)
    assert res.n == 12 and res.n_units == 6 and (res.n_units_real, res.n_units_fake) == (3, 3)
    assert res.mean == pytest.approx(unit.mean()) and res.ci_low <= res.mean <= res.ci_high
    assert res.auc == 1.0 and res.mean_fake > res.mean_real
    mw = stats.mannwhitneyu(unit[1::2], unit[::2], alternative="two-sided")
    assert res.p_value == pytest.approx(mw.pvalue) and res.mannwhitney_u == mw.statistic
    assert "AUC fake vs real 1.00" in res.text and "6 units" in res.text
    d = res.to_dict()
    assert d["auc"] == 1.0 and "per_sample" not in d and "per_sample" in res.to_dict(include_per_sample=True)


def test_region_contrast_grouped_auc_ci_and_null_data():
    # null data with video structure: 30 videos x 6 frames, no class signal
    rng = np.random.default_rng(1)
    level = rng.normal(0, 1, 30)
    maps = rng.random((180, 12, 12)) + np.repeat(level, 6)[:, None, None] * centre_region((12, 12), 6)
    groups = np.repeat(np.arange(30), 6)
    labels = np.repeat(np.arange(30) % 2, 6)
    res = region_contrast(maps, centre_region((12, 12), 6), groups=groups, labels=labels, n_boot=400, seed=2)
    assert res.n_units == 30 and res.p_value > 0.05
    assert res.auc_ci_low < 0.5 < res.auc_ci_high
    assert res.auc_ci_high - res.auc_ci_low > 0.3  # 30 units, not 180 frames


def test_region_contrast_per_frame_regions_skips_and_errors():
    rng = np.random.default_rng(2)
    maps = rng.random((4, 8, 8))
    regions = np.zeros((4, 8, 8), bool)
    regions[0, :4] = True
    regions[2, :, :2] = True
    regions[3] = True  # full: no outside
    with pytest.warns(UserWarning, match="skipped 2 of 4"):
        res = region_contrast(maps, regions, n_boot=50)
    assert list(res.skipped["reason"]) == ["empty_region", "full_region"] and res.n == 2
    assert "1 (empty_region), 3 (full_region)" in res.text
    with pytest.raises(ValueError, match="regions has shape"):
        region_contrast(maps, np.ones((7, 8), bool))
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\)"):
        region_contrast(maps, regions[0], labels=[0, 1, 2, 1])
    with pytest.raises(ValueError, match="NaN"):
        region_contrast(np.full((2, 8, 8), np.nan), regions[0])
    with pytest.raises(ValueError, match="no frame could be scored"):
        region_contrast(maps, np.zeros((8, 8), bool))
    one = region_contrast(maps, regions[0], groups=["v"] * 4, n_boot=20)
    assert one.too_few_units and np.isnan(one.ci_low) and "no CI" in one.text


def test_region_contrast_plot_draws_classes_and_caption():
    import matplotlib

    matplotlib.use("Agg")
    from defocus_xai import plot

    rng = np.random.default_rng(3)
    res = region_contrast(rng.random((10, 12, 12)), centre_region((12, 12), 6), labels=[0, 1] * 5, n_boot=50)
    fig = plot.region_contrast_plot(res, class_names=("real", "Deepfakes"))
    ax = fig.axes[0]
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["real", "Deepfakes"]
    assert "AUC fake vs real" in fig._supxlabel.get_text() and "n = 10 units" in fig._supxlabel.get_text()
    with pytest.raises(ValueError, match="RegionContrastResult"):
        plot.region_contrast_plot({"auc": 0.5})
    plot.style.close(fig)


@pytest.mark.skipif(not (REFERENCE / "index.csv").exists(), reason="../shared/reference_maps is absent")
def test_region_contrast_runs_on_the_reference_frames():
    import pandas as pd
    from PIL import Image

    from defocus_xai.defocus import estimate_defocus

    idx = pd.read_csv(REFERENCE / "index.csv", dtype=str).iloc[::4]  # 15 frames: a smoke run, not a result
    frames = np.stack([np.asarray(Image.open(REFERENCE / "frames" / f).convert("RGB"))[2:301, 2:301]
                       for f in idx["file"]])
    maps = estimate_defocus(frames, device="cpu").dense.numpy()[:, 0]
    res = region_contrast(maps, centre_region(maps.shape[1:], 150), groups=idx["video"].to_numpy(),
                          labels=idx["label"].astype(int).to_numpy(), n_boot=200)
    assert res.n == len(idx) and res.n_units == idx["video"].nunique()
    assert 0.0 <= res.auc <= 1.0 and np.isfinite(res.mean)
