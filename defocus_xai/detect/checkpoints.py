"""Loading and saving detectors: bundled weights, the paper's checkpoints, our own saves.

Files are only ever read with ``torch.load(..., weights_only=True)``: a checkpoint must be a plain
dictionary of tensors (possibly nested in a dict of plain values). Pickled Python objects are refused,
because unpickling can run arbitrary code from the file.

A detector saved by :func:`save_detector` is two files: ``NAME.pt`` (the state dict) and ``NAME.json``
(the sidecar: architecture, constructor configuration - including the defocus estimator's parameters -,
sha256 of the ``.pt``, and any metadata given, such as training data and metrics). The bundled weights
(``"bundled-defocus"``, ``"bundled-rgb"``) are such pairs shipped in ``defocus_xai/detect/weights/``.

The published research checkpoints (``defocus_gt_legacy_xception_<Method>.pth`` and
``rgb_legacy_xception_<Method>.pth``) are ``DataParallel`` state dicts with no sidecar; their layout is
recognized from the keys:

* ``module.classifier.*`` -> :class:`~defocus_xai.detect.DefocusDetector` over ``legacy_xception`` with
  the reference map recipe (``recipe="reference"``, ``std1=2.0``, ``std2=2.5``, size 299), per-sample
  min-max normalization and the map repeated to 3 channels;
* ``module.*`` (an Xception's own keys) -> :class:`~defocus_xai.detect.RGBDetector` over
  ``legacy_xception`` with inputs mapped to ``[-1, 1]``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._version import __version__
from .models import DefocusDetector, RGBDetector, TwoBranchDetector, build_detector

__all__ = [
    "load_detector",
    "save_detector",
    "load_state_dict_file",
    "unwrap_model",
    "strip_prefix",
    "BUNDLED_DETECTORS",
    "WEIGHTS_DIR",
    "REFERENCE_DEFOCUS_CONFIG",
    "REFERENCE_RGB_CONFIG",
]

#: Folder holding the bundled weights.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: Names accepted by :func:`load_detector` for the weights shipped with the package.
BUNDLED_DETECTORS = ("bundled-defocus", "bundled-rgb")
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

SIDECAR_FORMAT = "defocus_xai.detector"
SIDECAR_VERSION = 1
_ARCHES = ("defocus", "rgb", "two-branch")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_FF_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")


# --------------------------------------------------------------------------------------------- utils
def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the model inside ``DataParallel`` / ``DistributedDataParallel`` / ``torch.compile`` wrappers.

    Examples
    --------
    >>> m = nn.Linear(2, 1)
    >>> unwrap_model(nn.DataParallel(m)) is m
    True
    """
    seen = 0
    while seen < 10:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(getattr(model, "_orig_mod"), nn.Module):
            model = model._orig_mod
        else:
            break
        seen += 1
    return model


def strip_prefix(state_dict: dict, prefixes=_WRAPPER_PREFIXES) -> dict:
    """Remove wrapper prefixes (``module.`` from ``DataParallel``/DDP, ``_orig_mod.``) shared by all keys.

    A prefix is removed only when every key has it, repeatedly (``module.module.`` works too).

    Examples
    --------
    >>> list(strip_prefix({"module.fc.weight": 1}))
    ['fc.weight']
    """
    sd = dict(state_dict)
    changed = True
    while changed and sd:
        changed = False
        for p in prefixes:
            if all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                changed = True
    return sd


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()
    )


def load_state_dict_file(path: str | os.PathLike) -> tuple[dict, dict]:
    """Read a checkpoint file safely; return ``(state_dict, extra)``.

    Accepts a plain state dict, or a dict holding one under ``"state_dict"``, ``"model"`` or
    ``"model_state_dict"`` (training checkpoints; the other plain entries are returned in ``extra``).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file holds pickled Python objects (refused), is not a PyTorch file, or holds no state dict.

    Examples
    --------
    >>> sd, extra = load_state_dict_file(WEIGHTS_DIR / "bundled-rgb.pt")
    >>> next(iter(sd)), extra
    ('backbone.features.0.weight', {})
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = ""
        m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", str(exc), flags=re.S)
        if m:
            detail = " (" + " ".join(m.group(1).split())[:200] + ")"
        kind = "a PyTorch zip archive" if zipfile.is_zipfile(path) else "not a PyTorch zip archive"
        raise ValueError(
            f"refused to load {path}: it is {kind} that cannot be read with torch.load(weights_only=True)"
            f"{detail}. A checkpoint must be a plain state dict of tensors; pickled Python objects (a whole "
            "model saved with torch.save(model), custom classes) are refused because unpickling runs code "
            "from the file. If you trust the file, load it yourself and re-save model.state_dict()."
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"could not read {path} as a PyTorch checkpoint: {exc}") from exc
    extra: dict = {}
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for key in ("state_dict", "model", "model_state_dict"):
            if _is_state_dict(obj.get(key)):
                extra = {k: v for k, v in obj.items() if k != key}
                obj = obj[key]
                break
    if not _is_state_dict(obj):
        what = type(obj).__name__
        if isinstance(obj, dict):
            bad = [k for k, v in obj.items() if not torch.is_tensor(v)][:5]
            what = f"dict whose entries {bad} are not tensors"
        raise ValueError(
            f"{path} does not hold a state dict (a dict of name -> tensor), it holds a {what}"
        )
    return obj, extra


def _mismatch_report(expected: dict, got: dict) -> tuple[list, list, list]:
    missing = sorted(k for k in expected if k not in got)
    unexpected = sorted(k for k in got if k not in expected)
    shapes = sorted(
        f"{k}: checkpoint {tuple(got[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in got and tuple(got[k].shape) != tuple(expected[k].shape)
    )
    return missing, unexpected, shapes


def _fmt(items: list, limit: int = 12) -> str:
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return f"{len(items)}: {shown}" + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _estimator_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of parameter-free defocus estimators (rebuilt from the config, not saved)."""
    out = []
    for name, mod in model.named_modules():
        if name and type(mod).__name__ == "DefocusEstimator":
            out.append(name + ".")
    return tuple(out)


def _model_state(model: nn.Module) -> dict:
    prefixes = _estimator_prefixes(model)
    return {k: v for k, v in model.state_dict().items() if not (prefixes and k.startswith(prefixes))}


def _load_into(model: nn.Module, state_dict: dict, source: str) -> None:
    expected = _model_state(model)
    prefixes = _estimator_prefixes(model)
    got = {k: v for k, v in state_dict.items() if not (prefixes and k.startswith(prefixes))}
    missing, unexpected, shapes = _mismatch_report(expected, got)
    if missing or unexpected or shapes:
        raise ValueError(
            f"checkpoint {source} does not match {type(model).__name__}"
            f"({getattr(model, 'backbone_name', '')}):\n"
            f"  missing keys {_fmt(missing)}\n  unexpected keys {_fmt(unexpected)}\n"
            f"  shape mismatches {_fmt(shapes)}"
        )
    model.load_state_dict(got, strict=False)


# ------------------------------------------------------------------------------------------- layout
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


def _read_sidecar(pt_path: Path) -> dict | None:
    side = pt_path.with_suffix(".json")
    if not side.is_file():
        return None
    with open(side, encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != SIDECAR_FORMAT:
        return None
    return meta


# ------------------------------------------------------------------------------------------ public
def load_detector(name_or_path, *, arch: str | None = None, device=None, config: dict | None = None,
                  verify_checksum: bool = True) -> nn.Module:
    """Load a detector: bundled weights, a file saved by :func:`save_detector`, or a reference checkpoint.

    Parameters
    ----------
    name_or_path : str, path or nn.Module
        ``"bundled-defocus"`` / ``"bundled-rgb"`` (weights shipped with the package; no download), a path
        to a ``.pt`` / ``.pth`` state dict, or a model (returned unwrapped from ``DataParallel``/DDP).
    arch : {"defocus", "rgb", "two-branch"}, optional
        Force the architecture instead of detecting it (from the sidecar ``.json`` or the key layout).
    device : str or torch.device, optional
        Where to put the model; default ``"cuda"`` when available, else ``"cpu"``.
    config : dict, optional
        Constructor arguments overriding the sidecar's or the reference defaults (for example
        ``{"estimator": {"recipe": "reference", "std1": 1.5, "std2": 2.0}}`` or ``{"backbone": "xception41"}``).
    verify_checksum : bool
        Check the ``.pt`` file's sha256 against its sidecar (a mismatch raises ``ValueError``).

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
        Refused or unreadable file, or keys / shapes that do not match the architecture (the message lists
        the missing and unexpected keys and the shape mismatches).

    Examples
    --------
    >>> det = load_detector("bundled-defocus", device="cpu")
    >>> det.identity["training_data"]
    'DefocusSynth v1.0 synth:4000:0 at 128 px (validation synth:500:2)'
    >>> det.estimator.config()["size"], det.map_norm
    (128, 'fixed')
    >>> det = load_detector("defocus_gt_legacy_xception_Deepfakes.pth")  # doctest: +SKIP
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if arch is not None and arch not in _ARCHES:
        raise ValueError(f"arch must be one of {_ARCHES} or None, got {arch!r}")
    if isinstance(name_or_path, nn.Module):
        return unwrap_model(name_or_path).to(device)

    name = str(name_or_path)
    bundled = name in BUNDLED_DETECTORS
    if bundled:
        path = WEIGHTS_DIR / f"{name}.pt"
        if not path.is_file():
            raise FileNotFoundError(
                f"bundled weights {name!r} are missing ({path}); reinstall defocus-xai or regenerate them "
                "with `python examples/train_bundled.py`"
            )
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            hint = f" (bundled names: {', '.join(BUNDLED_DETECTORS)})" if not path.suffix else ""
            raise FileNotFoundError(f"detector checkpoint not found: {path}{hint}")

    sd, extra = load_state_dict_file(path)
    sd = strip_prefix(sd)
    sidecar = _read_sidecar(path)
    if sidecar is None and isinstance(extra.get("detector"), str):
        try:
            sidecar = json.loads(extra["detector"])
        except json.JSONDecodeError:
            sidecar = None
    checksum = _sha256(path)
    if sidecar is not None and verify_checksum and sidecar.get("sha256") and sidecar["sha256"] != checksum:
        raise ValueError(
            f"{path}: sha256 {checksum} does not match the sidecar's {sidecar['sha256']} "
            f"({path.with_suffix('.json')}); the weights were changed or belong to another model"
        )

    layout = _detect_layout(sd)
    training_data = None
    meta: dict = {}
    if sidecar is not None and layout == "ours":
        det_arch = arch or sidecar["arch"]
        cfg = copy.deepcopy(sidecar.get("config", {})) if det_arch == sidecar["arch"] else {}
        training_data = sidecar.get("training_data")
        meta = {k: v for k, v in sidecar.items() if k not in ("config",)}
    elif layout == "reference-defocus":
        det_arch = arch or "defocus"
        cfg = copy.deepcopy(REFERENCE_DEFOCUS_CONFIG if det_arch == "defocus" else REFERENCE_RGB_CONFIG)
        sd = {"backbone." + k[len("classifier."):]: v for k, v in sd.items()}
        training_data = _reference_training_data(path)
    elif layout == "reference-rgb":
        det_arch = arch or "rgb"
        cfg = copy.deepcopy(REFERENCE_RGB_CONFIG if det_arch == "rgb" else REFERENCE_DEFOCUS_CONFIG)
        sd = {"backbone." + k: v for k, v in sd.items()}
        training_data = _reference_training_data(path)
    else:
        if arch is None:
            raise ValueError(
                f"{path}: a defocus_xai state dict without its sidecar {path.with_suffix('.json').name}; "
                "pass arch= ('defocus', 'rgb' or 'two-branch') and config= to rebuild the model"
            )
        det_arch, cfg = arch, {}
    if det_arch == "two-branch" and layout != "ours":
        raise ValueError(f"{path}: a reference-layout checkpoint cannot be loaded as a two-branch detector")
    if config:
        cfg.update(copy.deepcopy(config))

    model = build_detector(det_arch, cfg)
    _load_into(model, sd, str(path))
    model.identity.update(
        {
            "name": name if bundled else path.name,
            "path": str(path),
            "arch": det_arch,
            "layout": layout,
            "training_data": training_data,
            "checksum": f"sha256:{checksum}",
        }
    )
    for key in ("synth", "metrics", "training", "library_version", "created"):
        if key in meta:
            model.identity[key] = meta[key]
    return model.to(device).eval()


def _atomic_write_bytes(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file 0600; give it the permissions of an ordinary new file
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def save_detector(detector: nn.Module, path, **meta) -> Path:
    """Save a detector as ``path`` (state dict) plus a ``.json`` sidecar; both written atomically.

    Parameters
    ----------
    detector : DefocusDetector, RGBDetector or TwoBranchDetector
        Possibly wrapped in ``DataParallel`` / DDP (unwrapped first).
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
    model = unwrap_model(detector)
    if not isinstance(model, (DefocusDetector, RGBDetector, TwoBranchDetector)):
        raise TypeError(f"save_detector expects a defocus_xai detector, got {type(model).__name__}")
    path = Path(path)
    if path.suffix == ".json":
        raise ValueError(f"{path}: give the .pt path; the .json sidecar is written beside it")
    state = {k: v.detach().cpu().clone() for k, v in _model_state(model).items()}
    _atomic_write_bytes(path, lambda f: torch.save(state, f))
    sidecar = {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "library_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "arch": model.arch,
        "config": model.config(),
        "sha256": _sha256(path),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        **_jsonable(meta),
    }
    text = json.dumps(_jsonable(sidecar), indent=2, sort_keys=False) + "\n"
    _atomic_write_bytes(path.with_suffix(".json"), lambda f: f.write(text.encode("utf-8")))
    return path
