"""The attribution reference (background) vocabulary, the paper's wrapper, and finite-or-refused inputs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from defocus_xai.detect import scale_sigma_maps
from defocus_xai.explain import AttributionSettings, attribute, export_attributions
from defocus_xai.explain.background import blur, blur_sigma, describe_background
from defocus_xai.store import load_attributions
from tests._toy_models import ToyData, tiny_defocus_detector, tiny_rgb_detector

torch.set_num_threads(1)
S = 16


@pytest.fixture(scope="module")
def det():
    return tiny_defocus_detector(S)


@pytest.fixture(scope="module")
def maps():
    return torch.rand(4, 1, S, S, generator=torch.Generator().manual_seed(3))


def test_data_reference_is_the_first_inputs_and_recorded(det, maps):
    a, meta = attribute(det, maps, n_samples=6, return_meta=True)
    info = meta["background_info"]
    assert info["kind"] == "data" and info["k"] == 4 and info["indices"] == [0, 1, 2, 3]
    assert info["source"] == "explained inputs" and meta["background"].startswith("data: 4 samples of the explained")
    torch.testing.assert_close(a, attribute(det, maps, n_samples=6, background=maps))
    b = attribute(det, maps, n_samples=6, background=2)  # an int k: "data" with k rows
    torch.testing.assert_close(b, attribute(det, maps, n_samples=6, background=maps[:2]))
    torch.testing.assert_close(b, attribute(det, maps, n_samples=6, background_size=2))
    with pytest.raises(ValueError, match="its own reference"):
        attribute(det, maps[:1], n_samples=6)


def test_zeros_and_blur_references(det, maps):
    z, meta = attribute(det, maps, n_samples=6, background="zeros", return_meta=True)
    torch.testing.assert_close(z, attribute(det, maps, n_samples=6, background=torch.zeros(1, 1, S, S)))
    assert meta["background_info"] == {"kind": "zeros", "shape": [1, S, S]}
    b, meta = attribute(det, maps, n_samples=6, background="blur", return_meta=True)
    sigma = blur_sigma(S)
    assert meta["background_info"]["kind"] == "blur" and meta["background_info"]["sigma"] == sigma
    assert meta["background"].startswith("blur: each input's Gaussian-blurred copy")
    for i in (0, 3):  # each input against its own blurred copy, with its own draws
        one = attribute(det, maps[i:i + 1], n_samples=6, background=blur(maps[i:i + 1], sigma), sample_indices=[i])
        torch.testing.assert_close(b[i:i + 1], one)
    assert not torch.allclose(b, z)


def test_describe_background_names_kind_count_and_labels():
    assert describe_background({"kind": "data", "k": 3, "source": "reference data", "indices": [4, 7, 9],
                                "labels": [0, 0, 0]}) == "data: 3 real samples of the reference data (indices 4, 7, 9)"
    assert "labels [0, 1]" in describe_background({"kind": "data", "k": 2, "labels": [0, 1]})
    assert describe_background({"kind": "given", "k": 1, "shape": [1, 8, 8]}) == "given: 1 reference input (1, 8, 8)"


def test_paper224_wrapper_is_resize_minmax_then_detector(det, maps):
    a, meta = attribute(det, maps, method="saliency", background="zeros", wrapper="paper224",
                        method_kwargs={"abs": False}, return_meta=True)
    assert meta["wrapper"] == "paper224" and a.shape == maps.shape
    x = maps.clone().requires_grad_(True)
    z = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
    (g,) = torch.autograd.grad(det.forward_map(scale_sigma_maps(z, "minmax")).sum(), x)
    torch.testing.assert_close(a, g)
    assert not torch.allclose(a, attribute(det, maps, method="saliency", background="zeros",
                                           method_kwargs={"abs": False}))


def test_paper_preset():
    s = AttributionSettings.paper(seed=4)
    r = s.resolved()
    assert (r.method, r.space, r.wrapper, r.engine, r.sampler, r.n_samples, r.seed) == \
        ("shap_gradient", "defocus", "paper224", "batched", "shap", 200, 4)
    meta = s.to_meta()
    assert meta["wrapper"] == "paper224" and meta["background_info"] == {
        "kind": "data", "k": 10, "source": "data (resolved when attributing)"}


@pytest.mark.parametrize("bad", ["nan_map", "inf_map", "nan_background", "nan_image"])
def test_non_finite_inputs_refused(det, maps, bad):
    x, bg = maps.clone(), maps[:2].clone()
    if bad == "nan_map":
        x[1, 0, 3, 3] = float("nan")
    elif bad == "inf_map":
        x[2, 0, 0, 0] = float("inf")
    elif bad == "nan_background":
        bg[0, 0, 1, 1] = float("nan")
    else:
        x = torch.rand(2, 3, S, S)
        x[0, 1, 2, 2] = float("nan")
    what = "background" if bad == "nan_background" else "inputs"
    with pytest.raises(ValueError, match=rf"{what} are not finite"):
        attribute(det, x, background=bg, n_samples=4)


def test_maps_outside_unit_range_refused(det, maps):
    with pytest.raises(ValueError, match=r"normalized defocus maps, documented in \[0, 1\]"):
        attribute(det, maps * 5, background="zeros", method="saliency")  # the map path (one channel)
    with pytest.raises(ValueError, match=r"inputs are normalized defocus maps"):
        attribute(det, maps[:, :1] - 0.5, background="zeros", method="saliency", inputs_are_maps=True)
    with pytest.raises(ValueError, match=r"background are normalized defocus maps"):
        attribute(det, maps, background=maps[:2] * 3, method="saliency")
    with pytest.raises(ValueError, match=r"images, documented in \[0, 1\]"):
        attribute(tiny_rgb_detector(), torch.rand(2, 3, S, S) * 255, space="rgb", method="saliency")


def test_non_finite_attributions_refused(maps):
    det = tiny_defocus_detector(S)
    with torch.no_grad():
        next(det.parameters())[0].fill_(float("nan"))
    with pytest.raises(ValueError, match=r"method='saliency' .* non-finite attributions for sample 5"):
        attribute(det, maps[:2], method="saliency", background="zeros", sample_indices=[5, 6])


# ------------------------------------------------------------------------------------------ the exporter


def _meta(path, key="defocus_shaps"):
    return load_attributions(path).meta["attributions"][key]


def test_default_export_records_a_data_reference_of_ten_real_samples(tmp_path, det):
    out = export_attributions(det, ToyData(24), tmp_path / "d.npz", n_samples=4, batch_size=8, progress=False)
    m = _meta(out)
    info = m["background_info"]
    assert info["kind"] == "data" and info["k"] == 10 and info["labels"] == [0] * 10
    assert info["indices"] == list(range(0, 20, 2)) and info["paths"][1] == "toy/0002.png"
    assert info["source"] == "explained data"
    assert m["background"].startswith("data: 10 real samples of the explained data (indices 0, 2, 4,")


def test_export_reference_data_zeros_and_blur_recorded(tmp_path, det):
    kw = dict(n_samples=4, batch_size=4, progress=False, rgb_detector=tiny_rgb_detector())
    ref = ToyData(8, seed=9)
    out = export_attributions(det, ToyData(4), tmp_path / "r.npz", background_data=ref, background_size=3, **kw)
    for key in ("defocus_shaps", "rgb_shaps"):
        info = _meta(out, key)["background_info"]
        assert info["source"] == "reference data" and info["indices"] == [0, 2, 4] and info["k"] == 3
    assert _meta(out, "rgb_shaps")["background_info"]["shape"] == [3, S, S]
    z = export_attributions(det, ToyData(4), tmp_path / "z.npz", background="zeros", **kw)
    assert _meta(z)["background"] == "zeros: one all-zero input" and _meta(z, "rgb_shaps")["background_info"] == \
        {"kind": "zeros"}
    b = export_attributions(det, ToyData(4), tmp_path / "b.npz", background="blur", **kw)
    assert _meta(b)["background_info"]["kind"] == "blur" and _meta(b)["background"].startswith("blur:")
    # the stored values are attribute()'s with the same reference
    store = load_attributions(b)
    want = attribute(det, torch.from_numpy(store["dmaps"][:, None]), n_samples=4, background="blur")
    np.testing.assert_allclose(store["defocus_shaps"], want[:, 0].numpy(), rtol=1e-5, atol=1e-7)


def test_export_sampler_keyword_and_paper_settings(tmp_path, det):
    kw = dict(n_samples=4, batch_size=4, progress=False)
    a = export_attributions(det, ToyData(4), tmp_path / "a.npz", sampler="shap", **kw)
    assert _meta(a)["sampler"] == "shap"
    s = export_attributions(det, ToyData(4), tmp_path / "s.npz", **kw)
    assert _meta(s)["sampler"] == "stratified"
    assert not np.allclose(load_attributions(a)["defocus_shaps"], load_attributions(s)["defocus_shaps"])
    p = export_attributions(det, ToyData(4), tmp_path / "p.npz", settings=AttributionSettings.paper(n_samples=4),
                            background_data=ToyData(24, seed=1), progress=False)
    m = _meta(p)
    assert m["wrapper"] == "paper224" and m["sampler"] == "shap" and m["background_info"]["k"] == 10
    assert m["background_info"]["source"] == "reference data"
    with pytest.raises(ValueError, match="not both"):
        export_attributions(det, ToyData(4), tmp_path / "x.npz", settings=AttributionSettings(), sampler="shap")


def test_cli_background_and_sampler(tmp_path):
    from defocus_xai.cli import main
    from defocus_xai.detect.checkpoints import save_detector

    ckpt = tmp_path / "det.pt"
    save_detector(tiny_defocus_detector(32), ckpt)
    args = ["export", "--data", "synth:4:1", "--size", "32", "--detector", str(ckpt), "--n-samples", "4",
            "--device", "cpu", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "d.npz"), "--background-size", "3"]) == 0
    info = _meta(tmp_path / "d.npz")["background_info"]
    assert info["source"] == "reference data" and info["k"] == 3 and info["labels"] == [0, 0, 0]
    assert all(p.startswith("synth:0:") for p in info["paths"])  # DefocusSynth's training seed
    assert main(args + ["--out", str(tmp_path / "z.npz"), "--background", "zeros", "--sampler", "shap",
                        "--wrapper", "paper224"]) == 0
    m = _meta(tmp_path / "z.npz")
    assert m["background_info"]["kind"] == "zeros" and m["sampler"] == "shap" and m["wrapper"] == "paper224"
    assert main(args + ["--out", str(tmp_path / "e.npz"), "--engine", "captum", "--sampler", "stratified"]) == 2
