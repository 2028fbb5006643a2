"""Loading and saving detectors: bundled weights, the paper's checkpoints, our own saves.

The file formats, the reference layouts and what is checked at load time are described in
``docs/detectors.md`` ("Loading").
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .._device import resolve_device
from .base import DetectorBase
from .protocol import unwrap
from .sidecar import ARCHITECTURES, build_detector, check_arch, make_sidecar, read_sidecar, verify_sidecar
from .state_dict import atomic_write_bytes, load_into, load_state_dict_file, model_state, sha256_file, strip_prefix

__all__ = [
    "load_detector",
    "save_detector",
    "BUNDLED_DETECTORS",
    "BUNDLED_ALIASES",
    "BUNDLED_VERSIONS",
    "WEIGHTS_DIR",
    "REFERENCE_DEFOCUS_CONFIG",
    "REFERENCE_RGB_CONFIG",
]

#: Folder holding the bundled weights.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: The bundled weights by versioned name (``WEIGHTS_DIR/<name>.pt`` + ``.json``): ``@1`` trained on
#: DefocusSynth 1.0, ``@2`` on DefocusSynth 2.0 (docs/detectors.md, "Bundled weights").
BUNDLED_VERSIONS = ("bundled-defocus@1", "bundled-rgb@1", "bundled-defocus@2", "bundled-rgb@2")
#: The unversioned names load the newest version.
BUNDLED_ALIASES = {"bundled-defocus": "bundled-defocus@2", "bundled-rgb": "bundled-rgb@2"}
#: Every name accepted by :func:`load_detector` for the weights shipped with the package.
BUNDLED_DETECTORS = (*BUNDLED_ALIASES, *BUNDLED_VERSIONS)
#: Detector configuration used for the paper's DefocusNet checkpoints.
REFERENCE_DEFOCUS_CONFIG = {
    "backbone": "legacy_xception",
    "estimator": {"recipe": "reference", "size": 299, "std1": 2.0, "std2": 2.5},
    "map_norm": "minmax",
    "map_channels": 3,
    "map_size": 299,
}
#: Detector configuration used for the paper's RGB checkpoints.
REFERENCE_RGB_CONFIG = {"backbone": "legacy_xception", "input_size": 299, "input_norm": "[-1,1]"}

_FF_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
_IDENTITY_META = ("synth", "metrics", "training", "library_version", "created")


@dataclass
class _Plan:
    """What to build from a checkpoint: architecture, configuration, state dict and provenance."""

    arch: str
    config: dict
    state: dict
    layout: str
    training_data: str | None = None
    meta: dict = field(default_factory=dict)


def _detect_layout(sd: dict) -> str:
    """'ours' (backbone./head./rgb./defocus.), 'reference-defocus' (classifier.*) or 'reference-rgb'."""
    keys = list(sd)
    if all(k.startswith("classifier.") for k in keys):
        return "reference-defocus"
    if any(k.startswith(("backbone.", "rgb.", "defocus.", "head.")) for k in keys):
        return "ours"
    return "reference-rgb"


def _reference_training_data(path: Path) -> str:
    name = path.name
    for method in _FF_METHODS:
        if method.lower() in name.lower():
            return f"FaceForensics++ {method} (reference checkpoint; inferred from the file name)"
    if "cifake" in name.lower():
        return "CIFAKE (reference checkpoint; inferred from the file name)"
    return "unknown (reference checkpoint)"


def _resolve_path(name: str) -> tuple[Path, bool]:
    """A bundled name or a file path -> (existing ``.pt`` path, is bundled)."""
    if name in BUNDLED_DETECTORS:
        path = WEIGHTS_DIR / f"{BUNDLED_ALIASES.get(name, name)}.pt"
        if not path.is_file():
            raise FileNotFoundError(
                f"bundled weights {name!r} are missing ({path}); reinstall defocus-xai or regenerate them "
                "with `python examples/train_bundled.py`"
            )
        return path, True
    path = Path(name).expanduser()
    if not path.is_file():
        hint = f" (bundled names: {', '.join(BUNDLED_DETECTORS)})" if not path.suffix else ""
        raise FileNotFoundError(f"detector checkpoint not found: {path}{hint}")
    return path, False


def _plan(path: Path, sd: dict, sidecar: dict | None, arch: str | None) -> _Plan:
    """Choose the architecture and configuration from the sidecar or the key layout."""
    layout = _detect_layout(sd)
    if sidecar is not None and layout == "ours":
        det_arch = arch or sidecar["arch"]
        cfg = sidecar["config"] if det_arch == sidecar["arch"] else {}
        meta = {k: v for k, v in sidecar.items() if k != "config"}
        return _Plan(det_arch, cfg, sd, layout, sidecar.get("training_data"), meta)
    if layout == "ours":
        if arch is None:
            raise ValueError(
                f"{path}: a defocus_xai state dict without its sidecar {path.with_suffix('.json').name}; "
                "pass arch= ('defocus', 'rgb' or 'two-branch') and config= to rebuild the model"
            )
        return _Plan(arch, {}, sd, layout)
    if arch == "two-branch":
        raise ValueError(f"{path}: a reference-layout checkpoint cannot be loaded as a two-branch detector")
    if layout == "reference-defocus":
        sd = {"backbone." + k[len("classifier."):]: v for k, v in sd.items()}
        det_arch = arch or "defocus"
    else:
        sd = {"backbone." + k: v for k, v in sd.items()}
        det_arch = arch or "rgb"
    cfg = REFERENCE_DEFOCUS_CONFIG if det_arch == "defocus" else REFERENCE_RGB_CONFIG
    return _Plan(det_arch, copy.deepcopy(cfg), sd, layout, _reference_training_data(path))


def _read_checkpoint(path: Path, verify_checksum: bool) -> tuple[dict, dict | None, str]:
    """State dict (prefixes stripped), validated sidecar (or None) and the weights' sha256."""
    sidecar = read_sidecar(path)
    sd, _ = load_state_dict_file(path)
    checksum = sha256_file(path)
    if sidecar is not None and verify_checksum and sidecar.get("sha256"):
        verify_sidecar(sidecar, checksum, path)
    return strip_prefix(sd), sidecar, checksum


def load_detector(name_or_path, *, arch: str | None = None, device=None, config: dict | None = None,
                  verify_checksum: bool = True) -> nn.Module:
    """Load a detector: bundled weights, a file saved by :func:`save_detector`, or a reference checkpoint.

    Parameters
    ----------
    name_or_path : str, path or nn.Module
        ``"bundled-defocus"`` / ``"bundled-rgb"`` (weights shipped with the package, the newest version; no
        download), a versioned bundled name such as ``"bundled-defocus@1"`` (:data:`BUNDLED_VERSIONS`), a path
        to a ``.pt`` / ``.pth`` state dict, or a model: returned unwrapped from ``DataParallel``/DDP and
        otherwise unchanged (not moved, its mode kept; ``device`` applies to files only).
    arch : {"defocus", "rgb", "two-branch"}, optional
        Force the architecture instead of detecting it (from the sidecar ``.json`` or the key layout).
    device : str or torch.device, optional
        Where to put a loaded model; default ``"cuda"`` when available, else ``"cpu"``.
    config : dict, optional
        Constructor arguments overriding the sidecar's or the reference defaults (for example
        ``{"estimator": {"recipe": "reference", "std1": 1.5, "std2": 2.0}}`` or ``{"backbone": "xception41"}``).
    verify_checksum : bool
        Check the ``.pt`` file's sha256 and the sidecar's own digest (a mismatch raises ``ValueError``).

    Returns
    -------
    nn.Module
        The detector in eval mode, with ``identity`` set (name, arch, backbone, training_data, checksum,
        estimator configuration, map normalization).

    Raises
    ------
    FileNotFoundError
        Unknown bundled name whose files are missing, or a path that does not exist.
    ValueError
        Refused, corrupt or unreadable file; a sidecar with bad JSON or a configuration key outside the
        allow-list; non-finite weights; keys / shapes that do not match the architecture (the message
        lists the missing and unexpected keys and the shape mismatches).

    Examples
    --------
    >>> det = load_detector("bundled-defocus", device="cpu")
    >>> det.identity["training_data"]
    'DefocusSynth v2.0 synth:4000:0 at 128 px (validation synth:500:2)'
    >>> det.estimator.config()["size"], det.map_norm
    (128, 'fixed')
    >>> det = load_detector("defocus_gt_legacy_xception_Deepfakes.pth")  # doctest: +SKIP
    """
    if arch is not None:
        check_arch(arch)
    if isinstance(name_or_path, nn.Module):
        return unwrap(name_or_path)
    path, bundled = _resolve_path(str(name_or_path))
    sd, sidecar, checksum = _read_checkpoint(path, verify_checksum)
    plan = _plan(path, sd, sidecar, arch)
    cfg = {**plan.config, **copy.deepcopy(config or {})}
    model = build_detector(plan.arch, cfg)
    load_into(model, plan.state, str(path))
    model.identity.update({
        "name": str(name_or_path) if bundled else path.name, "path": str(path), "arch": plan.arch,
        "layout": plan.layout, "training_data": plan.training_data, "checksum": f"sha256:{checksum}",
    })
    model.identity.update({k: plan.meta[k] for k in _IDENTITY_META if k in plan.meta})
    return model.to(resolve_device(device)).eval()


def save_detector(detector: nn.Module, path, **meta) -> Path:
    """Save a detector as ``path`` (state dict) plus a ``.json`` sidecar; both written atomically.

    Parameters
    ----------
    detector : DefocusDetector, RGBDetector or TwoBranchDetector
        Possibly wrapped in ``DataParallel`` / DDP (unwrapped first); not changed.
    path : str or path
        Target ``.pt`` file; the sidecar is the same path with suffix ``.json``.
    **meta
        JSON-able metadata stored in the sidecar, e.g. ``training_data="DefocusSynth v1 ..."``,
        ``synth={...}``, ``training={...}``, ``metrics={...}``.

    Returns
    -------
    pathlib.Path
        The ``.pt`` path.

    Examples
    --------
    >>> save_detector(RGBDetector(), "rgb.pt", training_data="my folder")   # doctest: +SKIP
    >>> load_detector("rgb.pt").identity["training_data"]                   # doctest: +SKIP
    'my folder'
    """
    model = unwrap(detector)
    if not isinstance(model, DetectorBase) or model.arch not in ARCHITECTURES:
        raise TypeError(f"save_detector expects a defocus_xai detector, got {type(model).__name__}")
    path = Path(path)
    if path.suffix == ".json":
        raise ValueError(f"{path}: give the .pt path; the .json sidecar is written beside it")
    state = {k: v.detach().cpu().clone() for k, v in model_state(model).items()}
    atomic_write_bytes(path, lambda f: torch.save(state, f))
    sidecar = make_sidecar(model, sha256_file(path), meta)
    text = json.dumps(sidecar, indent=2) + "\n"
    atomic_write_bytes(path.with_suffix(".json"), lambda f: f.write(text.encode("utf-8")))
    return path
