"""``DefocusSynth``: the benchmark as a map-style torch ``Dataset`` of rendered samples.

Sample ``i`` depends only on ``(seed, i)`` and the constructor's settings, never on ``n`` or on the order
of access (docs/synth.md, "Pairing and determinism").
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from .cameras import _is_deep_seed
from .fakes import FAMILIES_V2, NEEDS_DOF
from .families import FAMILIES, REAL
from .render import SYNTH_VERSION, SYNTH_VERSIONS, render_scene
from .sensor import _as_quality

__all__ = ["DefocusSynth"]


def _scene_seed(seed: int, k: int, attempt: int = 0) -> int:
    entropy = [int(seed), int(k)] if attempt == 0 else [int(seed), int(k), 3, int(attempt)]
    state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]
    return int(state) & (2**63 - 1)


def _dof_scene_seed(seed: int, k: int) -> int:
    """The first scene seed of ``(seed, k)`` that version 2.0 shoots with depth of field (not deep-focus)."""
    attempt = 0
    while _is_deep_seed(_scene_seed(seed, k, attempt)):
        attempt += 1
    return _scene_seed(seed, k, attempt)


def _jpeg_range(jpeg) -> tuple[int, int] | None:
    """``None``, one quality or a ``(low, high)`` range -> ``None`` or a ``(low, high)`` pair."""
    if jpeg is None:
        return None
    if isinstance(jpeg, (int, np.integer)):
        return (_as_quality(jpeg), _as_quality(jpeg))
    lo, hi = (_as_quality(v) for v in jpeg)
    if lo > hi:
        raise ValueError(f"jpeg range must be (low, high), got {jpeg!r}")
    return (lo, hi)


class DefocusSynth(Dataset):
    """The DefocusSynth benchmark as a map-style ``torch.utils.data.Dataset``.

    Parameters
    ----------
    n : int
        Number of samples.
    size : int
        Image height and width (default 128).
    families : sequence of str, optional
        Fake families to draw from; default every family of the version (:data:`FAMILIES` for
        1.0, and ``"face_swap"`` besides for 2.0).
    fake_fraction : float
        Fraction of fakes. With 0.5 (default) samples come in pairs: sample ``2k`` is the
        real image of scene ``k`` and sample ``2k + 1`` a fake of the same scene, of family
        ``families[k % len(families)]``. Any other value in [0, 1] gives unpaired samples:
        sample ``i`` is its own scene, fake with probability ``fake_fraction`` (its real
        partner is ``render_scene(seed=sample["seed"], family="real", ...)``).
    seed : int
        Seed of the whole data set; sample ``i`` depends only on ``(seed, i)``.
    jpeg : None, int or (int, int)
        JPEG quality: ``None`` for no compression, an int for a fixed quality, or a range from
        which each scene draws one (real and fake of one scene share it). Default (75, 95).
    noise : bool
        Add sensor noise (default True).
    version : str, optional
        Generator version (``"1.0"`` or ``"2.0"``); ``None`` means :data:`SYNTH_VERSION`. In
        version 2.0 a scene of a family that needs depth of field (``no_dof``,
        ``depth_inconsistent``) is one shot with depth of field, so no fake equals its real.

    Examples
    --------
    >>> ds = DefocusSynth(4, size=64, seed=0)
    >>> a, b = ds[0], ds[1]
    >>> (a["label"], b["label"], a["source_id"] == b["source_id"])
    (0, 1, True)
    >>> ds.families
    ('no_dof', 'splice', 'depth_inconsistent', 'generator_smoothing')
    >>> DefocusSynth(2, size=64, version="2.0")[1]["family"]
    'no_dof'
    """

    def __init__(self, n: int, *, size: int = 128, families: Sequence[str] | None = None,
                 fake_fraction: float = 0.5, seed: int = 0, jpeg=(75, 95), noise: bool = True,
                 version: str | None = None):
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        version = SYNTH_VERSION if version is None else version
        if version not in SYNTH_VERSIONS:
            raise ValueError(f"version must be one of {SYNTH_VERSIONS} or None, got {version!r}")
        known = FAMILIES_V2 if version == "2.0" else FAMILIES
        families = known if families is None else (families,) if isinstance(families, str) else tuple(families)
        bad = [f for f in families if f not in known]
        if bad or not families:
            raise ValueError(f"families must be a non-empty subset of {known} (version {version}), "
                             f"got {families!r}")
        if not 0.0 <= float(fake_fraction) <= 1.0:
            raise ValueError(f"fake_fraction must be in [0, 1], got {fake_fraction!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self._jpeg = _jpeg_range(jpeg)
        if not isinstance(size, (int, np.integer)) or size < 32:
            raise ValueError(f"size must be an integer >= 32, got {size!r}")
        self.n = int(n)
        self.size = int(size)
        self.families = families
        self.fake_fraction = float(fake_fraction)
        self.seed = int(seed)
        self.noise = bool(noise)
        self.version = version
        self._plan_cache = None

    @property
    def paired(self) -> bool:
        """Whether samples come in real/fake pairs of one scene (``fake_fraction == 0.5``)."""
        return self.fake_fraction == 0.5

    def __len__(self) -> int:
        return self.n

    def plan(self, i: int) -> dict:
        """What sample ``i`` is without rendering it: label, family, seed, source id, JPEG quality, version.

        Examples
        --------
        >>> DefocusSynth(4, size=64).plan(1)["family"]
        'no_dof'
        """
        i = int(i)
        if self.paired:
            k, fake = i // 2, i % 2 == 1
            pair_family = self.families[k % len(self.families)]
            family = pair_family if fake else REAL
        else:
            k = i
            r = np.random.default_rng(np.random.SeedSequence([self.seed, i, 2]))
            fake = r.random() < self.fake_fraction
            fam = self.families[int(r.integers(len(self.families)))]
            family = pair_family = fam if fake else REAL
        if self.version == "2.0" and pair_family in NEEDS_DOF:
            scene_seed = _dof_scene_seed(self.seed, k)
        else:
            scene_seed = _scene_seed(self.seed, k)
        q = 0
        if self._jpeg is not None:
            rq = np.random.default_rng(np.random.SeedSequence([self.seed, k, 1]))
            q = int(rq.integers(self._jpeg[0], self._jpeg[1] + 1))
        return {"label": int(fake), "family": family, "seed": scene_seed,
                "source_id": f"synth-{scene_seed:016x}", "jpeg_quality": q, "version": self.version}

    def _plans(self):
        if self._plan_cache is None:
            self._plan_cache = [self.plan(i) for i in range(self.n)]
        return self._plan_cache

    @property
    def source_ids(self) -> list:
        """Source id of every sample (a real and its fake share one)."""
        return [p["source_id"] for p in self._plans()]

    @property
    def labels(self) -> list:
        """Label of every sample (0 real, 1 fake)."""
        return [p["label"] for p in self._plans()]

    @property
    def sample_families(self) -> list:
        """Family of every sample (``"real"`` for real ones)."""
        return [p["family"] for p in self._plans()]

    def __getitem__(self, i):
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {type(i).__name__}")
        i = int(i)
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for DefocusSynth of length {self.n}")
        p = self.plan(i)
        s = render_scene(size=self.size, family=p["family"], seed=p["seed"],
                         jpeg_quality=p["jpeg_quality"] or None, noise=self.noise, version=self.version)
        s["index"] = i
        return s

    def __repr__(self) -> str:
        return (f"DefocusSynth(n={self.n}, size={self.size}, families={self.families}, "
                f"fake_fraction={self.fake_fraction}, seed={self.seed}, jpeg={self._jpeg}, version={self.version!r})")
