"""Checkpoints: the paper's layouts load unchanged, our saves round-trip, malformed files fail clearly."""

import json

import pytest
import torch
from torch import nn

from defocus_xai.detect import DefocusDetector, RGBDetector, TwoBranchDetector, load_detector, save_detector
from defocus_xai.detect.protocol import unwrap
from defocus_xai.detect.state_dict import load_state_dict_file, strip_prefix

torch.set_num_threads(1)
timm = pytest.importorskip("timm")
S = 96  # legacy_xception works on small inputs; keeps the test fast


def _randomize_bn(model, seed):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


class _RefDefocusNet(nn.Module):
    """Stands in for the reference DefocusNet: the Xception is its ``classifier``, no other weights."""

    def __init__(self):
        super().__init__()
        self.classifier = timm.create_model("legacy_xception", pretrained=False, num_classes=1)

    def forward(self, x):
        return self.classifier(x)


@pytest.fixture(scope="module")
def xception_ckpts(tmp_path_factory):
    torch.manual_seed(1)
    d = tmp_path_factory.mktemp("ref")
    ref = _RefDefocusNet()
    _randomize_bn(ref, 1)
    p_def = d / "defocus_gt_legacy_xception_Deepfakes.pth"
    torch.save(nn.DataParallel(ref).state_dict(), p_def)
    rgb = timm.create_model("legacy_xception", pretrained=False, num_classes=1)
    _randomize_bn(rgb, 2)
    p_rgb = d / "rgb_legacy_xception_Face2Face.pth"
    torch.save(nn.DataParallel(rgb).state_dict(), p_rgb)
    return {"defocus": (p_def, ref.classifier.eval()), "rgb": (p_rgb, rgb.eval())}


def test_reference_defocus_checkpoint_matches_timm(xception_ckpts):
    path, xception = xception_ckpts["defocus"]
    sd = torch.load(path, weights_only=True)
    assert all(k.startswith("module.classifier.") for k in sd)
    det = load_detector(path, device="cpu")
    assert isinstance(det, DefocusDetector) and not det.training
    cfg = det.estimator.config()
    assert (cfg["recipe"], cfg["std1"], cfg["std2"], cfg["size"]) == ("reference", 2.0, 2.5, 299)
    assert det.map_norm == "minmax" and det.map_channels == 3
    g = torch.Generator().manual_seed(3)
    maps = torch.rand(2, 1, S, S, generator=g)
    with torch.no_grad():
        ours = det.forward_map(maps)
        direct = xception(maps.repeat(1, 3, 1, 1))
    assert ours.shape == (2, 1)
    assert torch.allclose(ours, direct, atol=1e-5, rtol=0)
    ident = det.identity
    assert ident["arch"] == "defocus" and ident["layout"] == "reference-defocus"
    assert ident["checksum"].startswith("sha256:") and "Deepfakes" in ident["training_data"]
    assert ident["estimator"]["recipe"] == "reference"


def test_reference_rgb_checkpoint_matches_timm(xception_ckpts):
    path, xception = xception_ckpts["rgb"]
    assert isinstance(load_detector(path, device="cpu"), RGBDetector)
    det = load_detector(path, device="cpu", config={"input_size": None})  # no resize: compare at S x S
    assert det.input_norm == "[-1,1]"
    x = torch.rand(2, 3, S, S, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = det(x)
        direct = xception(x * 2 - 1)
    assert torch.allclose(ours, direct, atol=1e-5, rtol=0)
    assert "Face2Face" in det.identity["training_data"]
    # arch= overrides the detection: the same Xception as a defocus detector on 3-channel maps
    as_def = load_detector(path, arch="defocus", device="cpu")
    maps = torch.rand(1, 1, S, S)
    with torch.no_grad():
        assert torch.allclose(as_def.forward_map(maps), xception(maps.repeat(1, 3, 1, 1)), atol=1e-5)


def test_reference_checkpoint_missing_and_shape_mismatch(xception_ckpts, tmp_path):
    path, _ = xception_ckpts["defocus"]
    sd = torch.load(path, weights_only=True)
    bad = dict(sd)
    del bad["module.classifier.conv1.weight"]
    bad["module.classifier.fc.weight"] = torch.zeros(2, 2048)
    bad["module.classifier.fc.bias"] = torch.zeros(2)
    bad["module.classifier.extra.weight"] = torch.zeros(3)
    p = tmp_path / "bad.pth"
    torch.save(bad, p)
    with pytest.raises(ValueError) as info:
        load_detector(p, device="cpu")
    msg = str(info.value)
    assert "missing keys 1: backbone.conv1.weight" in msg
    assert "unexpected keys 1: backbone.extra.weight" in msg
    assert "backbone.fc.weight: checkpoint (2, 2048) vs model (1, 2048)" in msg
    assert "bad.pth" in msg


def test_small_round_trip_and_sidecar(tmp_path):
    det = DefocusDetector(estimator={"size": 32}, map_norm="fixed", sigma_max=4.0)
    _randomize_bn(det, 5)
    p = save_detector(nn.DataParallel(det), tmp_path / "det.pt", training_data="unit test", metrics={"auc": 0.5})
    side = json.loads((tmp_path / "det.json").read_text())
    assert side["arch"] == "defocus" and side["config"]["estimator"]["size"] == 32
    assert side["training_data"] == "unit test" and len(side["sha256"]) == 64
    assert side["format_version"] == 2 and len(side["sidecar_sha256"]) == 64
    assert not list(tmp_path.glob("*.tmp"))
    sd = torch.load(p, weights_only=True)
    assert not any(k.startswith("estimator.") for k in sd)
    loaded = load_detector(p, device="cpu")
    assert loaded.config() == det.config()
    assert loaded.identity["training_data"] == "unit test"
    assert loaded.identity["checksum"] == "sha256:" + side["sha256"]
    maps = torch.rand(2, 1, 32, 32)
    det.eval()
    with torch.no_grad():
        assert torch.equal(loaded.forward_map(maps), det.forward_map(maps))
    # a tampered weights file no longer matches its sidecar
    sd["backbone.fc.bias"] = sd["backbone.fc.bias"] + 1
    torch.save(sd, p)
    with pytest.raises(ValueError, match="sha256"):
        load_detector(p, device="cpu")
    assert load_detector(p, device="cpu", verify_checksum=False) is not None


@pytest.mark.parametrize("cls", [RGBDetector, TwoBranchDetector])
def test_round_trip_other_arches(tmp_path, cls):
    det = cls() if cls is RGBDetector else cls(estimator={"size": 32})
    det.eval()
    p = save_detector(det, tmp_path / "m.pt")
    loaded = load_detector(str(p), device="cpu")
    assert type(loaded) is cls and loaded.config() == det.config()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), det(x))


def test_ddp_style_prefix_is_stripped(tmp_path):
    det = RGBDetector().eval()
    p = save_detector(det, tmp_path / "r.pt")
    sd = torch.load(p, weights_only=True)
    torch.save({"module." + k: v for k, v in sd.items()}, p)
    loaded = load_detector(p, device="cpu", verify_checksum=False)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), det(x))
    assert strip_prefix({"module.module.a": 1}) == {"a": 1}
    assert strip_prefix({"module.a": 1, "b": 2}) == {"module.a": 1, "b": 2}
    assert unwrap(nn.DataParallel(det)) is det
    det.train()
    assert load_detector(nn.DataParallel(det), device="cpu") is det
    assert det.training  # a module is returned unwrapped and unchanged


def test_training_checkpoint_dict_is_accepted(tmp_path):
    det = RGBDetector().eval()
    p = tmp_path / "train.pt"
    torch.save({"model": det.state_dict(), "epoch": 3}, p)
    sd, extra = load_state_dict_file(p)
    assert extra == {"epoch": 3} and set(sd) == set(det.state_dict())


def test_pickled_object_is_refused(tmp_path):
    p = tmp_path / "whole_model.pt"
    torch.save(nn.Linear(2, 1), p)
    with pytest.raises(ValueError, match=r"refused to load .*whole_model\.pt.*weights_only=True"):
        load_detector(p, device="cpu")
    p2 = tmp_path / "obj.pt"
    torch.save({"a": torch.zeros(1), "b": object()}, p2)
    with pytest.raises(ValueError, match="pickled Python objects"):
        load_state_dict_file(p2)


def test_not_a_state_dict_and_garbage(tmp_path):
    p = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], p)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        load_detector(p, device="cpu")
    p = tmp_path / "mixed.pt"
    torch.save({"a": torch.zeros(1), "epoch": 3}, p)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        load_detector(p, device="cpu")
    p = tmp_path / "garbage.pt"
    p.write_bytes(b"not a checkpoint at all" * 4)
    with pytest.raises(ValueError, match="garbage.pt"):
        load_detector(p, device="cpu")
    with pytest.raises(FileNotFoundError):
        load_detector(tmp_path / "nope.pt")


def test_own_layout_without_sidecar_needs_arch(tmp_path):
    det = RGBDetector().eval()
    p = tmp_path / "r.pt"
    torch.save(det.state_dict(), p)
    with pytest.raises(ValueError, match="arch="):
        load_detector(p, device="cpu")
    assert isinstance(load_detector(p, arch="rgb", device="cpu"), RGBDetector)
    with pytest.raises(ValueError, match="arch must be"):
        load_detector(p, arch="xception")


def _saved(tmp_path, det=None):
    det = (det or RGBDetector()).eval()
    p = save_detector(det, tmp_path / "m.pt")
    return p, tmp_path / "m.json", json.loads((tmp_path / "m.json").read_text())


@pytest.mark.parametrize("key", ["checkpoint_path", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay",
                                 "features_only", "no_such_option"])
def test_sidecar_keys_outside_the_allow_list_never_reach_timm(tmp_path, monkeypatch, key):
    """A malicious sidecar cannot make timm read a file: refused before any model is built."""
    import timm.models
    import timm.models._builder as builder
    import timm.models._factory as factory

    calls = []
    real_create = timm.create_model

    def spy_create(*args, **kwargs):
        calls.append(kwargs)
        return real_create(*args, **kwargs)

    def never(*args, **kwargs):
        raise AssertionError("timm was asked to load a checkpoint")

    monkeypatch.setattr(timm, "create_model", spy_create)
    monkeypatch.setattr(timm.models, "create_model", spy_create)
    monkeypatch.setattr(timm.models, "load_checkpoint", never)
    monkeypatch.setattr(factory, "load_checkpoint", never)
    monkeypatch.setattr(builder, "load_pretrained", never)
    target = tmp_path / "x"
    torch.save({"w": torch.zeros(1)}, target)
    p, side_path, side = _saved(tmp_path, RGBDetector("resnet10t"))
    calls.clear()
    side["config"] = {"backbone": "resnet18", key: str(target)}
    side_path.write_text(json.dumps(side))
    for verify in (True, False):
        with pytest.raises(ValueError) as info:
            load_detector(p, device="cpu", verify_checksum=verify)
        assert "m.json" in str(info.value) and key in str(info.value)
    assert not any(key in kw for kw in calls) and not calls


def test_sidecar_bad_json_and_bad_arch_name_the_file(tmp_path):
    p, side_path, side = _saved(tmp_path)
    side_path.write_text("{not json")
    with pytest.raises(ValueError, match=r"m\.json.*not valid JSON"):
        load_detector(p, device="cpu")
    side_path.write_text(json.dumps({**side, "arch": "evil"}))
    with pytest.raises(ValueError, match=r"m\.json.*arch must be"):
        load_detector(p, device="cpu")
    side_path.write_text(json.dumps({**side, "config": {**side["config"], "backbone": {"x": 1}}}))
    with pytest.raises(ValueError, match=r"m\.json.*backbone name"):
        load_detector(p, device="cpu")


def test_sidecar_is_covered_by_its_checksum(tmp_path):
    p, side_path, side = _saved(tmp_path)
    assert load_detector(p, device="cpu") is not None
    edited = {**side, "config": {**side["config"], "input_norm": "none"}}
    side_path.write_text(json.dumps(edited))
    with pytest.raises(ValueError, match="edited after saving"):
        load_detector(p, device="cpu")
    assert load_detector(p, device="cpu", verify_checksum=False).input_norm == "none"
    old = {k: v for k, v in side.items() if k != "sidecar_sha256"}
    side_path.write_text(json.dumps({**old, "format_version": 1}))
    with pytest.raises(ValueError, match="format_version"):
        load_detector(p, device="cpu")


def test_bit_flip_without_checksum_fails_the_crc_check(tmp_path):
    det = RGBDetector().eval()
    p = tmp_path / "nosidecar.pt"
    torch.save(det.state_dict(), p)
    assert load_detector(p, arch="rgb", device="cpu") is not None
    data = bytearray(p.read_bytes())
    import zipfile

    with zipfile.ZipFile(p) as zf:
        info = next(i for i in zf.infolist() if i.file_size > 1000)
    # flip one bit inside the stored (uncompressed) tensor data of that member
    pos = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.file_size // 2
    data[pos] ^= 0x10
    p.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"nosidecar\.pt.*CRC"):
        load_detector(p, arch="rgb", device="cpu")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, bad):
    det = RGBDetector().eval()
    sd = det.state_dict()
    sd["backbone.fc.bias"] = torch.full_like(sd["backbone.fc.bias"], bad)
    p = tmp_path / "nan.pt"
    torch.save(sd, p)
    with pytest.raises(ValueError, match=r"nan\.pt.*backbone\.fc\.bias.*non-finite"):
        load_detector(p, arch="rgb", device="cpu")
