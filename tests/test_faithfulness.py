"""Deletion / insertion curves on toy models whose logit is a known function of the map."""

import numpy as np
import pytest
import torch
from torch import nn

from defocus_xai.explain.faithfulness import (
    FaithfulnessResult,
    deletion_insertion,
    make_baseline,
    trapezoid_auc,
)
from tests._toy_models import MapToy

torch.set_num_threads(1)

S = 8  # 64 pixels: a few hundred forward passes of a linear model


class LinearMapModel(MapToy):
    """logit = <w, map> + b: the contribution of pixel j relative to a baseline is w_j (x_j - b_j)."""

    def __init__(self, w: torch.Tensor, b: float = 0.0, outputs: int = 1):
        super().__init__()
        self.register_buffer("w", w.reshape(-1).float())
        self.b = float(b)
        self.outputs = outputs

    def forward_map(self, maps):
        z = maps.flatten(1) @ self.w + self.b
        if self.outputs == 2:
            return torch.stack([-z / 2, z / 2], dim=1)
        return z[:, None]


def _setup(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(S * S, generator=g) * 0.5
    maps = torch.rand(n, 1, S, S, generator=g)
    return LinearMapModel(w, b=0.3), maps


def test_ideal_attribution_beats_random_and_endpoints():
    model, maps = _setup()
    base, _ = make_baseline(maps, "zero")
    ideal = model.w.view(1, 1, S, S) * (maps - base)  # exact contribution of each pixel
    res = deletion_insertion(model, maps, ideal, n_steps=16, baseline="zero", seed=3)
    assert isinstance(res, FaithfulnessResult)
    assert res.fractions.shape == (17,) and res.deletion.shape == (4, 17) and res.insertion.shape == (4, 17)
    np.testing.assert_allclose(res.fractions, np.arange(17) / 16)
    with torch.no_grad():
        p_orig = torch.sigmoid(model.forward_map(maps)[:, 0]).double().numpy()
        p_base = torch.sigmoid(model.forward_map(base)[:, 0]).double().numpy()
    # curves start and end where they must
    np.testing.assert_allclose(res.deletion[:, 0], p_orig, rtol=1e-6)
    np.testing.assert_allclose(res.deletion[:, -1], p_base, rtol=1e-6)
    np.testing.assert_allclose(res.insertion[:, 0], p_base, rtol=1e-6)
    np.testing.assert_allclose(res.insertion[:, -1], p_orig, rtol=1e-6)
    np.testing.assert_allclose(res.random_deletion[:, [0, -1]], res.deletion[:, [0, -1]], rtol=1e-6)
    # the ideal ranking deletes fastest and inserts fastest, per sample
    assert np.all(res.deletion_auc < res.random_deletion_auc)
    assert np.all(res.insertion_auc > res.random_insertion_auc)
    # for a linear logit the top-k contributions are the best k-subset: the ideal curves bound any
    # other ranking's curves pointwise (lowest deletion, highest insertion)
    assert np.all(res.deletion <= res.random_deletion + 1e-9)
    assert np.all(res.insertion >= res.random_insertion - 1e-9)
    # the reverse ranking is worse than chance
    rev = deletion_insertion(model, maps, -ideal, n_steps=16, baseline="zero", seed=3)
    assert np.all(rev.deletion_auc > res.random_deletion_auc)
    assert np.all(rev.insertion_auc < res.random_insertion_auc)
    s = res.summary().set_index("metric")
    assert s.loc["deletion_vs_random", "mean"] < 0 and s.loc["insertion_vs_random", "win_rate"] == 1.0


def test_intermediate_point_by_hand_and_tie_break():
    model, maps = _setup(n=2)
    attr = torch.randn(2, 1, S, S, generator=torch.Generator().manual_seed(1))
    res = deletion_insertion(model, maps, attr, n_steps=4, baseline=0.25, random_baseline=False)
    assert res.random_deletion is None and res.random_deletion_auc is None and res.baseline == "0.25"
    k = S * S // 4  # step 1 deletes the top quarter
    for i in range(2):
        order = np.argsort(-attr[i].flatten().numpy(), kind="stable")
        x = maps[i].flatten().clone()
        x[order[:k]] = 0.25
        with torch.no_grad():
            p = torch.sigmoid(model.forward_map(x.view(1, 1, S, S)))[0, 0].item()
        assert res.deletion[i, 1] == pytest.approx(p, rel=1e-6)
        y = torch.full((S * S,), 0.25)
        y[order[:k]] = maps[i].flatten()[order[:k]]
        with torch.no_grad():
            q = torch.sigmoid(model.forward_map(y.view(1, 1, S, S)))[0, 0].item()
        assert res.insertion[i, 1] == pytest.approx(q, rel=1e-6)
    # a constant attribution: ties broken by pixel index (row-major, first pixels first)
    const = deletion_insertion(model, maps, torch.zeros_like(maps), n_steps=4, baseline=0.25,
                               random_baseline=False)
    x = maps[0].flatten().clone()
    x[:k] = 0.25
    with torch.no_grad():
        p = torch.sigmoid(model.forward_map(x.view(1, 1, S, S)))[0, 0].item()
    assert const.deletion[0, 1] == pytest.approx(p, rel=1e-6)


def test_batch_size_invariance_seed_and_no_mutation():
    model, maps = _setup(n=3)
    attr = torch.randn(3, S, S, generator=torch.Generator().manual_seed(2))  # (N, H, W) accepted
    maps_before, attr_before = maps.clone(), attr.clone()
    a = deletion_insertion(model, maps, attr, n_steps=7, batch_size=2, seed=5)
    b = deletion_insertion(model, maps.numpy(), attr.numpy(), n_steps=7, batch_size=500, seed=5)
    for f in ("deletion", "insertion", "random_deletion", "random_insertion", "deletion_auc"):
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-5)  # float32 batching
    c = deletion_insertion(model, maps, attr, n_steps=7, seed=6)
    assert not np.allclose(a.random_deletion, c.random_deletion)
    np.testing.assert_allclose(a.deletion, c.deletion, rtol=1e-5)
    assert torch.equal(maps, maps_before) and torch.equal(attr, attr_before)
    # 64 pixels / 7 steps: fractions are the exact fraction changed
    assert a.fractions[0] == 0.0 and a.fractions[-1] == 1.0
    np.testing.assert_allclose(a.fractions * S * S, np.rint(np.arange(8) * S * S / 7))
    d = a.to_dict()
    assert isinstance(d["deletion"], list) and d["n_steps"] == 7


def test_baselines():
    maps = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    blur, desc = make_baseline(maps, "blur")
    assert desc.startswith("blur") and blur.shape == maps.shape
    assert blur.std() < maps.std()  # blur removes local structure
    np.testing.assert_allclose(blur.mean((2, 3)), maps.mean((2, 3)), atol=0.02)  # keeps the level
    mean, _ = make_baseline(maps, "mean")
    np.testing.assert_allclose(mean[:, :, 0, 0], maps.mean((2, 3)), rtol=1e-6)
    given, desc = make_baseline(maps, torch.full((1, 1, 16, 16), 0.3))
    assert desc == "given" and torch.allclose(given, torch.full_like(maps, 0.3))
    with pytest.raises(ValueError, match="baseline"):
        make_baseline(maps, "noise")
    with pytest.raises(ValueError, match="broadcast"):
        make_baseline(maps, torch.zeros(3, 1, 16, 16))


def test_two_output_model_target_and_errors():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(S * S, generator=g)
    maps = torch.rand(2, 1, S, S, generator=g)
    two = LinearMapModel(w, outputs=2)
    one = LinearMapModel(w)
    attr = torch.randn(2, 1, S, S, generator=g)
    r2 = deletion_insertion(two, maps, attr, n_steps=4, baseline="mean")
    r1 = deletion_insertion(one, maps, attr, n_steps=4, baseline="mean")
    # softmax([-z/2, z/2])[1] == sigmoid(z)
    np.testing.assert_allclose(r2.deletion, r1.deletion, rtol=1e-5)
    r0 = deletion_insertion(two, maps, attr, n_steps=4, baseline="mean", target=0)
    np.testing.assert_allclose(r0.deletion, 1 - r1.deletion, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="do not match"):
        deletion_insertion(one, maps, attr[:, :, :4], n_steps=4)
    with pytest.raises(ValueError, match="NaN"):
        deletion_insertion(one, maps, attr * float("nan"), n_steps=4)
    with pytest.raises(ValueError, match="n_steps"):
        deletion_insertion(one, maps, attr, n_steps=0)
    with pytest.raises(ValueError, match="forward_map"):
        deletion_insertion(nn.Linear(2, 1), maps, attr)


def test_real_detector_modes_restored_and_dataparallel():
    from defocus_xai.detect import DefocusDetector

    torch.manual_seed(0)
    det = DefocusDetector("small-cnn", estimator={"size": 32}, widths=(4, 8))
    det.train()
    state = {k: v.clone() for k, v in det.state_dict().items()}
    maps = torch.rand(2, 1, 32, 32)
    res = deletion_insertion(nn.DataParallel(det), maps, torch.randn(2, 1, 32, 32), n_steps=3, batch_size=8)
    assert det.training  # mode restored
    assert all(torch.equal(state[k], v) for k, v in det.state_dict().items())  # BN stats untouched
    det.eval()
    with torch.no_grad():
        p = torch.sigmoid(det.forward_map(maps))[:, 0].double().numpy()
    np.testing.assert_allclose(res.deletion[:, 0], p, rtol=1e-5)


def test_trapezoid_and_plot_adapter():
    assert trapezoid_auc(np.array([0.0, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)
    model, maps = _setup(n=2)
    res = deletion_insertion(model, maps, torch.randn(2, 1, S, S), n_steps=4)
    cur = res.curves("insertion")
    assert set(cur) == {"attribution", "random"}
    assert cur["attribution"].scores.shape == (2, 5)
    assert cur["random"].auc == pytest.approx(float(res.random_insertion_auc.mean()))
    from defocus_xai.plot import deletion_curves

    fig = deletion_curves(result=cur, kind="insertion")
    drawn = [ln for ln in fig.axes[0].lines if len(ln.get_xdata()) == 5]  # the curves, not legend handles
    assert len(drawn) == 2


def test_logit_score_and_summary_rows():
    model, maps = _setup(n=2)
    attr = torch.randn(2, 1, S, S, generator=torch.Generator().manual_seed(4))
    rp = deletion_insertion(model, maps, attr, n_steps=4, baseline="zero")
    rl = deletion_insertion(model, maps, attr, n_steps=4, baseline="zero", score="logit")
    assert rl.score == "logit" and rp.score == "probability"
    np.testing.assert_allclose(1 / (1 + np.exp(-rl.deletion)), rp.deletion, rtol=1e-6)
    with torch.no_grad():
        z = model.forward_map(maps)[:, 0].double().numpy()
    np.testing.assert_allclose(rl.deletion[:, 0], z, rtol=1e-6)
    s = rp.summary().set_index("metric")
    assert s.loc["score_original", "mean"] == pytest.approx(rp.deletion[:, 0].mean())
    assert s.loc["score_baseline", "mean"] == pytest.approx(rp.deletion[:, -1].mean())
    with pytest.raises(ValueError, match="score"):
        deletion_insertion(model, maps, attr, score="prob")
