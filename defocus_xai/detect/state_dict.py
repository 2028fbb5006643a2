"""Reading and writing state dicts safely: CRC-checked, ``weights_only`` unpickling, finite weights, atomic.

Files are only ever read with ``torch.load(..., weights_only=True)``: a checkpoint must be a plain
dictionary of tensors (possibly nested in a dict of plain values).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["load_state_dict_file", "strip_prefix"]

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_STATE_KEYS = ("state_dict", "model", "model_state_dict")


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


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


def check_zip_crc(path: Path) -> None:
    """Refuse a zip checkpoint (torch's format) whose members fail their CRC check (a flipped or cut byte)."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path} is a damaged zip archive ({exc}); the checkpoint is corrupt") from exc
    if bad is not None:
        raise ValueError(f"{path}: member {bad!r} fails its CRC check; the checkpoint is corrupt")


def check_finite(state_dict: dict, source: Any) -> None:
    """Refuse weights with NaN or infinite values, naming the file and the first such tensor."""
    for name, t in state_dict.items():
        if t.is_floating_point() or t.is_complex():
            n_bad = int((~torch.isfinite(t)).sum())
            if n_bad:
                raise ValueError(f"{source}: tensor {name!r} holds {n_bad} non-finite value(s) (NaN or inf); "
                                 "the weights are unusable")


def _refusal(path: Path, exc: Exception) -> ValueError:
    detail = ""
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", str(exc), flags=re.S)
    if m:
        detail = " (" + " ".join(m.group(1).split())[:200] + ")"
    kind = "a PyTorch zip archive" if zipfile.is_zipfile(path) else "not a PyTorch zip archive"
    return ValueError(
        f"refused to load {path}: it is {kind} that cannot be read with torch.load(weights_only=True)"
        f"{detail}. A checkpoint must be a plain state dict of tensors; pickled Python objects (a whole "
        "model saved with torch.save(model), custom classes) are refused because unpickling runs code "
        "from the file. If you trust the file, load it yourself and re-save model.state_dict()."
    )


def load_state_dict_file(path: str | os.PathLike) -> tuple[dict, dict]:
    """Read a checkpoint file safely; return ``(state_dict, extra)``.

    Accepts a plain state dict, or a dict holding one under ``"state_dict"``, ``"model"`` or
    ``"model_state_dict"`` (training checkpoints; the other plain entries are returned in ``extra``).
    A zip checkpoint must pass its CRC check, and every floating-point tensor must be finite.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file holds pickled Python objects (refused), is corrupt (CRC) or not a PyTorch file, holds no
        state dict, or holds NaN / infinite weights.

    Examples
    --------
    >>> from defocus_xai.detect.checkpoints import WEIGHTS_DIR
    >>> sd, extra = load_state_dict_file(WEIGHTS_DIR / "bundled-rgb@2.pt")
    >>> next(iter(sd)), extra
    ('backbone.features.0.weight', {})
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    check_zip_crc(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, exc) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"could not read {path} as a PyTorch checkpoint: {exc}") from exc
    extra: dict = {}
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for key in _STATE_KEYS:
            if _is_state_dict(obj.get(key)):
                extra = {k: v for k, v in obj.items() if k != key}
                obj = obj[key]
                break
    if not _is_state_dict(obj):
        what = type(obj).__name__
        if isinstance(obj, dict):
            bad = [k for k, v in obj.items() if not torch.is_tensor(v)][:5]
            what = f"dict whose entries {bad} are not tensors"
        raise ValueError(f"{path} does not hold a state dict (a dict of name -> tensor), it holds a {what}")
    check_finite(obj, path)
    return obj, extra


def _fmt(items: list, limit: int = 12) -> str:
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return f"{len(items)}: {shown}" + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _estimator_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of parameter-free defocus estimators (rebuilt from the config, not saved)."""
    from ..defocus.estimator import DefocusEstimator

    return tuple(name + "." for name, mod in model.named_modules() if name and isinstance(mod, DefocusEstimator))


def model_state(model: nn.Module) -> dict:
    """The model's state dict without its (parameter-free) estimators."""
    prefixes = _estimator_prefixes(model)
    return {k: v for k, v in model.state_dict().items() if not (prefixes and k.startswith(prefixes))}


def load_into(model: nn.Module, state_dict: dict, source: str) -> None:
    """Load ``state_dict`` into a detector; a mismatch lists missing / unexpected keys and shape mismatches."""
    expected = model_state(model)
    prefixes = _estimator_prefixes(model)
    got = {k: v for k, v in state_dict.items() if not (prefixes and k.startswith(prefixes))}
    missing = sorted(k for k in expected if k not in got)
    unexpected = sorted(k for k in got if k not in expected)
    shapes = sorted(f"{k}: checkpoint {tuple(got[k].shape)} vs model {tuple(expected[k].shape)}"
                    for k in expected if k in got and tuple(got[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or shapes:
        backbone = model.config().get("backbone", "")
        raise ValueError(
            f"checkpoint {source} does not match {type(model).__name__}({backbone}):\n"
            f"  missing keys {_fmt(missing)}\n  unexpected keys {_fmt(unexpected)}\n"
            f"  shape mismatches {_fmt(shapes)}"
        )
    model.load_state_dict(got, strict=False)


def atomic_write_bytes(path: Path, write) -> None:
    """Write a file atomically: ``write(f)`` into a temporary file beside ``path``, then ``os.replace``."""
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
