"""The ``.json`` sidecar of a saved detector: written, read, checked, and turned back into a model.

A sidecar is read as data only: its architecture must be known, its ``config`` may hold only the
constructor keys allowed for that architecture (nothing reaches ``timm``'s loading arguments), and its
``sidecar_sha256`` covers every other field (``sha256``, the weights' digest, included).
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

from torch import nn

from .._version import __version__
from .defocus_detector import DefocusDetector
from .rgb_detector import RGBDetector
from .two_branch import TwoBranchDetector

__all__ = ["SIDECAR_FORMAT", "SIDECAR_VERSION", "ARCHITECTURES", "CONFIG_KEYS", "build_detector"]

SIDECAR_FORMAT = "defocus_xai.detector"
#: Version 2: ``sidecar_sha256`` covers the whole sidecar.
SIDECAR_VERSION = 2
#: Architecture name -> detector class.
ARCHITECTURES = {"defocus": DefocusDetector, "rgb": RGBDetector, "two-branch": TwoBranchDetector}
#: Backbone keyword arguments a saved configuration may carry (SmallCNN widths, dropout rates).
BACKBONE_KEYS = frozenset({"widths", "drop_rate", "drop_path_rate"})
#: The constructor keys a configuration read from a file may hold, per architecture.
CONFIG_KEYS = {
    "defocus": frozenset({"backbone", "estimator", "map_norm", "sigma_max", "map_channels", "map_size"})
    | BACKBONE_KEYS,
    "rgb": frozenset({"backbone", "input_size", "input_norm"}) | BACKBONE_KEYS,
    "two-branch": frozenset({"rgb_backbone", "defocus_backbone", "estimator", "map_norm", "sigma_max",
                             "map_channels", "map_size", "input_size", "input_norm", "fusion"}),
}
_NAME_KEYS = ("backbone", "rgb_backbone", "defocus_backbone")


def check_arch(arch: Any, source: Any = "arch") -> str:
    """``arch`` if it names a detector architecture; a ``ValueError`` naming ``source`` otherwise."""
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise ValueError(f"{source}: arch must be one of {tuple(ARCHITECTURES)}, got {arch!r}")
    return arch


def validate_config(arch: str, config: Any, source: Any) -> dict:
    """Check a detector configuration read from ``source`` against the allow-list of ``arch``.

    Raises
    ------
    ValueError
        Naming ``source`` and the first key that is not a constructor key of ``arch`` (``pretrained``,
        ``checkpoint_path`` and every other ``timm`` loading argument are never allowed), or a value of
        the wrong kind (backbone names are strings, the estimator a dict).

    Examples
    --------
    >>> validate_config("rgb", {"backbone": "resnet18", "checkpoint_path": "/tmp/x"}, "m.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: m.json: config key 'checkpoint_path' is not allowed for arch 'rgb' (allowed: ...)
    """
    if not isinstance(config, dict):
        raise ValueError(f"{source}: config must be a JSON object, got {type(config).__name__}")
    allowed = CONFIG_KEYS[check_arch(arch, source)]
    for key in config:
        if key not in allowed:
            raise ValueError(f"{source}: config key {key!r} is not allowed for arch {arch!r} "
                             f"(allowed: {', '.join(sorted(allowed))})")
    for key in _NAME_KEYS:
        if key in config and not isinstance(config[key], str):
            raise ValueError(f"{source}: config {key!r} must be a backbone name (a string), got {config[key]!r}")
    est = config.get("estimator")
    if est is not None and not (isinstance(est, dict) and all(isinstance(k, str) for k in est)):
        raise ValueError(f"{source}: config 'estimator' must be a JSON object of parameters, got {est!r}")
    return copy.deepcopy(config)


def sidecar_digest(sidecar: dict) -> str:
    """sha256 of the canonical JSON of every sidecar field except ``sidecar_sha256`` itself."""
    body = {k: v for k, v in sidecar.items() if k != "sidecar_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_sidecar(pt_path: Path) -> dict | None:
    """The validated sidecar beside ``pt_path`` (``NAME.json``), or None when there is none.

    A ``.json`` of another format is not a sidecar (None). Bad JSON, an unknown architecture or a
    configuration key outside the allow-list is a ``ValueError`` naming the file.
    """
    side = pt_path.with_suffix(".json")
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{side}: the sidecar is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        return None
    meta["arch"] = check_arch(meta.get("arch"), side)
    meta["config"] = validate_config(meta["arch"], meta.get("config", {}), side)
    return meta


def verify_sidecar(sidecar: dict, weights_sha256: str, pt_path: Path) -> None:
    """Check the weights' digest and the sidecar's own digest; a ``ValueError`` names what changed."""
    side = pt_path.with_suffix(".json")
    if sidecar.get("sha256") != weights_sha256:
        raise ValueError(f"{pt_path}: sha256 {weights_sha256} does not match the sidecar's {sidecar.get('sha256')} "
                         f"({side}); the weights were changed or belong to another model")
    if sidecar.get("format_version") != SIDECAR_VERSION or "sidecar_sha256" not in sidecar:
        raise ValueError(f"{side}: sidecar format_version {sidecar.get('format_version')!r} has no digest of its "
                         f"own (version {SIDECAR_VERSION} does); check the file, load it with "
                         "verify_checksum=False and save it again with save_detector")
    if sidecar["sidecar_sha256"] != sidecar_digest(sidecar):
        raise ValueError(f"{side}: the sidecar does not match its sidecar_sha256; it was edited after saving")


def make_sidecar(model: nn.Module, weights_sha256: str, meta: dict) -> dict:
    """The sidecar of a detector whose weights file has digest ``weights_sha256``."""
    sidecar = {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "library_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "arch": model.arch,
        "config": model.config(),
        "sha256": weights_sha256,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        **meta,
    }
    sidecar = _jsonable(sidecar)
    sidecar["sidecar_sha256"] = sidecar_digest(sidecar)
    return sidecar


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def build_detector(arch: str, config: dict[str, Any]) -> nn.Module:
    """Rebuild a detector from its architecture name and ``config()`` dict.

    Examples
    --------
    >>> build_detector("rgb", {"backbone": "small-cnn", "input_size": 32}).input_size
    32
    """
    return ARCHITECTURES[check_arch(arch)](**copy.deepcopy(dict(config)))
