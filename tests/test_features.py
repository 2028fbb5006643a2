"""extract_features: batched, no-grad, eval-mode features and scores over data sets, loaders and tensors."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from defocus_xai.explain.features import FeatureSet, extract_features
from tests._toy_models import ToyData, tiny_defocus_detector, tiny_rgb_detector

torch.set_num_threads(1)

S = 32


@pytest.fixture(scope="module")
def det():
    return tiny_defocus_detector(size=S)


def test_defocus_features_match_direct_computation(det):
    data = ToyData(5, size=S)
    fs = extract_features(det, data, batch_size=2, progress=False)
    assert isinstance(fs, FeatureSet) and len(fs) == 5 and fs.space == "defocus"
    assert fs.features.shape == (5, 8) and fs.features.dtype == np.float32
    assert fs.labels.dtype == np.int8 and fs.labels.tolist() == [0, 1, 0, 1, 0]
    assert fs.source_ids.tolist() == [data[i]["source_id"] for i in range(5)]
    assert fs.families.tolist() == ["real", "noise", "real", "noise", "real"]
    assert fs.scores.shape == (5,) and fs.scores.dtype == np.float32
    images = torch.stack([data[i]["image"] for i in range(5)])
    with torch.no_grad():
        ref_f = det.features(images).numpy()
        ref_p = det.predict_proba(images).numpy()
    np.testing.assert_allclose(fs.features, ref_f, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fs.scores, ref_p, rtol=1e-4, atol=1e-6)
    # batch size does not change values; a bare tensor has no labels
    ft = extract_features(det, images, batch_size=5, progress=False)
    np.testing.assert_allclose(ft.features, fs.features, rtol=1e-4, atol=1e-5)
    assert ft.labels.tolist() == [-1] * 5 and ft.source_ids.tolist() == [""] * 5
    arrays = fs.to_arrays()
    assert set(arrays) == {"features", "labels", "source_ids", "families", "scores"}
    assert arrays["source_ids"].dtype.kind == "U"


def test_modes_restored_no_grad_and_dataparallel(det):
    det.train()
    state = {k: v.clone() for k, v in det.state_dict().items()}
    try:
        fs = extract_features(nn.DataParallel(det), torch.rand(3, 3, S, S), progress=False)
        assert det.training  # mode restored
        # BatchNorm running statistics untouched (eval mode inside)
        assert all(torch.equal(state[k], v) for k, v in det.state_dict().items())
        assert fs.features.shape == (3, 8)
    finally:
        det.eval()


def test_per_module_modes_kept():
    d = tiny_defocus_detector(size=S, seed=1).train()
    d.backbone.fc.eval()
    modes = {n: m.training for n, m in d.named_modules()}
    extract_features(d, torch.rand(2, 3, S, S), device="cpu", progress=False)
    assert {n: m.training for n, m in d.named_modules()} == modes


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_given_back():
    d = tiny_defocus_detector(size=S, seed=1)
    x = torch.rand(3, 3, S, S)
    ref = extract_features(d, x, progress=False)
    fs = extract_features(d, x, device="cuda", progress=False)
    assert next(d.parameters()).device.type == "cpu"  # moved there for the run, and back
    np.testing.assert_allclose(fs.scores, ref.scores, rtol=1e-3, atol=1e-5)


def test_dataloader_with_synth_collate_and_numpy_hwc(det):
    from defocus_xai.data import DefocusSynth, collate

    ds = DefocusSynth(4, size=S, seed=1)
    loader = DataLoader(ds, batch_size=3, collate_fn=collate)
    fs = extract_features(det, loader, progress=True)
    assert fs.labels.tolist() == [int(ds[i]["label"]) for i in range(4)]
    assert fs.families.tolist() == [ds[i]["family"] for i in range(4)]
    assert fs.source_ids.tolist() == [ds[i]["source_id"] for i in range(4)]
    # default torch collate gives the same
    fd = extract_features(det, DataLoader(ds, batch_size=2), progress=False)
    np.testing.assert_allclose(fd.features, fs.features, rtol=1e-4, atol=1e-5)
    assert fd.families.tolist() == fs.families.tolist()
    # numpy (N, H, W, 3) uint8 images are converted at the boundary
    imgs = (np.random.default_rng(0).random((2, S, S, 3)) * 255).astype(np.uint8)
    fn = extract_features(det, imgs, progress=False)
    fu = extract_features(det, torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0, progress=False)
    np.testing.assert_allclose(fn.features, fu.features, rtol=1e-4, atol=1e-5)


def test_rgb_detector_auto_space_and_tuple_samples():
    rgb = tiny_rgb_detector()
    data = [(torch.rand(3, S, S), i % 2) for i in range(3)]
    fs = extract_features(rgb, data, batch_size=2, progress=False)
    assert fs.space == "rgb" and fs.labels.tolist() == [0, 1, 0] and fs.features.shape == (3, 8)
    with torch.no_grad():
        ref = rgb.features(torch.stack([d[0] for d in data])).numpy()
    np.testing.assert_allclose(fs.features, ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="space='defocus'"):
        extract_features(rgb, torch.rand(1, 3, S, S), space="defocus", progress=False)


def test_two_branch_spaces():
    from defocus_xai.detect import TwoBranchDetector

    torch.manual_seed(0)
    tb = TwoBranchDetector(estimator={"size": S}).eval()
    x = torch.rand(2, 3, S, S)
    fused = extract_features(tb, x, progress=False)
    assert fused.space == "fused" and fused.features.shape == (2, 256)
    d = extract_features(tb, x, space="defocus", progress=False)
    r = extract_features(tb, x, space="rgb", progress=False)
    np.testing.assert_allclose(np.concatenate([r.features, d.features], 1), fused.features, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(d.scores, tb.predict_proba(x).numpy(), rtol=1e-4, atol=1e-6)


def test_errors(det):
    with pytest.raises(ValueError, match="space"):
        extract_features(det, torch.rand(1, 3, S, S), space="depth", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(det, torch.rand(1, 3, S, S), batch_size=0, progress=False)
    with pytest.raises(ValueError, match="empty"):
        extract_features(det, [], progress=False)
    with pytest.raises(ValueError, match="image"):
        extract_features(det, [{"label": 0}], progress=False)
    with pytest.raises(ValueError, match="labels must be"):
        extract_features(det, [{"image": torch.rand(3, S, S), "label": 5}], progress=False)
