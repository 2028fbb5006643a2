"""Scene sampling of DefocusSynth: depths, framing, camera, and the layers back to front.

Internal to :mod:`defocus_xai.data.synth`. Every draw comes from the generator passed in, in a fixed order,
so a seed gives the same scene on every machine (docs/synth.md, "Scenes").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from .camera import SIGMA_PER_COC, ThinLens
from .cameras import N_RANGE_V2, _CameraDraws
from .composite import _TRUNCATE
from .layers import _blob_sd, _Canvas, _ellipse_sd, _Layer, _owner, _rect_sd, _Scene
from .subject import _subject_layers
from .psf import SIGMA_AA
from .textures import _shading, _texture
from .vector import _vector_texture

#: Sigma (px at 128x128) range of the most defocused layer of a real scene; scales with size.
SIGMA_MAX_RANGE = (1.5, 4.5)

_FOCAL_RANGE = (0.07, 0.2)  # focal length (m), log-uniform
_N_RANGE = (1.0, 22.0)  # f-number limits
_HEAD_FRAC_RANGE = (0.28, 0.45)  # subject head height as a fraction of the image height
_HEAD_HEIGHT_M = 0.23  # physical height of the subject's head (m), sets the pixel pitch


@dataclass
class _Layout:
    """Depths (m), framing (image units) and camera draws of one scene, before any layer is drawn."""

    size: int
    d_s: float  # subject
    d_bg: float  # background plane (its far end when slanted)
    slanted: bool
    d_near: float  # slanted plane: depth at the bottom row
    gx: float  # slanted plane: sideways tilt of the inverse depth
    obj_depths: list  # [("front" | "mid", depth)]
    head_frac: float
    cx: float
    cy: float
    f: float
    pitch: float
    focus_u: float
    focus_k: float
    fx: float
    target_smax: float

    def u_background(self, X, Y):
        """Inverse depth of the background plane (affine in image coordinates)."""
        if not self.slanted:
            return np.full_like(X, 1 / self.d_bg)
        return np.clip(1 / self.d_bg + (1 / self.d_near - 1 / self.d_bg) * Y + self.gx * (X - 0.5), 1 / 100.0,
                       None)


def _draw_layout(rng: np.random.Generator, size: int) -> _Layout:
    unit = size / 128.0
    # depths (m): subject, background plane, objects in front of / behind the subject
    d_s = float(np.exp(rng.uniform(np.log(1.0), np.log(3.0))))
    d_bg = float(np.exp(rng.uniform(np.log(max(4.0, 2 * d_s)), np.log(30.0))))
    slanted = rng.random() < 0.5
    d_near = d_bg * rng.uniform(0.3, 0.7)
    gx = rng.uniform(-0.3, 0.3) * (1 / d_near - 1 / d_bg)
    obj_depths = []
    for _ in range(int(rng.integers(2, 5))):
        if rng.random() < 0.3:
            obj_depths.append(("front", d_s * rng.uniform(0.4, 0.8)))
        else:
            obj_depths.append(("mid", float(np.exp(rng.uniform(np.log(d_s * 1.2), np.log(d_bg * 0.85))))))
    # framing: head height as a fraction of the image, subject position
    head_frac = rng.uniform(*_HEAD_FRAC_RANGE)
    cx, cy = rng.uniform(0.38, 0.62), rng.uniform(0.34, 0.48)
    # camera: focal length, and the pixel pitch that gives the subject's head that size
    f = float(np.exp(rng.uniform(np.log(_FOCAL_RANGE[0]), np.log(_FOCAL_RANGE[1]))))
    pitch = f / (d_s - f) * _HEAD_HEIGHT_M / (head_frac * size)
    focus_u, focus_k, fx = rng.random(3)
    target_smax = rng.uniform(*SIGMA_MAX_RANGE) * unit
    return _Layout(size=size, d_s=d_s, d_bg=d_bg, slanted=slanted, d_near=d_near, gx=gx, obj_depths=obj_depths,
                   head_frac=head_frac, cx=cx, cy=cy, f=f, pitch=pitch, focus_u=focus_u, focus_k=focus_k, fx=fx,
                   target_smax=target_smax)


def _padding(lay: _Layout, camera: ThinLens | None) -> int:
    """Canvas padding wide enough for the largest blur any family uses (light from outside the frame)."""
    size, unit = lay.size, lay.size / 128.0
    if camera is None:
        pad_sigma = lay.target_smax
    else:
        vis = (np.arange(size, dtype=np.float32) + 0.5) / size
        u_all = np.concatenate([[1 / lay.d_s], [1 / d for _, d in lay.obj_depths],
                                lay.u_background(*np.meshgrid(vis, vis)).ravel()])
        pad_sigma = float(np.max(camera.sigma_px(1 / u_all)))
    return min(int(math.ceil(_TRUNCATE * max(pad_sigma, 3.5 * unit, 1.5))) + 2, 2 * size)


def _background_layer(rng: np.random.Generator, cv: _Canvas, lay: _Layout) -> _Layer:
    full = (0, cv.n, 0, cv.n)
    X, Y = cv.grid(full)
    bg_depth = (1 / lay.u_background(X, Y)).astype(np.float32) if lay.slanted else float(lay.d_bg)
    bg_kind = str(rng.choice(["photo", "photo", "photo", "gray_photo", "noise"]))
    bg_col = cv.texture(rng, bg_kind, X, Y) * _shading(rng, cv.n, cv.n, 0.12)[None]
    return _Layer("background", 0, np.clip(bg_col, 0, 1).astype(np.float32), None, bg_depth, full)


def _object_layer(rng: np.random.Generator, cv: _Canvas, lay: _Layout, k: int, where: str, d: float):
    """Object ``k`` (rectangle, disc, ellipse or blob) at depth ``d``; ``None`` when it covers nothing."""
    shape = str(rng.choice(["rect", "disc", "blob", "ellipse"]))
    r = rng.uniform(0.1, 0.3) if where == "mid" else rng.uniform(0.15, 0.35)
    if where == "front":  # foreground occluders stay near the left/right borders
        ox = rng.uniform(-0.15, 0.2) if rng.random() < 0.5 else rng.uniform(0.8, 1.15)
        oy = rng.uniform(-0.1, 1.1)
    else:
        ox, oy = rng.uniform(-0.1, 1.1), rng.uniform(-0.1, 1.1)
    theta = rng.uniform(0, np.pi)
    aspect = rng.uniform(0.3, 1.2) if shape == "rect" else rng.uniform(0.4, 0.9)
    amps = rng.uniform(0, 0.5 / np.arange(2, 6)) if shape == "blob" else np.zeros(4)
    phases = rng.uniform(0, 2 * np.pi, 4)
    kind = str(rng.choice(["photo", "photo", "gray_photo", "noise", "stripes", "checker", "blobs"]))
    reach = r * max(1.0, aspect) * (1.45 if shape == "rect" else 1.0) * (1 + amps.sum()) + 0.01
    if where == "front":  # never cover the middle of the subject's face
        keep = 0.5 * 0.68 * lay.head_frac / 2 + reach
        if abs(ox - lay.cx) < keep:
            ox = lay.cx - keep if ox < lay.cx else lay.cx + keep
    box = cv.window(ox - reach, ox + reach, oy - reach, oy + reach)
    if box is None:
        return None
    Xw, Yw = cv.grid(box)
    if shape == "rect":
        sd = _rect_sd(Xw, Yw, ox, oy, r, r * aspect, theta)
    elif shape == "disc":
        sd = _ellipse_sd(Xw, Yw, ox, oy, r * 0.8, r * 0.8)
    elif shape == "ellipse":
        sd = _ellipse_sd(Xw, Yw, ox, oy, r, r * aspect, theta)
    else:
        sd = _blob_sd(Xw, Yw, ox, oy, r * 0.8, amps, phases)
    alpha = cv.cover(sd)
    if not alpha.any():
        return None
    col = cv.texture(rng, kind, Xw, Yw) * _shading(rng, *Xw.shape, 0.1)[None]
    return _Layer(f"object{k}", k + 2, np.clip(col, 0, 1).astype(np.float32), alpha, float(d), box)


def _autofocus(scene: _Scene, lay: _Layout, n_range=_N_RANGE) -> ThinLens:
    """Focus on something visible, then pick the aperture that gives the most defocused layer its target.

    The subject (65 %), else a visible object or a visible point of the background; the f-number makes the
    most defocused visible layer reach ``lay.target_smax``, clipped to ``n_range``.
    """
    layers, pad, size = scene.layers, scene.pad, scene.size
    bg_depth = layers[0].depth
    owner = _owner(scene)
    if lay.focus_u < 0.65:
        d_f = lay.d_s
    else:
        cands = [layer.depth for i, layer in enumerate(layers)
                 if layer.name.startswith("object") and (owner == i).mean() >= 0.02]
        ys, xs = np.nonzero(owner == 0)
        if len(ys):
            j = int(lay.fx * len(ys))
            cands.append(float(bg_depth[ys[j] + pad, xs[j] + pad]) if lay.slanted else float(lay.d_bg))
        d_f = float(cands[int(lay.focus_k * len(cands))]) if cands else lay.d_s
    u_vis = np.concatenate([np.atleast_1d(1 / np.asarray(layers[i].depth, np.float64)).ravel()
                            for i in np.unique(owner) if i > 0] +
                           [1 / bg_depth[pad:pad + size, pad:pad + size][owner == 0] if lay.slanted
                            else np.array([1 / lay.d_bg])])
    du_max = float(np.abs(u_vis - 1 / d_f).max())
    f = lay.f
    n_num = SIGMA_PER_COC * f * f * d_f / (d_f - f) * du_max
    N = float(np.clip(n_num / (lay.pitch * lay.target_smax), n_range[0], n_range[1]))
    return ThinLens(f=f, N=N, d_f=float(d_f), pixel_pitch=float(lay.pitch))


def _sample_scene(rng: np.random.Generator, size: int, camera: ThinLens | None,
                  v2: _CameraDraws | None = None) -> _Scene:
    """Draw one scene: layers back to front and, unless ``camera`` is given, an autofocused camera.

    ``v2``: the camera draws of version 2.0 (focal length, blur target), which then also draws vector
    textures with erf edges; the layout and every other draw are the same as version 1.0's.
    """
    lay = _draw_layout(rng, size)
    if v2 is None:
        cv = _Canvas(size, _padding(lay, camera), texture=_texture)
    else:
        pitch = v2.f / (lay.d_s - v2.f) * _HEAD_HEIGHT_M / (lay.head_frac * size)
        lay = replace(lay, f=v2.f, pitch=pitch, target_smax=v2.target_smax)
        cv = _Canvas(size, _padding(lay, camera), aa=SIGMA_AA,
                     texture=partial(_vector_texture, size=size, aa=SIGMA_AA))
    layers = [_background_layer(rng, cv, lay)]
    objs = []
    for k, (where, d) in enumerate(lay.obj_depths):
        layer = _object_layer(rng, cv, lay, k, where, d)
        if layer is not None:
            objs.append([layer])
    subject = _subject_layers(rng, cv, 1, float(lay.d_s), lay.cx, lay.cy, lay.head_frac / 2)
    for item in sorted(objs + [subject], key=lambda group: -group[0].depth):
        layers.extend(item)
    scene = _Scene(layers=layers, camera=camera, pad=cv.pad, size=size)
    if camera is None:
        scene.camera = _autofocus(scene, lay, _N_RANGE if v2 is None else N_RANGE_V2)
    return scene
