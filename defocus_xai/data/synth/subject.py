"""The face-like subject of a DefocusSynth scene: a body layer (neck, torso) and a head layer.

Internal to :mod:`defocus_xai.data.synth`. Both layers share one depth group, so blur treats them alike
and ``"splice"`` can re-render the head alone.
"""

from __future__ import annotations

import math

import numpy as np

from .layers import _Canvas, _ellipse_sd, _Layer, _rect_sd
from .textures import _fractal, _random_color, _two_tone

_SKIN = np.array(
    [[0.96, 0.80, 0.69], [0.92, 0.72, 0.58], [0.80, 0.60, 0.46], [0.62, 0.43, 0.30], [0.45, 0.30, 0.21]],
    np.float32,
)


def _subject_layers(rng, cv: _Canvas, group, depth, cx, cy, ry) -> list:
    """Two layers at one depth: body (neck, torso) and head (hair, face, features)."""
    look = {"rx": ry * rng.uniform(0.68, 0.8)}
    look["skin"] = np.clip(_SKIN[int(rng.integers(len(_SKIN)))] * rng.uniform(0.9, 1.1, 3), 0, 1).astype(
        np.float32)
    look["torso_rx"] = look["rx"] * rng.uniform(2.0, 2.6)
    look["cloth_kind"] = str(rng.choice(["photo", "stripes", "checker", "noise", "gray_photo"]))
    look["hair_c"] = _random_color(rng, sat=(0.2, 0.6), val=(0.05, 0.45))
    look["hair_freq"], look["hair_len"], look["fringe_len"] = (rng.uniform(25, 45), rng.uniform(0.2, 0.9),
                                                               rng.uniform(0.45, 0.7))
    look["theta"] = rng.uniform(-0.15, 0.15)
    look["iris"] = [_random_color(rng, sat=(0.3, 0.7), val=(0.15, 0.45)) for _ in range(2)]
    layers = []
    body = _body_layer(rng, cv, group, depth, cx, cy, ry, look)
    if body is not None:
        layers.append(body)
    layers.append(_head_layer(rng, cv, group, depth, cx, cy, ry, look))
    return layers


def _body_layer(rng, cv: _Canvas, group, depth, cx, cy, ry, look: dict) -> _Layer | None:
    """Torso ellipse plus neck rectangle; ``None`` when the body lies outside the canvas."""
    rx, torso_rx = look["rx"], look["torso_rx"]
    box = cv.window(cx - torso_rx, cx + torso_rx, cy + 0.6 * ry, cy + 3.65 * ry)
    if box is None:
        return None
    X, Y = cv.grid(box)
    torso_a = cv.cover(_ellipse_sd(X, Y, cx, cy + 2.35 * ry, torso_rx, 1.25 * ry))
    neck_a = cv.cover(_rect_sd(X, Y, cx, cy + 1.05 * ry, 0.42 * rx, 0.4 * ry))
    cloth = cv.texture(rng, look["cloth_kind"], X, Y)
    body_col = cloth * (1 - neck_a)[None] + (look["skin"][:, None, None] * 0.85) * neck_a[None]
    return _Layer("subject_body", group, body_col.astype(np.float32), np.maximum(torso_a, neck_a), depth, box)


def _head_layer(rng, cv: _Canvas, group, depth, cx, cy, ry, look: dict) -> _Layer:
    """Hair behind the face, face with shading, eyes, brows, nose, mouth, fringe."""
    rx, skin, hair_c, theta, size = look["rx"], look["skin"], look["hair_c"], look["theta"], cv.size
    box = cv.window(cx - 1.15 * rx, cx + 1.15 * rx, cy - 1.2 * ry, cy + 1.05 * ry)
    X, Y = cv.grid(box)
    c, s = math.cos(theta + 1.3), math.sin(theta + 1.3)
    hair_t = cv.wave(2 * np.pi * look["hair_freq"] * (X * c + Y * s), look["hair_freq"], 3)
    hair_tex = _two_tone(hair_t, hair_c * 0.6, np.clip(hair_c * 1.5, 0, 1))
    hair_a = cv.cover(_ellipse_sd(X, Y, cx, cy - 0.12 * ry, 1.12 * rx, 1.02 * ry))
    hair_a *= cv.ramp(cy + look["hair_len"] * ry - Y)
    face_a = cv.cover(_ellipse_sd(X, Y, cx, cy, rx, ry, theta))
    r2 = ((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2
    shade = 1 - 0.22 * np.clip(r2, 0, 1) + 0.08 * (cx - X) / rx
    h, w = X.shape
    shade = shade * (1 + 0.025 * _fractal(rng, h, w, cells=30 * w / size, octaves=1))
    face = skin[:, None, None] * shade[None]
    feats = []
    for k, side in enumerate((-1, 1)):
        ex, ey = cx + side * 0.36 * rx, cy - 0.12 * ry
        feats.append((_ellipse_sd(X, Y, ex, ey, 0.2 * rx, 0.085 * ry), np.array([0.93, 0.92, 0.9], np.float32)))
        feats.append((_ellipse_sd(X, Y, ex, ey, 0.075 * ry, 0.075 * ry), look["iris"][k]))
        feats.append((_ellipse_sd(X, Y, ex, ey, 0.032 * ry, 0.032 * ry), np.zeros(3, np.float32)))
        feats.append((_rect_sd(X, Y, ex, ey - 0.19 * ry, 0.22 * rx, 0.025 * ry, -0.1 * side), hair_c * 0.8))
    feats.append((_ellipse_sd(X, Y, cx, cy + 0.2 * ry, 0.09 * rx, 0.05 * ry), skin * 0.7))
    lip = np.clip(skin * np.array([1.0, 0.6, 0.6], np.float32), 0, 1) * 0.8
    feats.append((_ellipse_sd(X, Y, cx, cy + 0.47 * ry, 0.3 * rx, 0.065 * ry), lip))
    for sd, col in feats:
        a = cv.cover(sd) * face_a
        face = face * (1 - a)[None] + col[:, None, None] * a[None]
    fringe = face_a * cv.ramp(cy - look["fringe_len"] * ry - Y)
    face = face * (1 - fringe)[None] + hair_tex * fringe[None]
    head_col = hair_tex * (1 - face_a)[None] + face * face_a[None]
    return _Layer("subject_head", group, np.clip(head_col, 0, 1).astype(np.float32),
                  np.maximum(hair_a, face_a), depth, box)
