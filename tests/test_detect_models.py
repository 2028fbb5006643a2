"""Detectors and backbones: shapes, normalization, devices, attributability."""

import numpy as np
import pytest
import torch
from torch import nn

from defocus_xai.detect import (
    DefocusDetector, RGBDetector, SmallCNN, TwoBranchDetector, create_backbone, protocol, scale_sigma_maps,
)

torch.set_num_threads(1)
S = 48


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, S, S, generator=g)
    # add some structure so the estimator finds edges
    x[:, :, :, S // 2:] *= 0.3
    return x


def test_small_cnn_shapes_and_size():
    net = SmallCNN(in_chans=1)
    assert sum(p.numel() for p in net.parameters()) < 400_000
    x = torch.rand(2, 1, 64, 64)
    assert net(x).shape == (2, 1)
    fm = net.forward_features(x)
    assert fm.shape == (2, 128, 4, 4)
    assert net.forward_head(fm, pre_logits=True).shape == (2, 128)
    net.reset_classifier(0)
    assert net(x).shape == (2, 128)
    with pytest.raises(ValueError, match="expects"):
        SmallCNN(in_chans=1)(torch.rand(2, 3, 64, 64))


def test_create_backbone_timm_and_errors():
    m = create_backbone("resnet10t", in_chans=1, num_classes=1).eval()
    assert m(torch.rand(1, 1, 32, 32)).shape == (1, 1)
    assert not any(getattr(s, "inplace", False) for s in m.modules())
    with pytest.raises(ValueError, match="pretrained"):
        create_backbone("resnet10t", pretrained=True)
    for key in ("checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay", "features_only"):
        with pytest.raises(ValueError, match=key):
            create_backbone("resnet10t", **{key: "/tmp/x"})
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone("no_such_net_xyz")


def test_scale_sigma_maps():
    m = torch.tensor([0.0, 1.0, 2.0, 4.0]).view(1, 1, 2, 2)
    assert scale_sigma_maps(m, "minmax").flatten().tolist() == [0.0, 0.25, 0.5, 1.0]
    assert scale_sigma_maps(m, "fixed", sigma_max=2.0).flatten().tolist() == [0.0, 0.5, 1.0, 1.0]
    const = torch.full((2, 1, 4, 4), 3.0)
    out = scale_sigma_maps(const, "minmax")
    assert torch.equal(out, torch.zeros_like(out))
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="map_norm"):
        scale_sigma_maps(m, "zscore")


@pytest.mark.parametrize("map_norm", ["minmax", "fixed"])
def test_defocus_detector_paths_agree(images, map_norm):
    det = DefocusDetector(estimator={"size": S}, map_norm=map_norm).eval()
    maps = det.map_from_images(images)
    assert maps.shape == (3, 1, S, S)
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    with torch.no_grad():
        a = det(images)
        b = det.forward_map(maps)
        c = det.forward_prepared(*det.prepare(images))
    assert a.shape == (3, 1)
    assert torch.allclose(a, b) and torch.allclose(a, c)
    assert det.features(images).shape == (3, 128)
    assert torch.allclose(det.features(maps=maps), det.features(images))
    # numpy uint8 channels-last input gives the same result as float tensors of the same values
    u8 = (images * 255).round().to(torch.uint8)
    p1 = det.predict_proba(u8.permute(0, 2, 3, 1).numpy())
    p2 = det.predict_proba(u8.float() / 255)
    assert p1.shape == (3,) and torch.allclose(p1, p2)
    assert det.identity["map_norm"] == map_norm
    assert det.identity["estimator"]["size"] == S


def test_defocus_detector_fixed_keeps_scale():
    det = DefocusDetector(estimator={"size": S}, map_norm="fixed", sigma_max=4.0)
    m = torch.full((1, 1, S, S), 1.0)
    assert torch.allclose(det.normalize(m), torch.full_like(m, 0.25))
    det = DefocusDetector(estimator={"size": S}, map_norm="minmax")
    assert torch.equal(det.normalize(m), torch.zeros_like(m))


def test_defocus_detector_three_channels_and_errors():
    det = DefocusDetector("small-cnn", estimator={"size": S}, map_channels=3).eval()
    maps = torch.rand(2, 1, S, S)
    with torch.no_grad():
        expected = det.backbone(maps.repeat(1, 3, 1, 1))
        assert torch.allclose(det.forward_map(maps), expected)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        det.forward_map(torch.rand(2, 3, S, S))
    with pytest.raises(ValueError, match="map_norm"):
        DefocusDetector(estimator={"size": S}, map_norm="bad")
    with pytest.raises(ValueError, match="map_channels"):
        DefocusDetector(estimator={"size": S}, map_channels=2)
    with pytest.raises(TypeError, match="estimator"):
        DefocusDetector(estimator="ours")


def test_defocus_detector_config_round_trip():
    det = DefocusDetector(estimator={"size": S, "std1": 1.2, "std2": 1.8}, map_norm="fixed", sigma_max=3.0)
    again = DefocusDetector(**det.config())
    assert again.config() == det.config()
    assert again.estimator.config()["std1"] == 1.2


@pytest.mark.parametrize("norm", ["[-1,1]", "imagenet", "none"])
def test_rgb_detector_normalization(images, norm):
    det = RGBDetector(input_norm=norm).eval()
    if norm == "[-1,1]":
        x = images * 2 - 1
    elif norm == "imagenet":
        x = (images - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
            [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    else:
        x = images
    with torch.no_grad():
        assert torch.allclose(det(images), det.backbone(x), atol=1e-6)
    assert det.features(images).shape == (3, 128)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        det(images * 4 - 2)


def test_rgb_detector_resizes():
    det = RGBDetector(input_size=32).eval()
    assert det.prepare(torch.rand(2, 3, 50, 40))[0].shape == (2, 3, 32, 32)
    assert det(np.zeros((2, 50, 40, 3), np.uint8)).shape == (2, 1)


@pytest.mark.parametrize("fusion", ["concat", "product"])
def test_two_branch(images, fusion):
    det = TwoBranchDetector(estimator={"size": S}, fusion=fusion).eval()
    with torch.no_grad():
        out = det(images)
        rgb, maps = det.prepare(images)
        assert torch.allclose(out, det.forward_pair(rgb, maps))
    assert out.shape == (3, 1)
    width = 256 if fusion == "concat" else 128
    assert det.features(images).shape == (3, width)
    assert det.head.in_features == width
    assert TwoBranchDetector(**det.config()).config() == det.config()


def test_two_branch_product_needs_equal_widths():
    with pytest.raises(ValueError, match="equal feature widths"):
        TwoBranchDetector("small-cnn", "resnet10t", estimator={"size": S}, fusion="product")


def _relu_calls(model, fn, x):
    counts = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: counts.__setitem__(n, counts.get(n, 0) + 1))
             for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            fn(x)
    finally:
        for h in hooks:
            h.remove()
    return counts


def test_attributable_module_relus():
    """Refinement 5: module ReLUs, none in place, none reused within a forward pass."""
    det = DefocusDetector(estimator={"size": S})
    rgb = RGBDetector()
    for model, fn, x in [(det, det.forward_map, torch.rand(2, 1, S, S)), (rgb, rgb, torch.rand(2, 3, S, S))]:
        relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        assert relus and not any(m.inplace for m in relus)
        counts = _relu_calls(model, fn, x)
        assert len(counts) == len(relus) and set(counts.values()) == {1}


def test_captum_deeplift_on_map_model():
    captum = pytest.importorskip("captum.attr")
    det = DefocusDetector(estimator={"size": S}).eval()

    class MapModel(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.d = d

        def forward(self, m):
            return self.d.forward_map(m)

    maps = torch.rand(2, 1, S, S)
    attr = captum.DeepLift(MapModel(det)).attribute(maps, baselines=torch.zeros_like(maps), target=0)
    assert attr.shape == maps.shape and torch.isfinite(attr).all()
    # completeness: attributions sum to f(x) - f(baseline)
    with torch.no_grad():
        delta = det.forward_map(maps) - det.forward_map(torch.zeros_like(maps))
    assert torch.allclose(attr.flatten(1).sum(1), delta.flatten(), atol=1e-3)


def test_train_mode_backward():
    det = DefocusDetector(estimator={"size": S})
    maps = torch.rand(4, 1, S, S, requires_grad=True)
    det.forward_map(maps).sum().backward()
    assert maps.grad is not None and all(p.grad is not None for p in det.parameters())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward(images):
    det = DefocusDetector(estimator={"size": S}).cuda().eval()
    with torch.no_grad():
        out = det(images.cuda())
    assert out.device.type == "cuda"
    cpu = det.cpu()
    with torch.no_grad():
        assert torch.allclose(out.cpu(), cpu(images), atol=1e-3)


def test_detectors_follow_the_protocol():
    d = DefocusDetector(estimator={"size": S})
    r = RGBDetector(input_size=32)
    t = TwoBranchDetector(estimator={"size": S}, input_size=40)
    for det in (d, r, t):
        assert isinstance(det, protocol.Detector)
    assert (d.input_size, r.input_size, t.input_size) == (S, 32, S)
    assert RGBDetector().input_size is None
    assert protocol.uses_maps(d) and protocol.uses_maps(t) and not protocol.uses_maps(r)
    assert protocol.uses_maps(nn.DataParallel(d))
    assert isinstance(d, protocol.MapDetector) and isinstance(t, protocol.MapDetector)
    assert not isinstance(r, protocol.MapDetector)


def test_two_branch_map_path(images):
    det = TwoBranchDetector(estimator={"size": S}).eval()
    rgb, maps = det.prepare(images)
    sigma = torch.rand(3, 1, S, S) * 3
    assert torch.equal(det.normalize(sigma), det.defocus.normalize(sigma))
    with torch.no_grad():
        assert torch.allclose(det.forward_map(maps, rgb), det(images))
    with pytest.raises(ValueError, match="rgb="):
        det.forward_map(maps)


def test_predict_proba_keeps_modes():
    det = DefocusDetector(estimator={"size": S}).train()
    det.backbone.eval()
    det.predict_proba(torch.rand(2, 3, S, S))
    assert det.training and not det.backbone.training
