"""Tests for defocus_xai.data.io.load_image: every bad-image case raises ImageLoadError naming the file,
every supported mode loads with the expected values."""

import io
import os
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from defocus_xai.data.io import DEFAULT_MAX_PIXELS, ImageLoadError, load_image


def _rng_rgb(h=16, w=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_with_header(width, height) -> bytes:
    """A syntactically valid PNG whose IHDR claims width x height (8-bit RGB) but holds no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b""))
            + _png_chunk(b"IEND", b""))


def _assert_names_file(exc_info, path):
    err = exc_info.value
    assert isinstance(err, ValueError)
    assert err.path == os.fspath(path)
    assert os.fspath(path) in str(err)
    assert err.reason and err.reason in str(err)


# ----------------------------------------------------------------------------------------------- good files
def test_rgb_png_exact(tmp_path):
    rgb = _rng_rgb()
    p = tmp_path / "x.png"
    Image.fromarray(rgb).save(p)
    out = load_image(p)
    assert out.shape == (16, 20, 3) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, rgb / 255.0, atol=1e-7)


def test_str_path_and_jpeg(tmp_path):
    p = tmp_path / "x.jpg"
    Image.fromarray(_rng_rgb()).save(p, quality=95)
    out = load_image(str(p))
    assert out.shape == (16, 20, 3) and 0.0 <= out.min() and out.max() <= 1.0


def test_grayscale_replicated(tmp_path):
    g = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    p = tmp_path / "g.png"
    Image.fromarray(g).save(p)
    out = load_image(p)
    assert out.shape == (8, 8, 3)
    for c in range(3):
        np.testing.assert_allclose(out[..., c], g / 255.0, atol=1e-7)


def test_bilevel(tmp_path):
    p = tmp_path / "b.png"
    Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1").save(p)
    out = load_image(p)
    np.testing.assert_array_equal(out[..., 0], [[0, 1], [1, 0]])


def test_16bit_grayscale_keeps_precision(tmp_path):
    vals = np.array([[0, 1, 2, 257], [1000, 32768, 65534, 65535]], dtype=np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(vals).save(p)
    assert Image.open(p).mode.startswith("I;16")
    out = load_image(p)
    np.testing.assert_allclose(out[..., 0], vals / 65535.0, rtol=0, atol=1e-7)
    # values 1 and 2 would collapse to 0 in 8 bits; here they stay distinct
    assert 0 < out[0, 1, 0] < out[0, 2, 0] < 1 / 255


def test_32bit_int_in_16bit_range(tmp_path):
    vals = np.array([[0, 100], [40000, 65535]], dtype=np.int32)
    p = tmp_path / "i.tif"
    Image.fromarray(vals).save(p)
    assert Image.open(p).mode == "I"
    np.testing.assert_allclose(load_image(p)[..., 1], vals / 65535.0, atol=1e-7)


def test_32bit_int_out_of_range_rejected(tmp_path):
    p = tmp_path / "i.tif"
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(p)
    with pytest.raises(ImageLoadError, match="16-bit range") as ei:
        load_image(p)
    _assert_names_file(ei, p)


def test_float_image(tmp_path):
    ok = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)).save(ok)
    np.testing.assert_allclose(load_image(ok)[..., 2], [[0, 0.25], [0.5, 1]])
    bad = tmp_path / "fbad.tif"
    Image.fromarray(np.array([[0.0, np.nan]], np.float32)).save(bad)
    with pytest.raises(ImageLoadError, match="NaN") as ei:
        load_image(bad)
    _assert_names_file(ei, bad)
    big = tmp_path / "fbig.tif"
    Image.fromarray(np.array([[0.0, 3.0]], np.float32)).save(big)
    with pytest.raises(ImageLoadError, match="outside"):
        load_image(big)


def test_rgba_composited_over_fill(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 255            # pure red
    rgba[0, 0, 3] = 255           # opaque
    rgba[0, 1, 3] = 0             # fully transparent
    rgba[1, :, 3] = 51            # alpha 0.2
    p = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(p)

    white = load_image(p)  # default fill: white
    np.testing.assert_allclose(white[0, 0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(white[0, 1], [1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(white[1, 0], [1, 0.8, 0.8], atol=1e-6)

    black = load_image(p, fill=(0, 0, 0))
    np.testing.assert_allclose(black[1, 0], [0.2, 0, 0], atol=1e-6)
    np.testing.assert_allclose(black[0, 1], [0, 0, 0], atol=1e-6)

    grey = load_image(p, fill=(0.5, 0.5, 0.5))
    np.testing.assert_allclose(grey[1, 1], [0.2 + 0.8 * 0.5, 0.4, 0.4], atol=1e-6)

    ignored = load_image(p, fill=None)  # alpha dropped, stored colour kept (like convert("RGB"))
    np.testing.assert_allclose(ignored[..., 0], 1.0)
    np.testing.assert_allclose(ignored[..., 1:], 0.0)


def test_la_composited(tmp_path):
    la = np.zeros((1, 2, 2), np.uint8)
    la[0, :, 0] = 0
    la[0, 0, 1] = 255
    la[0, 1, 1] = 0
    p = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(p)
    np.testing.assert_allclose(load_image(p)[0], [[0, 0, 0], [1, 1, 1]], atol=1e-6)


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (3, 1))
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    im.putdata([0, 1, 2])
    im.info["transparency"] = 1  # palette entry 1 (green) is transparent
    p = tmp_path / "p.png"
    im.save(p, transparency=1)
    assert Image.open(p).mode == "P"
    out = load_image(p, fill=(0, 0, 0))
    np.testing.assert_allclose(out[0], [[1, 0, 0], [0, 0, 0], [0, 0, 1]], atol=1e-6)
    out_w = load_image(p)
    np.testing.assert_allclose(out_w[0, 1], [1, 1, 1], atol=1e-6)


def test_palette_without_transparency(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 6))
    im.putdata([0, 1])
    p = tmp_path / "p.gif"
    im.save(p)
    out = load_image(p)
    np.testing.assert_allclose(out[0] * 255, [[10, 20, 30], [200, 100, 50]], atol=1e-4)


def test_cmyk_jpeg(tmp_path):
    p = tmp_path / "c.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(p, quality=100)  # cyan 0, magenta+yellow full -> red
    assert Image.open(p).mode == "CMYK"
    out = load_image(p)
    assert out.shape == (8, 8, 3)
    np.testing.assert_allclose(out.mean(axis=(0, 1)), [1, 0, 0], atol=0.02)


def test_exif_orientation_applied(tmp_path):
    # Stored 4 high x 6 wide, top row bright; orientation 6 means "rotate 90 degrees clockwise to display".
    stored = np.zeros((4, 6, 3), np.uint8)
    stored[0, :, :] = 255
    im = Image.fromarray(stored)
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif.tobytes(), quality=100)
    out = load_image(p)
    assert out.shape == (6, 4, 3)  # displayed upright: width and height swapped
    # after a clockwise turn the stored top row is the right-most column
    assert out[:, -1].mean() > 0.8 and out[:, 0].mean() < 0.2
    expected = np.asarray(Image.fromarray(stored).transpose(Image.Transpose.ROTATE_270)) / 255.0
    np.testing.assert_allclose(out, expected, atol=0.1)


def test_output_never_nan_and_in_range(tmp_path):
    p = tmp_path / "x.webp"
    Image.fromarray(_rng_rgb(seed=3)).save(p, lossless=True)
    out = load_image(p)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


# ----------------------------------------------------------------------------------------------- bad files
def test_missing_file(tmp_path):
    p = tmp_path / "nope.png"
    with pytest.raises(ImageLoadError, match="not found") as ei:
        load_image(p)
    _assert_names_file(ei, p)


def test_directory(tmp_path):
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty") as ei:
        load_image(p)
    _assert_names_file(ei, p)


def test_random_bytes_named_png(tmp_path):
    p = tmp_path / "noise.png"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ImageLoadError, match="not a recognised image") as ei:
        load_image(p)
    _assert_names_file(ei, p)


def test_text_file(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("hello, not an image\n")
    with pytest.raises(ImageLoadError) as ei:
        load_image(p)
    _assert_names_file(ei, p)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated(tmp_path, fmt):
    buf = io.BytesIO()
    Image.fromarray(_rng_rgb(64, 64)).save(buf, format=fmt)
    data = buf.getvalue()
    p = tmp_path / f"trunc.{fmt.lower()}"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated or corrupt") as ei:
        load_image(p)
    _assert_names_file(ei, p)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # global state untouched


def test_corrupt_png_crc(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rng_rgb(32, 32)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    idat = data.find(b"IDAT")
    data[idat + 10] ^= 0xFF  # flip a byte inside the compressed pixel data
    p = tmp_path / "crc.png"
    p.write_bytes(bytes(data))
    with pytest.raises(ImageLoadError) as ei:
        load_image(p)
    _assert_names_file(ei, p)


def test_zero_size_header(tmp_path):
    p = tmp_path / "zero.png"
    p.write_bytes(_png_with_header(0, 10))
    with pytest.raises(ImageLoadError) as ei:
        load_image(p)
    _assert_names_file(ei, p)


def test_decompression_bomb_refused_by_pillow(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_with_header(100_000, 100_000))
    with pytest.raises(ImageLoadError, match="decompression-bomb") as ei:
        load_image(p, max_pixels=None)
    _assert_names_file(ei, p)
    with pytest.raises(ImageLoadError):
        load_image(p)  # default limit: refused too


def test_our_max_pixels_checked_before_decoding(tmp_path):
    # 9000 x 9000 is below Pillow's warning threshold but above our default; the file holds no pixel data,
    # so a decode attempt would fail with "truncated": the reason shows the header check came first.
    p = tmp_path / "big.png"
    p.write_bytes(_png_with_header(9000, 9000))
    assert 9000 * 9000 > DEFAULT_MAX_PIXELS
    with pytest.raises(ImageLoadError, match="max_pixels") as ei:
        load_image(p)
    _assert_names_file(ei, p)
    small = tmp_path / "small.png"
    Image.fromarray(_rng_rgb(10, 10)).save(small)
    with pytest.raises(ImageLoadError, match="100 pixels, more than max_pixels=99"):
        load_image(small, max_pixels=99)
    assert load_image(small, max_pixels=100).shape == (10, 10, 3)


def test_pillow_warning_range_needs_explicit_limit(tmp_path):
    limit = Image.MAX_IMAGE_PIXELS
    side = int((1.5 * limit) ** 0.5)  # between Pillow's warning and error thresholds
    p = tmp_path / "warn.png"
    p.write_bytes(_png_with_header(side, side))
    with pytest.raises(ImageLoadError, match="MAX_IMAGE_PIXELS"):
        load_image(p, max_pixels=None)
    # with an explicitly larger limit the header check passes and the (empty) data fails to decode
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(p, max_pixels=side * side)
    assert Image.MAX_IMAGE_PIXELS == limit


def test_bad_arguments(tmp_path):
    p = tmp_path / "x.png"
    Image.fromarray(_rng_rgb()).save(p)
    with pytest.raises(ValueError, match="fill"):
        load_image(p, fill=(1, 1))
    with pytest.raises(ValueError, match="fill"):
        load_image(p, fill=(2, 0, 0))
    with pytest.raises(TypeError, match="background"):
        load_image(p, background=(0, 0, 0))  # the attribution word is not the fill colour
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(p, max_pixels=0)
    with pytest.raises(TypeError):
        load_image(123)


def test_error_pickles_with_fields():
    err = pickle.loads(pickle.dumps(ImageLoadError("/d/x.png", "empty file (0 bytes)")))
    assert err.path == "/d/x.png" and err.reason == "empty file (0 bytes)"
    assert str(err) == "cannot load image '/d/x.png': empty file (0 bytes)"


def test_load_error_survives_a_dataloader_worker(tmp_path):
    from torch.utils.data import DataLoader

    from defocus_xai.data import FolderDataset

    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "bad.png").write_bytes(b"not a png")
    ds = FolderDataset(tmp_path, size=32)
    with pytest.raises(ImageLoadError, match="bad.png"):
        next(iter(DataLoader(ds, batch_size=1, num_workers=1, collate_fn=lambda b: b)))
