"""The image input convention (defocus_xai._images)."""

import numpy as np
import pytest
import torch

from defocus_xai._images import as_image_batch, to_gray


@pytest.fixture
def rgb_uint8():
    return np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)


def test_all_forms_agree(rgb_uint8):
    ref = torch.from_numpy(rgb_uint8).permute(2, 0, 1)[None].float() / 255
    forms = [
        rgb_uint8,
        rgb_uint8[None],
        rgb_uint8.astype(np.float32) / 255,
        rgb_uint8.astype(np.float64) / 255,
        rgb_uint8.astype(np.uint16) * 257,
        torch.from_numpy(rgb_uint8).permute(2, 0, 1),
        torch.from_numpy(rgb_uint8).permute(2, 0, 1)[None].float() / 255,
        [rgb_uint8],
    ]
    for f in forms:
        out = as_image_batch(f)
        assert out.shape == (1, 3, 12, 10) and out.dtype == torch.float32
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_pil_image(rgb_uint8):
    from PIL import Image

    out = as_image_batch(Image.fromarray(rgb_uint8))
    torch.testing.assert_close(out, as_image_batch(rgb_uint8))
    with pytest.raises(ValueError, match="load_image"):
        as_image_batch(Image.fromarray(np.zeros((4, 4, 4), np.uint8), "RGBA"))


def test_gray_forms_repeat_to_three_channels():
    g = np.random.default_rng(1).random((8, 9)).astype(np.float32)
    for f in (g, g[..., None], g[None, ..., None], torch.from_numpy(g), torch.from_numpy(g)[None],
              torch.from_numpy(g)[None, None]):
        out = as_image_batch(f)
        assert out.shape == (1, 3, 8, 9)
        torch.testing.assert_close(out[0, 1], torch.from_numpy(g))


def test_tolerance_clamps():
    x = torch.full((1, 3, 4, 4), 1.0 + 5e-7)
    assert float(as_image_batch(x).max()) == 1.0


@pytest.mark.parametrize("bad, exc, match", [
    (np.zeros((4, 4, 3), bool), TypeError, "bool"),
    (np.zeros((4, 4, 3), np.int32), TypeError, "int32"),
    (np.zeros((4, 4, 4), np.uint8), ValueError, "load_image"),
    (torch.zeros(1, 4, 4, 4), ValueError, "load_image"),
    (np.zeros((4, 4, 5), np.uint8), ValueError, "channels-last"),
    (torch.zeros(5, 4, 4), ValueError, r"\(5, 4, 4\)"),
    (torch.zeros(4, 4, 3), ValueError, "permute"),
    (np.zeros((2, 2, 4, 4, 3), np.uint8), ValueError, "rank"),
    (np.zeros((0, 4, 3), np.uint8), ValueError, "empty"),
    (torch.zeros(0, 3, 4, 4), ValueError, "empty"),
    (np.full((4, 4, 3), np.nan, np.float32), ValueError, "NaN"),
    (np.full((4, 4, 3), np.inf, np.float32), ValueError, "NaN or infinite"),
    (np.full((4, 4, 3), 255.0, np.float32), ValueError, r"\[0, 1\].*uint8"),
    (torch.full((3, 4, 4), -1.0), ValueError, r"-1"),
    ("image.png", TypeError, "str"),
    ([], ValueError, "empty"),
])
def test_rejected_inputs(bad, exc, match):
    with pytest.raises(exc, match=match):
        as_image_batch(bad)


def test_list_of_different_sizes_rejected():
    with pytest.raises(ValueError, match="share one size"):
        as_image_batch([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)])


def test_gradient_flows_through_conversion():
    x = torch.rand(3, 8, 8, requires_grad=True)
    to_gray(as_image_batch(x)).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 1 / 3))


def test_to_gray_is_channel_mean():
    x = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(to_gray(x), x.mean(1, keepdim=True))
    with pytest.raises(ValueError, match="shape"):
        to_gray(torch.rand(2, 1, 5, 5))
