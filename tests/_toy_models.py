"""Tiny detectors for the explain tests (the library's own classes, shrunk; or toys with the same interface)."""

import torch
from torch import nn


def tiny_defocus_detector(size: int = 16, seed: int = 0):
    """A ``DefocusDetector`` with a two-stage SmallCNN on ``size x size`` maps (random but input-dependent)."""
    from defocus_xai.detect import DefocusDetector

    torch.manual_seed(seed)
    det = DefocusDetector("small-cnn", estimator={"size": size}, widths=(4, 8))
    # non-trivial BatchNorm statistics so that the logit is not near-constant
    for m in det.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return det.eval()


def tiny_rgb_detector(seed: int = 0):
    from defocus_xai.detect import RGBDetector

    torch.manual_seed(seed)
    return RGBDetector("small-cnn", widths=(4, 8), input_norm="[-1,1]").eval()


class MapToy(nn.Module):
    """The map-detector protocol (``defocus_xai.detect.protocol.MapDetector``) around a ``forward_map``
    that subclasses define; maps are the mean of the image channels."""

    identity = {"name": "toy"}
    input_size = None

    def map_from_images(self, images):
        return images.mean(1, keepdim=True)

    def normalize(self, sigma):
        return sigma

    def prepare(self, images):
        return (self.map_from_images(images),)

    def forward_prepared(self, maps):
        return self.forward_map(maps)

    def forward(self, images):
        return self.forward_map(self.map_from_images(images))

    def predict_proba(self, images, *, batch_size=None):
        with torch.no_grad():
            return torch.sigmoid(self(images)).reshape(-1)


class ToyMapDetector(MapToy):
    """A map detector on a configurable body (to provoke unsupported layers)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward_map(self, maps):
        return self.body(maps)


def body_with(act: nn.Module, size: int = 8) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), act, nn.Flatten(), nn.Linear(2 * size * size, 1))


class ToyData:
    """A deterministic map-style data set of small random images; ``delay`` seconds per sample.

    Sample ``i`` depends only on ``(seed, i)``; odd indices are fakes of the preceding real.
    """

    def __init__(self, n: int, size: int = 16, seed: int = 0, delay: float = 0.0):
        self.n, self.size, self.seed, self.delay = n, size, seed, delay

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        import time

        import numpy as np

        if not 0 <= i < self.n:
            raise IndexError(i)
        if self.delay:
            time.sleep(self.delay)
        rng = np.random.default_rng([self.seed, i])
        base = np.random.default_rng([self.seed, i // 2]).random((3, self.size, self.size))
        img = np.clip(base + (i % 2) * 0.2 * rng.standard_normal(base.shape), 0, 1).astype(np.float32)
        return {"image": torch.from_numpy(img), "label": i % 2, "path": f"toy/{i:04d}.png",
                "source_id": f"scene{i // 2}", "family": "real" if i % 2 == 0 else "noise",
                "mask": torch.ones(1, self.size, self.size, dtype=torch.uint8) * (i % 2)}


def export_script(out: str, n: int, delay: float, chunk_size: int = 2, extra: str = "",
                  methods=("shap_gradient", "saliency")) -> str:
    """Python source of a process that runs one export (used by the kill/resume and torchrun tests)."""
    return f"""
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {str(__import__('pathlib').Path(__file__).resolve().parents[1])!r})
from tests._toy_models import ToyData, tiny_defocus_detector, tiny_rgb_detector
from defocus_xai.explain import export_attributions
export_attributions(tiny_defocus_detector(16), ToyData({n}, delay={delay}), {out!r},
                    methods={tuple(methods)!r}, rgb_detector=tiny_rgb_detector(), background=2,
                    n_samples=6, seed=5, batch_size=2, chunk_size={chunk_size}, progress=False{extra})
"""
