"""The sensor and storage of DefocusSynth: signal-dependent noise, 8-bit quantization, JPEG.

Internal to :mod:`defocus_xai.data.synth` (docs/synth.md, "Rendering" and "Version 2.0: sensor").
"""

from __future__ import annotations

import io

import numpy as np

#: Version 1.0: read-noise standard deviation range and shot-noise gain range (variance = gain * intensity).
READ_NOISE_RANGE = (0.002, 0.015)
SHOT_GAIN_RANGE = (0.0, 3e-4)

#: Version 2.0: log-uniform read-noise and shot-gain ranges (from a clean base-ISO shot to high ISO).
READ_NOISE_RANGE_V2 = (0.001, 0.02)
SHOT_GAIN_RANGE_V2 = (1e-5, 2e-3)


def _as_quality(jpeg_quality) -> int | None:
    if jpeg_quality is None:
        return None
    q = int(jpeg_quality)
    if not 1 <= q <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100 or None, got {jpeg_quality!r}")
    return q


def _store(img: np.ndarray, jpeg_quality: int | None) -> np.ndarray:
    """Clip, quantize to 8 bits and optionally JPEG-compress a (3, H, W) image; float32 on the 8-bit grid."""
    u8 = np.round(np.clip(img, 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8)
    if jpeg_quality is not None:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, format="JPEG", quality=int(jpeg_quality))
        buf.seek(0)
        u8 = np.asarray(Image.open(buf).convert("RGB"))
    return (u8.transpose(2, 0, 1).astype(np.float32) / 255.0).copy()


def _postprocess(img: np.ndarray, z: np.ndarray, read: float, gain: float, jpeg_quality: int | None) -> np.ndarray:
    """Sensor noise ``sqrt(read^2 + gain * x) * z``, clip, 8-bit quantization, optional JPEG."""
    std = np.sqrt(read**2 + gain * img)
    return _store(np.clip(img + std * z, 0, 1), jpeg_quality)
