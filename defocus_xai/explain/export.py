"""Batch export of defocus maps and attributions to a sharded, resumable ``.npz`` store.

:func:`export_attributions` streams a data set: batches of samples -> maps, scores and attributions ->
a *chunk* of at most ``chunk_size`` samples -> one shard file, written atomically. Memory is bounded by
one chunk of outputs plus one batch of images, whatever the number of samples.

Layout of ``out/``::

    shard-00000-of-00001-chunk-000000.npz      samples of chunk 0 (data-set order)
    shard-00000-of-00001-chunk-000001.npz
    index.json                                  shard files, sample ranges, counts, meta, complete flag

Resume
    A shard file is complete or absent (temporary file + rename). Rerun with ``resume=True`` (the
    default): chunks whose file exists, holds the expected ``sample_index`` and was made with the same
    settings (a fingerprint in its ``meta``) are skipped, the others are recomputed, and the index is
    rebuilt from the files present. The values do not depend on the batch size or on where a run was
    interrupted (see :mod:`defocus_xai.explain.attribute`, "Randomness"), so the result equals that
    of an uninterrupted run.

Splitting a data set
    ``num_shards`` / ``shard_index``: shard ``k`` takes the contiguous index range
    ``[k * N // num_shards, (k + 1) * N // num_shards)``. Several machines can write into one shared
    directory or into their own (join them with :func:`merge_exports`). Under ``torchrun`` (``RANK`` and
    ``WORLD_SIZE`` set) the shard is taken from the rank, a process group is initialized (``gloo`` on the
    CPU, ``nccl`` on CUDA) and rank 0 writes the index after a barrier.

Examples
--------
>>> from defocus_xai.data.synth import DefocusSynth                       # doctest: +SKIP
>>> from defocus_xai.detect.checkpoints import load_detector              # doctest: +SKIP
>>> ds = DefocusSynth(1000, size=128)                                    # doctest: +SKIP
>>> export_attributions(ds, load_detector("bundled-defocus"), "out/")    # doctest: +SKIP
>>> load_attributions("out/")["defocus_shaps"].shape                     # doctest: +SKIP
(1000, 128, 128)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .._version import __version__
from .attribute import METHODS, attribute, describe_background, unwrap
from .store import INDEX_NAME, read_index, shard_info, write_index, write_shard

__all__ = ["export_attributions", "merge_exports", "shard_range", "attribution_key"]

_SHARD_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})-chunk-(\d{6})\.npz$")


def attribution_key(space: str, method: str) -> str:
    """Store key of an attribution: ``defocus_shaps`` / ``rgb_shaps`` for shap_gradient, else
    ``attr_<space>_<method>``.

    Examples
    --------
    >>> attribution_key("defocus", "shap_gradient"), attribution_key("rgb", "saliency")
    ('defocus_shaps', 'attr_rgb_saliency')
    """
    if method == "shap_gradient":
        return f"{space}_shaps"
    return f"attr_{space}_{method}"


def shard_range(n: int, num_shards: int, shard_index: int) -> range:
    """Data-set indices of shard ``shard_index`` of ``num_shards`` (contiguous ranges).

    Examples
    --------
    >>> list(shard_range(5, 2, 0)), list(shard_range(5, 2, 1))
    ([0, 1], [2, 3, 4])
    """
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"need 0 <= shard_index < num_shards, got shard_index={shard_index}, "
                         f"num_shards={num_shards}")
    return range(shard_index * n // num_shards, (shard_index + 1) * n // num_shards)


def _shard_name(shard_index: int, num_shards: int, chunk: int) -> str:
    return f"shard-{shard_index:05d}-of-{num_shards:05d}-chunk-{chunk:06d}.npz"


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str, sort_keys=True))


def _identity(model: nn.Module | None) -> dict | None:
    if model is None:
        return None
    ident = dict(getattr(model, "identity", None) or {})
    ident.setdefault("class", type(model).__name__)
    if not ident.get("checksum"):
        h = hashlib.sha256()
        for k, v in sorted(model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        ident["parameters_sha256"] = h.hexdigest()
    return _jsonable(ident)


def _sample_fields(sample: dict, index: int, default_path: str) -> dict:
    if not isinstance(sample, dict) or "image" not in sample:
        raise ValueError(f"sample {index}: expected a dict with an 'image' entry, got {type(sample).__name__}")
    img = sample["image"]
    img = torch.as_tensor(img) if not torch.is_tensor(img) else img
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"sample {index}: 'image' must be (3, H, W), got shape {tuple(img.shape)}")
    if img.dtype == torch.uint8:
        img = img.float() / 255.0
    lab = sample.get("label")
    if lab is None:
        raise ValueError(f"sample {index}: no 'label'")
    lab = int(lab)
    if lab < 0:
        raise ValueError(f"sample {index}: label {lab} (unreadable image?) cannot be exported")
    out = {"image": img.float(), "label": lab, "path": str(sample.get("path") or default_path)}
    for k in ("source_id", "family"):
        if sample.get(k) is not None:
            out[k] = str(sample[k])
    if sample.get("mask") is not None:
        out["mask"] = torch.as_tensor(sample["mask"])
    if sample.get("sigma") is not None:
        out["sigma"] = torch.as_tensor(sample["sigma"]).float()
    return out


def _list_collate(batch):
    return batch


def _to_grid(t: torch.Tensor, hw: tuple[int, int], mode: str) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 1, h, w)."""
    if tuple(t.shape[-2:]) == tuple(hw):
        return t
    if mode == "nearest":
        return torch.nn.functional.interpolate(t.float(), size=hw, mode="nearest")
    return torch.nn.functional.interpolate(t.float(), size=hw, mode="bilinear", align_corners=False)


class _Exporter:
    def __init__(self, detector, rgb_detector, methods, n_samples, seed, batch_size, eval_batch_size, engine,
                 device, method_kwargs):
        self.det = detector
        self.rgb = rgb_detector
        self.methods = methods
        self.n_samples = n_samples
        self.seed = seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.engine = engine
        self.device = device
        self.method_kwargs = method_kwargs or {}
        self.bg_maps = None
        self.bg_images = None
        self.bg_source = None
        self.attr_meta: dict[str, dict] = {}

    def set_background(self, images: torch.Tensor | None, source: str | None):
        self.bg_source = source
        if images is None:
            return
        images = images.to(self.device)
        if images.shape[1] == 1:  # maps given
            self.bg_maps = images
            return
        with torch.no_grad():
            self.bg_maps = self.det.map_from_images(images).float()
        self.bg_images = images

    def _attr(self, model, x, space, method, idx):
        bg = self.bg_maps if space == "defocus" else self.bg_images
        kw = dict(method=method, space=space, background=bg, n_samples=self.n_samples, seed=self.seed,
                  batch_size=self.batch_size, sample_indices=idx, eval_batch_size=self.eval_batch_size,
                  method_kwargs=self.method_kwargs.get(method), return_meta=True)
        if method == "shap_gradient" and self.engine:
            kw["engine"] = self.engine
        if space == "defocus":
            kw["inputs_are_maps"] = True
        a, meta = attribute(model, x, **kw)
        meta.pop("max_abs_convergence_delta", None)
        if self.bg_source and bg is not None:
            meta["background"] = meta["background"].replace(" maps,", f" maps from {self.bg_source},").replace(
                " images,", f" images from {self.bg_source},")
        meta["detector"] = (getattr(model, "identity", None) or {}).get("name") or type(model).__name__
        self.attr_meta[attribution_key(space, method)] = meta
        return a

    def batch(self, items: list[dict], idx: list[int]) -> dict[str, np.ndarray]:
        images = torch.stack([it["image"] for it in items]).to(self.device)
        with torch.no_grad():
            maps = self.det.map_from_images(images).float()
            scores = torch.sigmoid(self.det.forward_map(maps).reshape(len(items), -1)[:, -1])
        out = {
            "dmaps": maps[:, 0].cpu().numpy(),
            "scores": scores.cpu().numpy().astype(np.float32),
            "labels": np.array([it["label"] for it in items], np.int8),
            "paths": np.array([it["path"] for it in items]),
            "sample_index": np.array(idx, np.int64),
        }
        for k, store_key in (("source_id", "source_ids"), ("family", "families")):
            if all(k in it for it in items):
                out[store_key] = np.array([it[k] for it in items])
        hw = tuple(maps.shape[-2:])
        if all("mask" in it for it in items):
            m = torch.stack([it["mask"].reshape(1, *it["mask"].shape[-2:]) for it in items])
            out["gt_masks"] = (_to_grid(m, hw, "nearest")[:, 0] > 0).cpu().numpy().astype(np.uint8)
        if all("sigma" in it for it in items):
            s = torch.stack([it["sigma"].reshape(1, *it["sigma"].shape[-2:]) for it in items])
            scale = hw[-1] / s.shape[-1]  # sigma in pixels of the map grid
            out["sigma_true"] = (_to_grid(s, hw, "bilinear")[:, 0] * scale).cpu().numpy().astype(np.float32)
        for method in self.methods:
            a = self._attr(self.det, maps, "defocus", method, idx)
            out[attribution_key("defocus", method)] = a[:, 0].numpy()
            if self.rgb is not None:
                a = self._attr(self.rgb, images, "rgb", method, idx)
                out[attribution_key("rgb", method)] = a.numpy()
        return out


def _dist_setup(device: torch.device):
    """Initialize torch.distributed from torchrun's environment; return (rank, world, we_initialized)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) < 2:
        return None
    import torch.distributed as dist

    created = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        created = True
    return dist.get_rank(), dist.get_world_size(), created


def _barrier(device):
    import torch.distributed as dist

    if device.type == "cuda":
        dist.barrier(device_ids=[device.index or 0])
    else:
        dist.barrier()


def _fingerprint(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:20]


_ENTRY_CACHE: dict[tuple[str, int, int], dict] = {}


def _entry(p: Path) -> dict:
    """Index entry of a shard file (cached by path, size and mtime: files are immutable once renamed)."""
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _ENTRY_CACHE:
        m = _SHARD_RE.match(p.name)
        info = shard_info(p)
        with np.load(p, allow_pickle=False) as z:
            si = z["sample_index"] if "sample_index" in z.files else np.zeros(0, np.int64)
        _ENTRY_CACHE[key] = {"file": p.name, "n": info["n"], "shard_index": int(m.group(1)),
                             "num_shards": int(m.group(2)), "chunk": int(m.group(3)),
                             "first_index": int(si.min()) if si.size else None,
                             "last_index": int(si.max()) if si.size else None, "_meta": info["meta"]}
    return dict(_ENTRY_CACHE[key])


def _rebuild_index(out: Path, meta: dict | None, n_total: int | None, num_shards: int) -> Path:
    """Write ``out/index.json`` from the shard files present (the source of truth)."""
    entries = []
    for p in sorted(out.glob("shard-*.npz")):
        if not _SHARD_RE.match(p.name):
            continue
        e = _entry(p)
        m = e.pop("_meta")
        if meta is None:
            meta = {k: v for k, v in m.items() if k not in ("export", "created_at")}
            meta["export"] = {k: v for k, v in m.get("export", {}).items()
                              if k not in ("shard_index", "chunk", "first_index", "last_index")}
        entries.append(e)
    entries.sort(key=lambda e: (e["first_index"] if e["first_index"] is not None else -1, e["file"]))
    count = sum(e["n"] for e in entries)
    complete = n_total is not None and count == n_total
    return write_index(out, entries, meta=meta, complete=complete,
                       extra={"total_samples": n_total, "num_shards": num_shards})


def _check_existing(path: Path, expect_idx: Sequence[int], fingerprint: str) -> bool:
    """Whether an existing shard file is a valid result of this run for ``expect_idx``."""
    try:
        info = shard_info(path)
        fp = info["meta"].get("export", {}).get("fingerprint")
        if fp != fingerprint:
            raise ValueError(
                f"{path}: was written with other settings (fingerprint {fp} != {fingerprint}); use another "
                "output directory or resume=False")
        with np.load(path, allow_pickle=False) as z:
            ok = np.array_equal(z["sample_index"], np.asarray(expect_idx, np.int64))
        return ok
    except ValueError as e:
        if "other settings" in str(e):
            raise
        return False


def export_attributions(dataset_or_loader: Any, detector: nn.Module, out: str | os.PathLike, *,
                        methods: Sequence[str] = ("shap_gradient",), rgb_detector: nn.Module | None = None,
                        background: Any = None, n_samples: int | None = None, seed: int = 0,
                        batch_size: int = 16, chunk_size: int = 256, num_shards: int = 1, shard_index: int = 0,
                        resume: bool = True, progress: bool = True, device: Any = None, engine: str | None = None,
                        eval_batch_size: int = 256, num_workers: int | None = None,
                        method_kwargs: dict | None = None, distributed: bool | None = None) -> Path:
    """Export defocus maps, scores and attributions of a data set to a sharded ``.npz`` store.

    Parameters
    ----------
    dataset_or_loader : Dataset, DataLoader or sequence
        A map-style data set (``len`` and ``[i]``) whose samples are dicts with ``image`` (3, H, W)
        float in ``[0, 1]`` (uint8 accepted), ``label`` (0 real, 1 fake) and optionally ``path``,
        ``source_id``, ``family``, ``mask`` (1, H, W) and ``sigma`` (1, H, W). A ``DataLoader`` is
        replaced by its ``dataset`` (its ``num_workers`` is kept); batching is ours.
    detector : DefocusDetector
        Explained in ``space="defocus"`` (keys ``defocus_shaps`` / ``attr_defocus_<method>``).
    out : path-like
        Output directory (created).
    methods : sequence of str
        Attribution methods (see :data:`~defocus_xai.explain.attribute.METHODS`).
    rgb_detector : nn.Module, optional
        An RGB detector explained in ``space="rgb"`` on the same images (``rgb_shaps`` (N, 3, H, W),
        ``attr_rgb_<method>``).
    background : None, int or tensor
        None: an all-zero map / image. An int ``k``: the first ``k`` samples of the data set (the
        reference used 10 images). A tensor of images ``(K, 3, H, W)`` (maps for the defocus detector
        are computed from them) or of maps ``(K, 1, S, S)`` (then the RGB detector uses zeros).
    n_samples, seed, engine, eval_batch_size, method_kwargs
        Passed to :func:`~defocus_xai.explain.attribute.attribute` (``method_kwargs`` maps a method
        name to its extra parameters).
    batch_size : int
        Samples per step (memory of one batch of images and their attribution passes).
    chunk_size : int
        Samples per shard file (memory of one chunk of outputs).
    num_shards, shard_index : int
        Export only shard ``shard_index`` of ``num_shards`` contiguous index ranges. Ignored under
        ``torchrun``, where they come from ``WORLD_SIZE`` and ``RANK``.
    resume : bool
        Keep valid shard files already in ``out`` (see the module documentation); False removes this
        shard's files first.
    progress : bool
        Show a tqdm progress bar (rank 0 only).
    device : str or torch.device, optional
        Default: ``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``.
    num_workers : int, optional
        Data-loading worker processes (default: the loader's, else 0).
    distributed : bool, optional
        Force (True) or forbid (False) the torchrun mode; default: on when ``WORLD_SIZE > 1``.

    Returns
    -------
    pathlib.Path
        ``out``; open it with :func:`~defocus_xai.explain.store.load_attributions`.

    Examples
    --------
    >>> export_attributions(DefocusSynth(64, size=64), det, "out", methods=("shap_gradient", "saliency"),
    ...                     background=10, n_samples=50)          # doctest: +SKIP
    PosixPath('out')
    """
    from torch.utils.data import DataLoader, Subset

    methods = tuple(methods)
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {METHODS}")
    if not methods:
        raise ValueError("methods is empty")
    if int(chunk_size) < 1 or int(batch_size) < 1:
        raise ValueError(f"chunk_size and batch_size must be >= 1, got {chunk_size}, {batch_size}")
    out = Path(out)
    data = dataset_or_loader
    if isinstance(data, DataLoader):
        if num_workers is None:
            num_workers = data.num_workers
        data = data.dataset
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise ValueError("export_attributions needs a map-style data set (len() and [i]); got "
                         f"{type(data).__name__}")
    num_workers = int(num_workers or 0)
    n_total = len(data)

    det = unwrap(detector)
    rgb = unwrap(rgb_detector) if rgb_detector is not None else None
    if device is None:
        if torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        else:
            device = torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    det = det.to(device).eval()
    if rgb is not None:
        rgb = rgb.to(device).eval()

    dist_info = None
    if distributed is not False:
        dist_info = _dist_setup(device)
        if distributed and dist_info is None:
            raise ValueError("distributed=True but RANK / WORLD_SIZE are not set (run under torchrun)")
    if dist_info is not None:
        shard_index, num_shards = dist_info[0], dist_info[1]
    rank0 = dist_info is None or dist_info[0] == 0
    my_range = shard_range(n_total, int(num_shards), int(shard_index))

    exp = _Exporter(det, rgb, methods, n_samples, int(seed), int(batch_size), int(eval_batch_size), engine,
                    device, method_kwargs)
    # background
    bg_images, bg_source = None, None
    if isinstance(background, (int, np.integer)) and not isinstance(background, bool):
        k = int(background)
        if not 1 <= k <= n_total:
            raise ValueError(f"background={k}: need 1 <= k <= {n_total} samples")
        bg_images = torch.stack([_sample_fields(data[i], i, "")["image"] for i in range(k)])
        bg_source = f"data-set samples 0..{k - 1}"
    elif background is not None:
        bg_images = torch.as_tensor(background).float()
        if bg_images.ndim != 4 or bg_images.shape[1] not in (1, 3):
            raise ValueError(f"background must be (K, 3, H, W) images or (K, 1, S, S) maps, got "
                             f"{tuple(bg_images.shape)}")
    exp.set_background(bg_images, bg_source)

    est = getattr(det, "estimator", None)
    cfg = {
        "library_version": __version__,
        "methods": list(methods),
        "n_samples": n_samples,
        "seed": int(seed),
        # the resolved engine of shap_gradient: a change of the default must not mix values in one store
        "engine": (engine or "batched") if "shap_gradient" in methods else engine,
        "method_kwargs": method_kwargs or {},
        "background": describe_background(exp.bg_maps, "maps", (1,)) if exp.bg_maps is not None else "zeros",
        "detector": _identity(det),
        "rgb_detector": _identity(rgb),
        "chunk_size": int(chunk_size),
        "num_shards": int(num_shards),
        "total_samples": n_total,
    }
    fingerprint = _fingerprint(cfg)
    meta_base = {
        "detector": cfg["detector"],
        "rgb_detector": cfg["rgb_detector"],
        "estimator": _jsonable(est.config()) if est is not None and hasattr(est, "config") else None,
        "map_normalization": {"map_norm": getattr(det, "map_norm", None),
                              "sigma_max": getattr(det, "sigma_max", None),
                              "map_size": getattr(det, "map_size", None)},
        "export": {"fingerprint": fingerprint, "config": _jsonable({k: v for k, v in cfg.items()
                                                                     if k not in ("detector", "rgb_detector")})},
    }

    out.mkdir(parents=True, exist_ok=True)
    # chunks of this shard
    idx_all = list(my_range)
    chunks = [idx_all[s:s + chunk_size] for s in range(0, len(idx_all), chunk_size)]
    names = [_shard_name(int(shard_index), int(num_shards), c) for c in range(len(chunks))]
    prefix = f"shard-{int(shard_index):05d}-of-{int(num_shards):05d}-"
    for p in out.glob(f".{prefix}*.tmp"):  # left by a killed run
        p.unlink(missing_ok=True)
    if not resume:
        for p in out.glob(f"{prefix}chunk-*.npz"):
            p.unlink()
    todo = [c for c in range(len(chunks)) if not (out / names[c]).exists()
            or not _check_existing(out / names[c], chunks[c], fingerprint)]
    done_n = len(idx_all) - sum(len(chunks[c]) for c in todo)

    bar = None
    if progress and rank0:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(idx_all), initial=done_n, unit="img", desc=f"export shard {shard_index}")
    image_hw = None
    for c in todo:
        idx = chunks[c]
        loader = DataLoader(Subset(data, idx), batch_size=int(batch_size), shuffle=False,
                            num_workers=num_workers, collate_fn=_list_collate)
        parts: list[dict] = []
        pos = 0
        for raw in loader:
            bidx = idx[pos:pos + len(raw)]
            pos += len(raw)
            items = [_sample_fields(s, i, _default_path(data, i)) for s, i in zip(raw, bidx)]
            image_hw = image_hw or list(items[0]["image"].shape[-2:])
            parts.append(exp.batch(items, bidx))
            if bar is not None:
                bar.update(len(raw))
        arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        meta = dict(meta_base)
        meta["image_grid"] = {"height": image_hw[0], "width": image_hw[1]}
        meta["map_grid"] = {"height": int(arrays["dmaps"].shape[1]), "width": int(arrays["dmaps"].shape[2])}
        meta["attributions"] = _jsonable(exp.attr_meta)
        meta["export"] = dict(meta_base["export"], shard_index=int(shard_index), chunk=c,
                              first_index=int(idx[0]), last_index=int(idx[-1]))
        write_shard(out / names[c], arrays, meta)
        del arrays, parts
        if rank0 or dist_info is None:
            _rebuild_index(out, None, n_total, int(num_shards))
    if bar is not None:
        bar.close()
    if dist_info is not None:
        _barrier(device)
        if rank0:
            _rebuild_index(out, None, n_total, int(num_shards))
        _barrier(device)
        if dist_info[2]:
            import torch.distributed as dist

            dist.destroy_process_group()
    else:
        _rebuild_index(out, None, n_total, int(num_shards))
    return out


def _default_path(data: Any, i: int) -> str:
    seed = getattr(data, "seed", None)
    name = type(data).__name__
    if name == "DefocusSynth" and seed is not None:
        return f"synth:{seed}:{i}"
    return f"{name}:{i}"


def merge_exports(dirs_or_indexes: Iterable[str | os.PathLike], out: str | os.PathLike, *,
                  link: bool = True) -> Path:
    """Join the shard directories of several exports (machines) into one store.

    The shard files are hard-linked (or copied) into ``out`` and a new index is written. The inputs must
    come from the same settings (same export fingerprint) and must not overlap (no sample index twice).

    Parameters
    ----------
    dirs_or_indexes : iterable of path-like
        Export directories or their ``index.json`` files.
    out : path-like
        Destination directory (may be one of the inputs).
    link : bool
        Hard-link when possible (same file system), else copy.

    Returns
    -------
    pathlib.Path
        ``out``.

    Examples
    --------
    >>> merge_exports(["machine0/out", "machine1/out"], "merged")   # doctest: +SKIP
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seen: dict[int, str] = {}
    fingerprint, n_total, num_shards = None, None, None
    files: list[Path] = []
    for d in dirs_or_indexes:
        d = Path(d)
        doc = read_index(d)
        base = d if d.is_dir() else d.parent
        for e in doc["shards"]:
            p = base / e["file"]
            info = shard_info(p)
            fp = info["meta"].get("export", {}).get("fingerprint")
            if fingerprint is None:
                fingerprint = fp
                n_total = doc.get("total_samples")
                num_shards = doc.get("num_shards")
            elif fp != fingerprint:
                raise ValueError(f"{p}: made with other settings than the first input (fingerprint {fp} != "
                                 f"{fingerprint}); cannot merge")
            if p.resolve() in {f.resolve() for f in files}:
                continue
            with np.load(p, allow_pickle=False) as z:
                for i in z["sample_index"].tolist():
                    if i in seen:
                        raise ValueError(f"{p}: sample index {i} is also in {seen[i]}; the inputs overlap")
                    seen[i] = str(p)
            files.append(p)
    for p in files:
        dst = out / p.name
        if dst.exists():
            if dst.resolve() == p.resolve() or os.path.samefile(dst, p):
                continue
            raise ValueError(f"{dst}: exists and differs from {p}")
        tmp = out / f".{p.name}.{os.getpid()}.tmp"
        try:
            if link:
                os.link(p, tmp)
            else:
                raise OSError
        except OSError:
            shutil.copyfile(p, tmp)
        os.replace(tmp, dst)
    _rebuild_index(out, None, n_total, int(num_shards or 1))
    idx = read_index(out)
    if n_total is not None and idx["num_samples"] != n_total:
        import warnings

        warnings.warn(f"{out}: merged {idx['num_samples']} of {n_total} samples; the export is incomplete",
                      stacklevel=2)
    return out
