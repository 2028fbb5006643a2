"""Training and evaluation in Python: results, resuming, and the caller's model given back as it came."""

import pytest
import torch
from torch import nn

from defocus_xai.detect import RGBDetector, TrainResult, evaluate_detector, train_detector
from defocus_xai.detect.data_cache import MemoryDataset, PreparedData, prepare_inputs

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(16, 3, 16, 16, generator=g) * 255).to(torch.uint8)
    labels = [0, 1] * 8
    images[1::2] //= 4  # fakes are darker: learnable
    return MemoryDataset(images, labels, ["real", "dark"] * 8)


def _modes(model):
    return [m.training for m in model.modules()]


def test_train_detector_gives_the_model_back_in_its_mode(data, tmp_path):
    det = RGBDetector(input_size=16).train()
    det.backbone.features[0].eval()  # a mixed state must come back as it was, module by module
    before = _modes(det)
    w0 = det.backbone.fc.weight.detach().clone()
    res = train_detector(det, data, val_data=data, epochs=2, batch_size=8, device="cpu", out=tmp_path,
                         progress=False)
    assert isinstance(res, TrainResult) and res.detector is det
    assert _modes(det) == before and det.device.type == "cpu"
    assert not torch.equal(det.backbone.fc.weight, w0)  # trained in place, by design
    assert [h["epoch"] for h in res.history] == [1, 2] and res.best_path.is_file()
    det.eval()
    res2 = train_detector(nn.DataParallel(det), data, val_data=data, epochs=2, batch_size=8, device="cpu",
                          out=tmp_path, progress=False)
    assert res2.resumed_epoch == 2 and not det.training


def test_evaluate_detector_gives_the_model_back_in_its_mode(data):
    det = RGBDetector(input_size=16).train()
    m, per_group, scores = evaluate_detector(det, data, batch_size=8, device="cpu", progress=False)
    assert det.training and all(_modes(det))
    assert m["n"] == 16 and scores.shape == (16,) and set(per_group.index) == {"dark", "all"}
    prepared = prepare_inputs(det, data, device="cpu", progress=False)
    assert isinstance(prepared, PreparedData) and det.training
    m2, _, scores2 = evaluate_detector(det, prepared, batch_size=8, device="cpu")
    assert det.training and torch.allclose(torch.as_tensor(scores), torch.as_tensor(scores2), atol=1e-2)


def test_train_detector_errors(data):
    with pytest.raises(ValueError, match="epochs"):
        train_detector(RGBDetector(), data, epochs=0, progress=False)
    with pytest.raises(ValueError, match="label"):
        train_detector(RGBDetector(), [(torch.zeros(3, 8, 8), 2), (torch.zeros(3, 8, 8), 0)], epochs=1,
                       device="cpu", progress=False)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_borrowed_device_is_given_back(data):
    det = RGBDetector(input_size=16)
    evaluate_detector(det, data, batch_size=8, device="cuda", progress=False)
    assert det.device.type == "cpu"
    train_detector(det, data, epochs=1, batch_size=8, device="cuda", progress=False)
    assert det.device.type == "cpu"
