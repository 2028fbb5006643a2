"""Model-parameter randomization test on a toy problem where the input matters."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from defocus_xai.explain.sanity import randomizable_layers, randomization_test, rank_correlation, reinitialize_

torch.set_num_threads(1)

S = 32


def _toy_maps(n, g):
    """Smooth random maps; label 1 when the central 12x12 patch is brighter than the whole map."""
    m = torch.nn.functional.avg_pool2d(torch.rand(n, 1, S, S, generator=g), 3, 1, 1)
    y = (m[:, :, 10:22, 10:22].mean((1, 2, 3)) > m.mean((1, 2, 3))).float()
    return m, y


@pytest.fixture(scope="module")
def trained():
    from defocus_xai.detect import DefocusDetector

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    det = DefocusDetector("small-cnn", estimator={"size": S}, widths=(4, 8))
    opt = torch.optim.Adam(det.parameters(), 1e-2)
    det.train()
    for _ in range(40):
        m, y = _toy_maps(32, g)
        loss = nn.functional.binary_cross_entropy_with_logits(det.forward_map(m)[:, 0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    det.eval()
    m, y = _toy_maps(256, g)
    with torch.no_grad():
        acc = ((det.forward_map(m)[:, 0] > 0).float() == y).float().mean().item()
    x, _ = _toy_maps(6, g)
    return det, x, acc


def test_toy_model_learned_the_task(trained):
    _, _, acc = trained
    assert acc > 0.7  # observed 0.84 after 40 steps (chance 0.5): the input matters


def test_cascading_full_randomization_decorrelates(trained):
    det, x, _ = trained
    det.train()  # a mode to be restored
    state = {k: v.clone() for k, v in det.state_dict().items()}
    x_before = x.clone()
    df = randomization_test(det, x, method="saliency", seed=0)
    # the caller's model is unchanged: parameters, buffers, modes
    assert all(torch.equal(state[k], v) for k, v in det.state_dict().items())
    assert det.training
    assert torch.equal(x, x_before)
    det.eval()
    layers = randomizable_layers(det, x[:1])
    assert list(df["layer"]) == ["original"] + layers
    assert layers[0] == "backbone.fc" and layers[-1] == "backbone.features.0"  # head first
    assert list(df["step"]) == list(range(len(layers) + 1))
    first = df.iloc[0]
    assert first["spearman"] == pytest.approx(1.0) and first["spearman_abs"] == pytest.approx(1.0)
    assert first["logit_change"] == 0.0 and first["n_randomized"] == 0
    last = df.iloc[-1]
    n_params = sum(p.numel() for p in det.parameters())
    assert last["n_randomized"] == n_params  # cascading: everything random at the end
    # observed on this toy (6 samples): signed -0.010 +- 0.017, |attribution| -0.076 +- 0.058
    assert abs(last["spearman"]) < 0.2 and abs(last["spearman_abs"]) < 0.25
    assert (df["logit_change"].iloc[1:] > 0).all()
    assert (df["n_valid"] == len(x)).all() and (df["n"] == len(x)).all()
    assert set(df["method"]) == {"saliency"} and df["cascading"].all()


def test_independent_and_determinism(trained):
    det, x, _ = trained
    a = randomization_test(det, x[:3], cascading=False, seed=1)
    b = randomization_test(det, x[:3], cascading=False, seed=1)
    pd.testing.assert_frame_equal(a, b)
    c = randomization_test(det, x[:3], cascading=False, seed=2)
    assert not np.allclose(a["spearman"].iloc[1:], c["spearman"].iloc[1:])
    # independent: only the layer of the step is random
    sizes = {n: sum(p.numel() for p in m.parameters()) for n, m in det.named_modules()}
    assert [sizes[n] for n in a["layer"].iloc[1:]] == list(a["n_randomized"].iloc[1:])
    # cascading and independent share the draws of the first (head) layer
    casc = randomization_test(det, x[:3], seed=1)
    assert casc["spearman"].iloc[1] == pytest.approx(a["spearman"].iloc[1])


def test_layers_images_per_sample_and_other_method(trained):
    det, x, _ = trained
    df = randomization_test(det, x[:2], layers=["backbone.features", "module.backbone.fc"], per_sample=True,
                            method="integrated_gradients", n_steps=4)
    assert list(df["layer"]) == ["original"] * 2 + ["backbone.features"] * 2 + ["backbone.fc"] * 2
    assert list(df["sample"]) == [0, 1] * 3
    # images (3 channels) are turned into maps once with the detector's estimator
    imgs = torch.rand(2, 3, S, S, generator=torch.Generator().manual_seed(3))
    di = randomization_test(det, imgs, layers=["backbone.fc"])
    with torch.no_grad():
        maps = det.map_from_images(imgs)
    dm = randomization_test(det, maps, layers=["backbone.fc"])
    np.testing.assert_allclose(di["spearman"], dm["spearman"])
    with pytest.raises(ValueError, match="not a module"):
        randomization_test(det, x[:1], layers=["backbone.nope"])
    with pytest.raises(ValueError, match="no parameters"):
        randomization_test(det, x[:1], layers=["backbone.global_pool"])
    with pytest.raises(TypeError, match="attribute_kwargs"):
        randomization_test(det, x[:1], attribute_kwargs={"seed": 3})


def test_settings_object_and_options(trained):
    """The attribution settings of the exporter serve the test as they are; options replace fields."""
    from defocus_xai.explain import AttributionSettings

    det, x, _ = trained
    s = AttributionSettings(method="shap_gradient", n_samples=4, seed=1, background=x[3:5])
    a = randomization_test(det, x[:2], s, layers=["backbone.fc"])
    b = randomization_test(det, x[:2], method="shap_gradient", n_samples=4, seed=1, background=x[3:5],
                           layers=["backbone.fc"])
    pd.testing.assert_frame_equal(a, b)
    c = randomization_test(det, x[:2], s, seed=2, layers=["backbone.fc"])
    assert not np.allclose(a["spearman"].iloc[1], c["spearman"].iloc[1])
    # saliency is signed unless the settings say otherwise
    signed = randomization_test(det, x[:2], layers=["backbone.fc"])
    absolute = randomization_test(det, x[:2], layers=["backbone.fc"], method_kwargs={"abs": True})
    assert signed["spearman"].iloc[1] < 0 < absolute["spearman"].iloc[1]


def test_rank_correlation_matches_scipy():
    g = np.random.default_rng(0)
    a = g.normal(size=(4, 50))
    b = a + g.normal(size=(4, 50))
    b[0, :10] = 0.0  # ties
    ours = rank_correlation(a, b)
    ref = [spearmanr(a[i], b[i]).statistic for i in range(4)]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    assert np.isnan(rank_correlation(a[:1], np.zeros((1, 50)))[0])  # constant: undefined


def test_reinitialize_only_touches_the_subtree():
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Linear(3, 2))
    with torch.no_grad():
        net[1].weight.fill_(2.0)
        net[1].running_var.fill_(4.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    n = reinitialize_(net[0], torch.Generator().manual_seed(7))  # (seed 0 = conftest's global seed: same draws)
    assert n == 3 * 9 + 3
    assert not torch.equal(net[0].weight, before["0.weight"])
    assert net[0].weight.abs().max() <= 1 / 3  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in 9
    assert torch.equal(net[2].weight, before["2.weight"]) and torch.equal(net[1].weight, before["1.weight"])
    reinitialize_(net[1], torch.Generator().manual_seed(0))  # norm layer: reset to its default
    assert torch.all(net[1].weight == 1) and torch.all(net[1].running_var == 1)
    w1 = net[0].weight.clone()
    reinitialize_(net[0], torch.Generator().manual_seed(7))
    assert torch.equal(w1, net[0].weight)  # same generator seed, same draws


def test_dataparallel_unwrapped(trained):
    det, x, _ = trained
    df = randomization_test(nn.DataParallel(det), x[:2], layers=["backbone.fc"])
    assert list(df["layer"]) == ["original", "backbone.fc"]


def test_rgb_space():
    from tests._toy_models import tiny_rgb_detector

    rgb = tiny_rgb_detector()
    imgs = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    df = randomization_test(rgb, imgs, space="rgb", method="input_x_gradient")
    assert df["layer"].iloc[1] == "backbone.fc" and df["layer"].iloc[-1] == "backbone.features.0"
    assert df["n_randomized"].iloc[-1] == sum(p.numel() for p in rgb.parameters())
    assert np.isfinite(df["spearman"]).all()
