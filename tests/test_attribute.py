"""attribute(): shapes, determinism, batch independence, agreement with shap's reference loop (sampler="shap")."""

import copy
import dataclasses
import json
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from defocus_xai.explain import METHODS, attribute
from defocus_xai.explain.engines import Explained
from defocus_xai.explain.samplers import sample_seed, shap_draws
from tests._toy_models import ToyMapDetector, body_with, tiny_defocus_detector, tiny_rgb_detector

torch.set_num_threads(1)
S = 16


@pytest.fixture(scope="module")
def det():
    return tiny_defocus_detector(S)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(5, 1, S, S, generator=g)
    bg = torch.rand(3, 1, S, S, generator=g)
    return maps, bg


def _kw(method):
    if method == "occlusion":
        return {"method_kwargs": {"sliding_window": 4, "strides": 4}}
    if method == "integrated_gradients":
        return {"n_steps": 8}
    return {"n_samples": 8} if method in ("shap_gradient", "gradient_shap") else {}


@pytest.mark.parametrize("method", METHODS)
def test_shape_determinism_and_batch_independence(det, data, method):
    maps, bg = data
    a = attribute(det, maps, method=method, background=bg, seed=3, batch_size=5, **_kw(method))
    assert a.shape == maps.shape and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert float(a.abs().sum()) > 0
    b = attribute(det, maps, method=method, background=bg, seed=3, batch_size=5, **_kw(method))
    assert torch.equal(a, b)
    c = attribute(det, maps, method=method, background=bg, seed=3, batch_size=2, eval_batch_size=7,
                  **_kw(method))
    torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["shap_gradient", "gradient_shap"])
def test_draws_depend_on_sample_index_not_on_batch(det, data, method):
    maps, bg = data
    full = attribute(det, maps, method=method, background=bg, seed=7, n_samples=10)
    one = attribute(det, maps[3:4], method=method, background=bg, seed=7, n_samples=10, sample_indices=[3])
    torch.testing.assert_close(one[0], full[3], rtol=1e-5, atol=1e-7)
    other_seed = attribute(det, maps[3:4], method=method, background=bg, seed=8, n_samples=10, sample_indices=[3])
    assert not torch.equal(other_seed, one)


def test_shap_gradient_equals_reference_per_image_loop(det, data):
    """The reference way: shap.GradientExplainer called on one image at a time."""
    import shap

    maps, bg = data
    ours = attribute(det, maps, method="shap_gradient", background=bg, n_samples=20, seed=11, batch_size=3,
                     sampler="shap")
    state = np.random.get_state()
    explainer = shap.GradientExplainer(Explained(det, "defocus", None), bg)
    ref = [explainer.shap_values(maps[i:i + 1], nsamples=20, rseed=sample_seed(11, i)) for i in range(len(maps))]
    np.random.set_state(state)
    ref = torch.from_numpy(np.concatenate(ref).reshape(maps.shape).astype(np.float32))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)


def test_expected_gradients_engines_agree_in_expectation(det, data):
    """shap (engine shap), captum engine and captum GradientShap estimate one expectation: with a single
    baseline it is the integrated-gradients integral."""
    maps, _ = data
    x, base = maps[:1], torch.zeros(1, 1, S, S)
    ig = attribute(det, x, method="integrated_gradients", background=base, n_steps=64)
    n = 600
    runs = {
        "shap": attribute(det, x, method="shap_gradient", background=base, n_samples=n, seed=1),
        "captum_engine": attribute(det, x, method="shap_gradient", engine="captum", background=base,
                                   n_samples=n, seed=2),
        "gradient_shap": attribute(det, x, method="gradient_shap", background=base, n_samples=n, seed=3),
        "gradient_shap_captum": attribute(det, x, method="gradient_shap", engine="captum", background=base,
                                          n_samples=n, seed=4),
        "shap_sampler": attribute(det, x, method="shap_gradient", sampler="shap", background=base, n_samples=n,
                                  seed=5),
    }
    for name, a in runs.items():
        rel = float((a - ig).norm() / ig.norm())
        assert rel < 0.15, (name, rel)
    # completeness in expectation: sum of attributions = f(x) - f(baseline)
    with torch.no_grad():
        gap = float(det.forward_map(x) - det.forward_map(base))
    for name, a in runs.items():
        assert abs(float(a.sum()) - gap) < 0.1 * abs(gap) + 1e-3, name


def test_integrated_gradients_convergence_delta(det, data):
    maps, bg = data
    a, meta = attribute(det, maps, method="integrated_gradients", background=bg, n_steps=64, return_meta=True)
    with torch.no_grad():
        gap = (det.forward_map(maps) - det.forward_map(bg.mean(0, keepdim=True))).abs().max()
    assert meta["max_abs_convergence_delta"] < 0.05 * float(gap) + 1e-5
    assert meta["engine"] == "captum" and meta["params"]["n_steps"] == 64
    assert meta["n_steps"] == 64 and meta["n_samples"] is None


def test_meta_names_engine_and_background(det, data):
    maps, bg = data
    _, meta = attribute(det, maps[:1], method="shap_gradient", background=bg, n_samples=4, return_meta=True)
    assert meta["engine"] == "batched" and meta["seed"] == 0 and meta["n_samples"] == 4
    assert "fold_batchnorm" in meta["params"]["optimizations"] and meta["params"]["rows_per_pass"] == 64
    assert meta["background"].startswith("given: 3 reference inputs (1, 16, 16), sha1 ")
    assert meta["background_info"]["kind"] == "given" and meta["background_info"]["k"] == 3
    _, meta = attribute(det, maps[:1], method="shap_gradient", engine="captum", n_samples=4, background="zeros",
                        return_meta=True)
    assert meta["engine"] == "captum" and meta["background"] == "zeros: one all-zero input (1, 16, 16)"


def test_images_are_turned_into_maps(det):
    imgs = torch.rand(2, 3, S, S, generator=torch.Generator().manual_seed(0))
    a = attribute(det, imgs, method="saliency")
    with torch.no_grad():
        maps = det.map_from_images(imgs)
    torch.testing.assert_close(a, attribute(det, maps, method="saliency"))


def test_rgb_space_keeps_three_channels(det):
    imgs = torch.rand(2, 3, S, S, generator=torch.Generator().manual_seed(0))
    rgb = tiny_rgb_detector()
    a = attribute(rgb, imgs, method="shap_gradient", space="rgb", n_samples=6)
    assert a.shape == (2, 3, S, S)
    s = attribute(rgb, imgs, method="saliency", space="rgb", method_kwargs={"abs": False})
    assert s.shape == (2, 3, S, S) and not torch.allclose(s[:, 0], s[:, 1])
    # through the estimator of a DefocusDetector: gradients reach the image
    d = attribute(det, imgs, method="input_x_gradient", space="rgb")
    assert d.shape == (2, 3, S, S) and float(d.abs().sum()) > 0


def test_global_rng_untouched(det, data):
    maps, bg = data
    np.random.seed(123)
    torch.manual_seed(123)
    np_state, t_state = np.random.get_state(), torch.get_rng_state()
    for method in ("shap_gradient", "gradient_shap"):
        attribute(det, maps[:2], method=method, background=bg, n_samples=5)
    attribute(det, maps[:2], method="shap_gradient", engine="captum", background=bg, n_samples=5)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert torch.equal(torch.get_rng_state(), t_state)


def test_dataparallel_unwrapped_and_mode_restored(det, data):
    maps, bg = data
    dp = nn.DataParallel(det)
    det.train()
    try:
        a = attribute(dp, maps[:2], method="shap_gradient", background=bg, n_samples=5)
        assert det.training  # restored
    finally:
        det.eval()
    torch.testing.assert_close(a, attribute(det, maps[:2], method="shap_gradient", background=bg, n_samples=5))


@pytest.mark.parametrize("method", ["deeplift", "shap_deep"])
def test_unsupported_layer_named(method):
    toy = ToyMapDetector(body_with(nn.SiLU()))
    with pytest.raises(ValueError, match=rf"method='{method}'.*'body.1'.*SiLU"):
        attribute(toy, torch.rand(2, 1, 8, 8), method=method)
    toy = ToyMapDetector(body_with(nn.ReLU(inplace=True)))
    with pytest.raises(ValueError, match=rf"method='{method}'.*'body.1'.*inplace"):
        attribute(toy, torch.rand(2, 1, 8, 8), method=method)


def test_bad_arguments(det, data):
    maps, _ = data
    with pytest.raises(ValueError, match="unknown method"):
        attribute(det, maps, method="lime")
    with pytest.raises(ValueError, match="unknown space"):
        attribute(det, maps, space="depth")
    with pytest.raises(ValueError, match="rgb"):
        attribute(det, maps, space="rgb", method="saliency")
    with pytest.raises(ValueError, match="background"):
        attribute(det, maps, background=torch.zeros(2, 1, S + 1, S + 1), method="saliency")
    with pytest.raises(ValueError, match="sample_indices"):
        attribute(det, maps, sample_indices=[0], method="saliency")


# ------------------------------------------------------------------------- batched shap_gradient engine


def _shap_loop(model, x, bg, n, seed, space="defocus", local_smoothing=0.0):
    """The reference per-image loop, called directly on shap (global RNG states restored)."""
    import shap

    np_state, t_state = np.random.get_state(), torch.get_rng_state()
    try:
        ex = shap.GradientExplainer(Explained(model, space, None), bg, local_smoothing=local_smoothing)
        vals = []
        for i in range(len(x)):
            torch.manual_seed(sample_seed(seed, i))
            vals.append(ex.shap_values(x[i:i + 1], nsamples=n, rseed=sample_seed(seed, i)))
    finally:
        np.random.set_state(np_state)
        torch.set_rng_state(t_state)
    return torch.from_numpy(np.concatenate(vals).reshape(x.shape).astype(np.float32))


def test_shap_draws_are_shaps_stream():
    state = np.random.get_state()
    np.random.seed(1234)
    want = [(np.random.choice(7), np.random.uniform()) for _ in range(30)]
    np.random.set_state(state)
    rows, ts = shap_draws(1234, 30, 7)
    assert [(int(r), float(t)) for r, t in zip(rows, ts)] == [(int(r), float(t)) for r, t in want]


@pytest.mark.parametrize("local_smoothing", [0.0, 0.05])
@pytest.mark.parametrize("optimize", [True, False])
def test_batched_engine_equals_shap(det, data, local_smoothing, optimize):
    maps, bg = data
    kw = {"local_smoothing": local_smoothing, "optimize": optimize}
    ours, meta = attribute(det, maps, method="shap_gradient", background=bg, n_samples=16, seed=4,
                           sampler="shap", method_kwargs=kw, return_meta=True)
    assert meta["engine"] == "batched" and meta["sampler"] == "shap"
    assert bool(meta["params"]["optimizations"]) is optimize
    ref = _shap_loop(det, maps, bg, 16, 4, local_smoothing=local_smoothing)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)
    eng = attribute(det, maps, method="shap_gradient", engine="shap", sampler="shap", background=bg, n_samples=16,
                    seed=4, method_kwargs={"local_smoothing": local_smoothing})
    torch.testing.assert_close(ours, eng, rtol=1e-5, atol=1e-7)


def test_batched_engine_equals_shap_in_rgb_space():
    imgs = torch.rand(3, 3, S, S, generator=torch.Generator().manual_seed(2))
    bg = torch.rand(2, 3, S, S, generator=torch.Generator().manual_seed(3))
    rgb = tiny_rgb_detector()
    ours = attribute(rgb, imgs, method="shap_gradient", space="rgb", background=bg, n_samples=12, seed=9,
                     sampler="shap")
    torch.testing.assert_close(ours, _shap_loop(rgb, imgs, bg, 12, 9, space="rgb"), rtol=1e-5, atol=1e-7)


def test_batched_engine_batch_and_pass_independent(det, data):
    maps, bg = data
    full = attribute(det, maps, method="shap_gradient", background=bg, n_samples=13, seed=2)
    for eval_bs in (1, 5, 13, 40):  # passes that split samples, align with them, or span several
        a = attribute(det, maps, method="shap_gradient", background=bg, n_samples=13, seed=2,
                      eval_batch_size=eval_bs)
        torch.testing.assert_close(a, full, rtol=1e-5, atol=1e-8)
    for i in (0, 4):
        one = attribute(det, maps[i:i + 1], method="shap_gradient", background=bg, n_samples=13, seed=2,
                        sample_indices=[i])
        torch.testing.assert_close(one[0], full[i], rtol=1e-5, atol=1e-8)
    again = attribute(det, maps, method="shap_gradient", background=bg, n_samples=13, seed=2)
    assert torch.equal(again, full)


def test_batched_engine_memory_bounded_by_pass(det, data):
    """At most eval_batch_size rows (and 64 on the CPU) go through the model at once, whatever B x n."""
    maps, bg = data
    for eval_bs, cap in ((10, 10), (256, 64)):
        seen = []
        h = det.backbone.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
        try:
            _, meta = attribute(det, maps, method="shap_gradient", background=bg, n_samples=50,
                                eval_batch_size=eval_bs, method_kwargs={"optimize": False}, return_meta=True)
        finally:
            h.remove()
        assert max(seen) == cap and sum(seen) == len(maps) * 50, (eval_bs, seen)
        assert meta["params"]["rows_per_pass"] == cap


def test_batched_engine_follows_weight_changes(data):
    """The cached fast copy is rebuilt when the detector's weights change in place."""
    maps, bg = data
    d = tiny_defocus_detector(S, seed=3)
    a = attribute(d, maps[:2], method="shap_gradient", background=bg, n_samples=8)
    with torch.no_grad():
        for p in d.parameters():
            p.mul_(-1.5)
    b = attribute(d, maps[:2], method="shap_gradient", background=bg, n_samples=8, sampler="shap")
    assert not torch.allclose(a, b)
    torch.testing.assert_close(b, _shap_loop(d, maps[:2], bg, 8, 0), rtol=1e-5, atol=1e-7)
    assert all(p.requires_grad for p in d.parameters())  # the user's model is not frozen


def test_batched_engine_leaves_detector_untouched(data):
    maps, bg = data
    d = tiny_defocus_detector(S, seed=4)
    before = {k: v.clone() for k, v in d.state_dict().items()}
    kinds = [type(m) for m in d.modules()]
    attribute(d, maps[:2], method="shap_gradient", background=bg, n_samples=4)
    assert [type(m) for m in d.modules()] == kinds
    for k, v in d.state_dict().items():
        assert torch.equal(v, before[k]) and v.is_contiguous(), k


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(data):
    maps, bg = data
    det = tiny_defocus_detector(S)
    a = attribute(det, maps, method="shap_gradient", background=bg, n_samples=8)
    b = attribute(det.cuda(), maps.cuda(), method="shap_gradient", background=bg.cuda(), n_samples=8)
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


# ------------------------------------------------------------------------------------ borrowed detector


def test_caller_model_given_back_in_its_modes(data):
    """A model in train mode (with one submodule in eval mode) comes back exactly so; weights unchanged."""
    maps, bg = data
    d = tiny_defocus_detector(S, seed=5).train()
    d.backbone.fc.eval()
    modes = {n: m.training for n, m in d.named_modules()}
    state = {k: v.clone() for k, v in d.state_dict().items()}
    for method in ("saliency", "shap_gradient", "integrated_gradients"):
        attribute(d, maps[:2], method=method, background=bg, n_samples=4, n_steps=4)
        assert {n: m.training for n, m in d.named_modules()} == modes, method
    assert all(torch.equal(state[k], v) for k, v in d.state_dict().items())  # BatchNorm statistics too


# --------------------------------------------------------------------------------------------- settings


def test_settings_resolve_defaults_per_method():
    from defocus_xai.explain import AttributionSettings

    s = AttributionSettings(method="shap_gradient").resolved()
    assert (s.engine, s.sampler, s.n_samples, s.n_steps) == ("batched", "stratified", 200, None)
    ig = dataclasses.replace(s, method="integrated_gradients", engine=None).resolved()
    assert (ig.engine, ig.sampler, ig.n_samples, ig.n_steps) == ("captum", None, None, 50)
    gs = AttributionSettings(method="gradient_shap").resolved()
    assert (gs.engine, gs.sampler) == ("batched", "stratified")
    for method, engine in (("shap_gradient", "shap"), ("shap_gradient", "captum"), ("gradient_shap", "captum")):
        assert AttributionSettings(method=method, engine=engine).resolved().sampler == "shap"
    assert AttributionSettings(sampler="shap").to_meta()["sampler"] == "shap"
    assert AttributionSettings(method="saliency", sampler="shap").to_meta()["sampler"] is None
    assert AttributionSettings(method="shap_deep").resolved().engine == "shap"
    meta = AttributionSettings(method="integrated_gradients", n_steps=8, n_samples=99).to_meta()
    assert meta["n_steps"] == 8 and meta["n_samples"] is None
    assert meta["background"] == "data: 10 samples of the data (resolved when attributing)"
    assert meta["background_info"] == {"kind": "data", "k": 10, "source": "data (resolved when attributing)"}
    assert json.loads(json.dumps(meta)) == meta


def test_settings_are_frozen_comparable_and_picklable():
    from defocus_xai.explain import AttributionSettings

    bg = torch.rand(2, 1, S, S, generator=torch.Generator().manual_seed(0))
    s = AttributionSettings(method="saliency", background=bg, method_kwargs={"abs": False})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.method = "deeplift"
    with pytest.raises(TypeError):
        s.method_kwargs["abs"] = True
    twin = AttributionSettings(method="saliency", background=bg.clone(), method_kwargs={"abs": False})
    assert s == twin and hash(s) == hash(twin)
    assert s != dataclasses.replace(s, background=bg + 1)  # the background's values are part of the identity
    other_batch = dataclasses.replace(s, batch_size=3)
    assert s != other_batch and s.to_meta() == other_batch.to_meta()  # same values, other memory bound
    assert pickle.loads(pickle.dumps(s)) == s and copy.deepcopy(s) == s
    assert s.to_meta()["background"].startswith("given: 2 reference inputs (1, 16, 16), sha1 ")
    assert AttributionSettings(background=7).to_meta()["background_info"]["k"] == 7
    assert AttributionSettings(background="zeros").to_meta()["background"] == "zeros: one all-zero input"


def test_settings_reject_bad_values():
    from defocus_xai.explain import AttributionSettings

    for kw, match in (({"method": "lime"}, "unknown method"), ({"space": "depth"}, "unknown space"),
                      ({"engine": "fast"}, "unknown engine"),
                      ({"method": "saliency", "engine": "shap"}, "no engine"),
                      ({"method": "gradient_shap", "engine": "shap"}, "no engine"),
                      ({"sampler": "sobol"}, "unknown sampler"),
                      ({"engine": "shap", "sampler": "stratified"}, "needs engine='batched'"),
                      ({"method": "gradient_shap", "engine": "captum", "sampler": "stratified"}, "batched"),
                      ({"n_samples": 0}, "n_samples"), ({"n_steps": 2.5}, "n_steps"), ({"seed": -1}, "seed"),
                      ({"batch_size": 0}, "batch_size"), ({"background": 0}, "background"),
                      ({"background": "ten"}, "unknown background"), ({"background_size": 0}, "background_size"),
                      ({"wrapper": "paper299"}, "unknown wrapper"),
                      ({"wrapper": "paper224", "space": "rgb"}, "wraps the defocus-map function")):
        with pytest.raises(ValueError, match=match):
            AttributionSettings(**kw)
    with pytest.raises(TypeError, match="background"):
        AttributionSettings(background=object())
    with pytest.raises(TypeError, match="method_kwargs"):
        AttributionSettings(method_kwargs={"window": object()})


def test_settings_attribute_equals_attribute(det, data):
    from defocus_xai.explain import AttributionSettings

    maps, bg = data
    s = AttributionSettings(method="shap_gradient", background=bg, n_samples=6, seed=2)
    a, meta = s.attribute(det, maps[:2], sample_indices=[3, 4], return_meta=True)
    b = attribute(det, maps[:2], method="shap_gradient", background=bg, n_samples=6, seed=2,
                  sample_indices=[3, 4])
    assert torch.equal(a, b)
    assert {k: meta[k] for k in ("method", "engine", "sampler", "n_samples", "seed")} == \
        {k: s.to_meta()[k] for k in ("method", "engine", "sampler", "n_samples", "seed")}
    with pytest.raises(ValueError, match="its own reference"):
        AttributionSettings(background=4).attribute(det, maps[:1])
