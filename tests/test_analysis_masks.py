"""Binary difference masks: normalization, hand-counted masks, pairing, groups (dx.analysis.masks)."""

import ast
import pathlib

import numpy as np
import pandas as pd
import pytest

from defocus_xai import analysis as an
from defocus_xai.analysis import binary_mask, mask_activation, normalize_maps, pair_by_source


def test_analysis_subpackage_never_imports_torch():
    root = pathlib.Path(an.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "torch" for n in names), f"{path.name} imports torch"


def test_public_names_exist():
    for name in an.__all__:
        assert hasattr(an, name), name


# ---------------------------------------------------------------- normalize_maps

def test_normalize_maps_per_sample_minmax_and_constant_is_zero():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(4, 5, 6))
    x[2] = 7.5  # constant sample
    before = x.copy()
    out = normalize_maps(x)
    np.testing.assert_array_equal(x, before)  # not mutated
    for i in (0, 1, 3):
        ref = (x[i] - x[i].min()) / (x[i].max() - x[i].min())
        np.testing.assert_allclose(out[i], ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out[2], 0.0)
    assert out.dtype == np.float64


def test_normalize_maps_shapes_dtypes_and_errors():
    single = np.array([[2.0, 4.0], [6.0, 10.0]], dtype=np.float32)
    out = normalize_maps(single)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0, 0.25], [0.5, 1.0]])
    batch4 = np.arange(2 * 1 * 3 * 3, dtype=np.uint8).reshape(2, 1, 3, 3)
    out4 = normalize_maps(batch4)
    assert out4.shape == (2, 1, 3, 3) and out4.min() == 0 and out4.max() == 1
    np.testing.assert_array_equal(normalize_maps(single, method="none"), single)
    bad = single.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        normalize_maps(bad)
    with pytest.raises(ValueError, match="method"):
        normalize_maps(single, method="zscore")


# ---------------------------------------------------------------- binary_mask

def test_binary_mask_by_hand():
    fake = np.array([[0.0, 0.50, 1.0], [0.2, 0.30, 0.9]])
    real = np.array([[0.0, 0.35, 1.0], [0.2, 0.45, 0.7]])
    # |diff| = [[0, .15, 0], [0, .15, .2]] -> > 0.1 at three pixels; > 0.16 at one
    m = binary_mask(real_map=real, fake_map=fake, threshold=0.1, normalize=False)
    np.testing.assert_array_equal(m, [[False, True, False], [False, True, True]])
    assert binary_mask(real_map=real, fake_map=fake, threshold=0.16, normalize=False).sum() == 1
    # normalization: both already span [0, 1] -> same result
    np.testing.assert_array_equal(binary_mask(real_map=real, fake_map=fake, threshold=0.1), m)
    # scaled fake: normalize removes the scale, raw does not
    assert binary_mask(real_map=real, fake_map=fake * 10, threshold=0.1).sum() == 3
    assert binary_mask(real_map=real, fake_map=fake * 10, threshold=0.1, normalize=False).sum() == 5


def test_binary_mask_shape_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"real_map has shape \(4, 5\).*fake_map has shape \(4, 4\)"):
        binary_mask(real_map=np.zeros((4, 5)), fake_map=np.zeros((4, 4)))


# ---------------------------------------------------------------- pairing

def test_pair_by_source_and_frames():
    p = pair_by_source(real_ids=["v1", "v2"], fake_ids=["v2", "v1", "v3"], warn_unmatched=False)
    np.testing.assert_array_equal(p, [[0, 1], [1, 0]])
    with pytest.warns(UserWarning, match="1 of 3"):
        pair_by_source(real_ids=["v1", "v2"], fake_ids=["v2", "v1", "v3"])
    with pytest.raises(ValueError, match="ambiguous"):
        pair_by_source(real_ids=["v1", "v1"], fake_ids=["v1"])
    p = pair_by_source(real_ids=["b", "a", "a"], fake_ids=["a", "a", "b"], real_frames=[0, 0, 1],
                       fake_frames=[1, 0, 0])
    np.testing.assert_array_equal(p, [[0, 2], [1, 1], [2, 0]])
    with pytest.raises(ValueError, match="both sides"):
        pair_by_source(real_ids=["a"], fake_ids=["a"], fake_frames=[0])


# ---------------------------------------------------------------- mask_activation

def _hand_counts(fake, real, pairs, t):
    out = []
    for fi, ri in pairs:
        f = (fake[fi] - fake[fi].min()) / (fake[fi].max() - fake[fi].min())
        r = (real[ri] - real[ri].min()) / (real[ri].max() - real[ri].min())
        out.append(int(sum(1 for a, b in zip(f.ravel(), r.ravel()) if abs(a - b) > t)))
    return np.array(out, dtype=float)


def test_mask_activation_matches_hand_counts_with_source_pairing():
    rng = np.random.default_rng(1)
    real = rng.random((5, 6, 7))
    ids_real = np.array(["r0", "r1", "r2", "r3", "r4"])
    order = np.array([3, 0, 4, 1])  # fakes made from these reals, in another order
    fake = real[order] + rng.normal(0, 0.05, size=(4, 6, 7))
    ids_fake = ids_real[order]
    real_before, fake_before = real.copy(), fake.copy()
    thr = (0.1, 0.01)
    df = mask_activation(real_maps=real, fake_maps=fake, thresholds=thr, real_ids=ids_real, fake_ids=ids_fake,
                         n_boot=200)
    np.testing.assert_array_equal(real, real_before)
    np.testing.assert_array_equal(fake, fake_before)
    assert list(df.columns) == ["threshold", "method", "n_pairs", "n_units", "mean", "std", "min", "max",
                                "median", "mean_fraction", "ci_low", "ci_high", "too_few_units"]
    pairs = [(i, int(o)) for i, o in enumerate(order)]
    for k, t in enumerate(thr):
        c = _hand_counts(fake, real, pairs, t)
        row = df.iloc[k]
        assert row["threshold"] == t and row["n_pairs"] == 4 and row["n_units"] == 4
        assert row["mean"] == pytest.approx(c.mean())
        assert row["max"] == c.max() and row["min"] == c.min() and row["median"] == np.median(c)
        assert row["mean_fraction"] == pytest.approx(c.mean() / 42)
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert df.attrs["pairing"] == "source_id" and df.attrs["n_pixels"] == 42
    # the same with explicit pairs
    df2 = mask_activation(real_maps=real, fake_maps=fake, thresholds=thr, pairs=np.array(pairs), n_boot=200)
    pd.testing.assert_frame_equal(df[["mean", "min", "max", "median"]], df2[["mean", "min", "max", "median"]])


def test_mask_activation_index_pairing_is_opt_in_and_warned():
    rng = np.random.default_rng(2)
    fake, real = rng.random((3, 5, 5)), rng.random((3, 5, 5))
    with pytest.raises(ValueError, match="allow_index_pairing"):
        mask_activation(real_maps=real, fake_maps=fake)
    with pytest.warns(UserWarning, match="unrelated"):
        df = mask_activation(real_maps=real, fake_maps=fake, thresholds=(0.1,), allow_index_pairing=True,
                             n_boot=50)
    assert df.attrs["pairing"] == "index"
    assert df.loc[0, "mean"] == pytest.approx(_hand_counts(fake, real, [(0, 0), (1, 1), (2, 2)], 0.1).mean())


def test_mask_activation_groups_methods_frames_and_errors():
    rng = np.random.default_rng(3)
    real = rng.random((4, 6, 6))
    fake = np.concatenate([real, real]) + rng.normal(0, 0.2, size=(8, 6, 6))
    vid = ["a", "a", "b", "b"]
    frame = [0, 1, 0, 1]
    methods = ["DF"] * 4 + ["FS"] * 4
    df = mask_activation(real_maps=real, fake_maps=fake, thresholds=(0.1,), real_ids=vid, fake_ids=vid * 2,
                         real_frames=frame, fake_frames=frame * 2, methods=methods,
                         groups=["df_a", "df_a", "df_b", "df_b", "fs_a", "fs_a", "fs_b", "fs_b"], n_boot=100)
    assert list(df["method"]) == ["DF", "FS"]
    assert list(df["n_pairs"]) == [4, 4] and list(df["n_units"]) == [2, 2]
    assert df.attrs["pairing"] == "frame"
    # default groups are the source ids: 2 videos
    df_default = mask_activation(real_maps=real, fake_maps=fake[:4], thresholds=(0.1,), real_ids=vid,
                                 fake_ids=vid, real_frames=frame, fake_frames=frame, n_boot=50)
    assert df_default.loc[0, "n_units"] == 2
    # ambiguous without frames
    with pytest.raises(ValueError, match="ambiguous"):
        mask_activation(real_maps=real, fake_maps=fake[:4], real_ids=vid, fake_ids=vid)
    # unmatched fakes are reported
    with pytest.warns(UserWarning, match="no matching real"):
        df_u = mask_activation(real_maps=real[:1], fake_maps=fake[:2], thresholds=(0.1,), real_ids=["x"],
                               fake_ids=["x", "y"], n_boot=20)
    assert df_u.attrs["n_unmatched"] == 1 and df_u.loc[0, "n_pairs"] == 1
    assert df_u.loc[0, "too_few_units"] and np.isnan(df_u.loc[0, "ci_low"])  # one pair: no CI
    with pytest.raises(ValueError, match=r"real_maps has maps of shape \(5, 5\).*fake_maps has \(6, 6\)"):
        mask_activation(real_maps=rng.random((4, 5, 5)), fake_maps=fake, allow_index_pairing=True)


def test_mask_activation_skips_and_names_degenerate_pairs():
    rng = np.random.default_rng(4)
    real = rng.random((5, 6, 6))
    fake = real + rng.normal(0, 0.2, size=(5, 6, 6))
    fake[1] = real[1]            # identical maps
    fake[3], real[3] = 0.0, 0.0  # dark frame: both maps constant
    real[4] = 2.0                # one constant map: its normalization is undefined
    ids = list("abcde")
    with pytest.warns(UserWarning, match=r"skipped 3 of 5 .*fake 1 / real 1 \(identical_maps\)"):
        df = mask_activation(real_maps=real, fake_maps=fake, thresholds=(0.1,), real_ids=ids, fake_ids=ids, n_boot=50)
    assert df.loc[0, "n_pairs"] == 2 and df.attrs["n_skipped"] == 3
    assert [d["reason"] for d in df.attrs["skipped"]] == ["identical_maps", "identical_maps", "constant_map"]
    assert df.loc[0, "mean"] == pytest.approx(_hand_counts(fake, real, [(0, 0), (2, 2)], 0.1).mean())
    with pytest.raises(ValueError, match="3 degenerate pair"):
        mask_activation(real_maps=real, fake_maps=fake, thresholds=(0.1,), real_ids=ids, fake_ids=ids,
                        on_degenerate="raise")
