"""Streaming export of defocus maps, scores and attributions of a data set to the ``.npz`` store.

Batches of samples -> maps, scores and attributions -> a chunk of at most ``chunk_size`` samples -> one
shard file, written atomically; memory is bounded by one chunk of outputs plus one batch of images.
Resume, sharding, ``torchrun`` and the single-file ``.npz`` output are described in ``docs/npz_format.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..detect.protocol import borrowed, uses_maps
from ..store import attribution_key, rebuild_index, shard_name, shard_range, write_shard
from ..store.atomic import output_lock
from .distributed import barrier, dist_setup, dist_teardown, rank_device
from .export_data import check_finite, image_batch, load_background, sample_arrays, sample_fields
from .export_output import check_existing, finish, prepare_output, single_file_done
from .background import DEFAULT_BACKGROUND_SIZE, describe_background, rows_info
from .settings import METHODS, AttributionSettings

__all__ = ["export_attributions"]


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str, sort_keys=True))


def _identity(model: nn.Module | None) -> dict | None:
    """The model's ``identity`` (class name, and a hash of the weights when it has no checksum)."""
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


def _base_settings(settings: AttributionSettings | None, methods: Sequence[str], loose: dict) -> AttributionSettings:
    """The attribution options: ``settings``, or the keyword options (not both)."""
    if settings is None:
        method = "shap_gradient" if "shap_gradient" in methods else methods[0]
        return AttributionSettings(method=method, **loose)
    defaults = {f.name: f.default for f in dataclasses.fields(AttributionSettings)}
    given = [k for k, v in loose.items()
             if not (v is defaults[k] or (type(v) in (int, float, str) and type(v) is type(defaults[k])
                                          and v == defaults[k]))]
    if given:
        raise ValueError(f"export_attributions: pass the attribution options either in settings= or as "
                         f"keyword arguments, not both (also given: {given})")
    return settings


class _Exporter:
    """Maps, scores and attributions of one batch of samples, with the per-key settings fixed up front."""

    def __init__(self, det: nn.Module, rgb: nn.Module | None, base: AttributionSettings, methods: Sequence[str],
                 method_kwargs: dict, bg_rows: torch.Tensor | None, bg_info: dict, device):
        self.det, self.rgb, self.device, self.batch_size = det, rgb, device, base.batch_size
        refs = {"defocus": base.background, "rgb": base.background}  # "zeros" / "blur": made per input
        if bg_rows is not None:
            bg_rows = bg_rows.to(device)
            if bg_rows.shape[1] == 1:  # maps given: the RGB detector uses zeros
                refs = {"defocus": bg_rows, "rgb": "zeros"}
            else:
                with torch.no_grad():
                    refs = {"defocus": det.map_from_images(bg_rows).float(), "rgb": bg_rows}
        self.settings: dict[str, AttributionSettings] = {}
        self.meta: dict[str, dict] = {}
        spaces = [("defocus", det)] + ([("rgb", rgb)] if rgb is not None else [])
        for method in methods:
            kw = method_kwargs.get(method, base.method_kwargs if method == base.method else {})
            for space, model in spaces:
                bg = refs[space]
                s = dataclasses.replace(base, method=method, space=space, background=bg, method_kwargs=kw,
                                        engine=base.engine if method == base.method else None,
                                        wrapper=base.wrapper if space == "defocus" else None)
                info = rows_info(bg, bg_info) if torch.is_tensor(bg) else s.background_info()
                if space == "rgb" and bg_rows is not None and bg_rows.shape[1] == 1:
                    info["note"] = "the reference was given as maps; the RGB detector uses an all-zero image"
                key = attribution_key(space, method)
                self.settings[key] = s
                self.meta[key] = dict(s.to_meta(), background=describe_background(info), background_info=info,
                                      detector=_name(model))

    def batch(self, items: list[dict], idx: list[int]) -> dict[str, np.ndarray]:
        """The store arrays of one batch; non-finite maps, scores or attributions are refused."""
        images = image_batch(items).to(self.device)
        with torch.no_grad():
            maps = self.det.map_from_images(images).float()
            scores = torch.sigmoid(self.det.forward_map(maps).reshape(len(items), -1)[:, -1])
        out = sample_arrays(items, idx, maps)
        out["scores"] = scores.cpu().numpy().astype(np.float32)
        for key, value in out.items():  # before attributing: a NaN map or score names the detector and sample
            if value.dtype.kind == "f":
                check_finite(value, key, items, idx, _name(self.det))
        for key, s in self.settings.items():
            if s.space == "defocus":
                out[key] = s.attribute(self.det, maps, sample_indices=idx, inputs_are_maps=True)[:, 0].cpu().numpy()
            else:
                out[key] = s.attribute(self.rgb, images, sample_indices=idx).cpu().numpy()
        return out


def _name(model: nn.Module) -> str:
    return (getattr(model, "identity", None) or {}).get("name") or type(model).__name__


def _fingerprint(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _export_meta(exp: _Exporter, chunk_size: int, num_shards: int, n_total: int) -> dict:
    """The meta common to every shard of this export, with the fingerprint of the settings."""
    det, rgb = exp.det, exp.rgb
    cfg = {"library_version": __version__, "attributions": exp.meta, "detector": _identity(det),
           "rgb_detector": _identity(rgb), "chunk_size": int(chunk_size), "num_shards": int(num_shards),
           "total_samples": n_total}
    est = getattr(det, "estimator", None)
    return {
        "detector": cfg["detector"],
        "rgb_detector": cfg["rgb_detector"],
        "estimator": _jsonable(est.config()) if est is not None else None,
        "map_normalization": {"map_norm": getattr(det, "map_norm", None),
                              "sigma_max": getattr(det, "sigma_max", None),
                              "map_size": getattr(det, "map_size", None)},
        "attributions": _jsonable(exp.meta),
        "export": {"fingerprint": _fingerprint(cfg), "config": _jsonable(
            {k: v for k, v in cfg.items() if k not in ("detector", "rgb_detector", "attributions")})},
    }


def _run_chunks(exp: _Exporter, data: Any, work: Path, chunks: list[list[int]], names: list[str], todo: list[int],
                meta_base: dict, *, batch_size: int, num_workers: int, bar, index: tuple | None,
                shard_index: int) -> None:
    """Compute and write the chunks ``todo``; rebuild the index after each when ``index`` is given."""
    from torch.utils.data import DataLoader, Subset

    for c in todo:
        idx = chunks[c]
        loader = DataLoader(Subset(data, idx), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            collate_fn=list)
        parts, pos, image_hw = [], 0, None
        for raw in loader:
            bidx = idx[pos:pos + len(raw)]
            pos += len(raw)
            items = [sample_fields(s, i, data) for s, i in zip(raw, bidx)]
            image_hw = image_hw or list(items[0]["image"].shape[-2:])
            parts.append(exp.batch(items, bidx))
            if bar is not None:
                bar.update(len(raw))
        arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        meta = dict(meta_base, image_grid={"height": image_hw[0], "width": image_hw[1]},
                    map_grid={"height": int(arrays["dmaps"].shape[1]), "width": int(arrays["dmaps"].shape[2])})
        meta["export"] = dict(meta_base["export"], shard_index=shard_index, chunk=c,
                              first_index=int(idx[0]), last_index=int(idx[-1]))
        write_shard(work / names[c], arrays, meta)
        if index is not None:
            rebuild_index(work, *index)


def export_attributions(detector: nn.Module, data: Any, out: str | os.PathLike, *,
                        methods: Sequence[str] | None = None, settings: AttributionSettings | None = None,
                        rgb_detector: nn.Module | None = None, background: Any = "data",
                        background_size: int = DEFAULT_BACKGROUND_SIZE, background_data: Any = None,
                        n_samples: int | None = None, n_steps: int | None = None, seed: int = 0,
                        engine: str | None = None, sampler: str | None = None, batch_size: int = 16,
                        eval_batch_size: int = 256, method_kwargs: dict | None = None, chunk_size: int = 256,
                        num_shards: int = 1, shard_index: int = 0, resume: bool = True, progress: bool = True,
                        device: Any = None, num_workers: int | None = None,
                        distributed: bool | None = None) -> Path:
    """Export defocus maps, scores and attributions of a data set to the ``.npz`` store.

    Parameters
    ----------
    detector : MapDetector
        Explained on its normalized defocus map (keys ``defocus_shaps`` / ``attr_defocus_<method>``).
        Borrowed: it comes back in the mode and on the device it came in.
    data : Dataset, DataLoader or sequence
        A map-style data set (``len`` and ``[i]``) of dicts with ``image`` (3, H, W) float in ``[0, 1]``
        (uint8 accepted), ``label`` (0 real, 1 fake, -1 unlabeled) and optionally ``path``, ``source_id``, ``family``,
        ``mask`` (1, H, W) and ``sigma`` (1, H, W). A ``DataLoader`` is replaced by its ``dataset`` (its
        ``num_workers`` is kept); batching is ours.
    out : path-like
        A name ending in ``.npz``: one file that plain ``numpy.load(out, allow_pickle=False)`` reads
        (shards go to ``<out>.parts/`` meanwhile, assembled and removed at the end). Anything else: a
        store folder of shard files and ``index.json``.
    methods : sequence of str, optional
        Attribution methods (see :data:`~defocus_xai.explain.settings.METHODS`); default
        ``(settings.method,)``, else ``("shap_gradient",)``.
    settings : AttributionSettings, optional
        The attribution options in one object (its ``method`` / ``space`` are set per key; its
        ``method_kwargs`` and ``engine`` apply to its own method, its ``wrapper`` to the defocus keys;
        :meth:`AttributionSettings.paper` is the paper's). Give either this or the keyword options
        ``background``, ``background_size``, ``n_samples`` ... ``eval_batch_size``.
    rgb_detector : nn.Module, optional
        An RGB detector explained on the same images (``rgb_shaps`` (N, 3, H, W), ``attr_rgb_<method>``).
    background : {"data", "zeros", "blur"}, int or tensor
        The attribution reference, recorded in ``meta`` (``background``: one line for reports and
        captions; ``background_info``: kind, k, indices, paths and labels). ``"data"`` (default): the
        first ``background_size`` real (label 0) samples of ``background_data`` or, without it, of
        ``data`` (the maps are computed from their images); an int ``k``: ``"data"`` with ``k``
        samples; ``"zeros"``: an all-zero map / image; ``"blur"``: each input's Gaussian-blurred copy;
        or images ``(K, 3, H, W)`` or normalized maps ``(K, 1, S, S)`` in ``[0, 1]`` (then the RGB
        detector uses zeros).
    background_size : int
        Samples of the data background (default 10, as the paper).
    background_data : Dataset, optional
        Where the data background comes from: the reference / training split (the paper: the first 10
        real training frames). Default: the data being explained.
    n_samples, n_steps, seed, engine, sampler, batch_size, eval_batch_size
        As in :func:`~defocus_xai.explain.attribute` (``batch_size`` is also the samples per step;
        ``sampler``: ``"stratified"``, the default of the batched engine, or ``"shap"``).
    method_kwargs : dict, optional
        Method name -> its extra parameters.
    chunk_size : int
        Samples per shard file (memory of one chunk of outputs).
    num_shards, shard_index : int
        Export only shard ``shard_index`` of ``num_shards`` contiguous index ranges into a store folder
        (join the folders with :func:`~defocus_xai.store.merge_exports`). Under ``torchrun`` they come
        from ``WORLD_SIZE`` and ``RANK``.
    resume : bool
        Keep valid shard files already written (an interrupted run continues); False starts over. An
        output holding another export's files (other settings or another shard split) is refused, or
        with False cleared of them.
    progress : bool
        Show a tqdm progress bar (rank 0 only).
    device : str or torch.device, optional
        Default: :func:`~defocus_xai._device.resolve_device` (``cuda:LOCAL_RANK`` under torchrun).
    num_workers : int, optional
        Data-loading worker processes (default: the loader's, else 0).
    distributed : bool, optional
        Force (True) or forbid (False) the torchrun mode; default: on when ``WORLD_SIZE > 1``.

    Returns
    -------
    pathlib.Path
        ``out``; open it with :func:`~defocus_xai.store.load_attributions`.

    Raises
    ------
    ValueError
        A sample that breaks the data contract (an image outside ``[0, 1]`` or not finite, a label not
        in -1, 0, 1); a non-finite map, score or attribution (naming the detector, the key, the sample
        index and path); an output holding another export's files.
    OSError
        :class:`~defocus_xai.store.atomic.OutputLocked` when another export or merge writes into ``out``
        (one writer per output: the message names the holder's pid); "no space left" naming the file.

    Examples
    --------
    >>> export_attributions(det, DefocusSynth(64, size=64), "out.npz", methods=("shap_gradient", "saliency"),
    ...                     background_data=DefocusSynth(64, size=64, seed=0), n_samples=50)  # doctest: +SKIP
    PosixPath('out.npz')
    >>> export_attributions(det, test_data, "paper.npz", settings=AttributionSettings.paper(),
    ...                     background_data=train_data)                            # doctest: +SKIP
    PosixPath('paper.npz')
    """
    from torch.utils.data import DataLoader

    methods = tuple(methods or ((settings.method,) if settings is not None else ("shap_gradient",)))
    if not methods or any(m not in METHODS for m in methods):
        raise ValueError(f"methods must be a non-empty sequence of {METHODS}, got {methods}")
    if int(chunk_size) < 1 or int(batch_size) < 1:
        raise ValueError(f"chunk_size and batch_size must be >= 1, got {chunk_size}, {batch_size}")
    if not uses_maps(detector):
        raise TypeError(f"export_attributions needs a detector that reads defocus maps (a MapDetector); got "
                        f"{type(detector).__name__}")
    base = _base_settings(settings, methods, dict(background=background, background_size=background_size,
                                                  n_samples=n_samples, n_steps=n_steps, seed=seed, engine=engine,
                                                  sampler=sampler, batch_size=batch_size,
                                                  eval_batch_size=eval_batch_size))
    if isinstance(data, DataLoader):
        num_workers = data.num_workers if num_workers is None else num_workers
        data = data.dataset
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise ValueError(f"export_attributions needs a map-style data set (len() and [i]); got {type(data).__name__}")
    out = Path(out)
    device = rank_device(device)
    with contextlib.ExitStack() as stack:
        det = stack.enter_context(borrowed(detector, device))
        rgb = stack.enter_context(borrowed(rgb_detector, device)) if rgb_detector is not None else None
        bg_rows, bg_info = load_background(base.background, base.background_size, data, background_data)
        exp = _Exporter(det, rgb, base, methods, dict(method_kwargs or {}), bg_rows, bg_info, device)
        return _export(exp, data, out, chunk_size=int(chunk_size), num_shards=int(num_shards),
                       shard_index=int(shard_index), resume=resume, progress=progress,
                       num_workers=int(num_workers or 0), distributed=distributed)


def _export(exp: _Exporter, data: Any, out: Path, *, chunk_size: int, num_shards: int, shard_index: int,
            resume: bool, progress: bool, num_workers: int, distributed: bool | None) -> Path:
    """The streaming loop of :func:`export_attributions` once models, settings and background are fixed."""
    dist_info = dist_setup(exp.device, distributed)
    if dist_info is not None:
        shard_index, num_shards = dist_info.rank, dist_info.world_size
    single = out.suffix == ".npz"
    if single and num_shards > 1 and dist_info is None:
        raise ValueError(f"{out}: a single .npz file needs the whole data set; export the shards into folders "
                         "and join them with merge_exports(folders, 'name.npz')")
    rank0 = dist_info is None or dist_info.rank == 0
    try:
        # rank 0 holds the output lock for every rank: one export (of any number of processes) per output
        with output_lock(out) if rank0 else contextlib.nullcontext():
            _export_locked(exp, data, out, chunk_size=chunk_size, num_shards=num_shards, shard_index=shard_index,
                           resume=resume, progress=progress, num_workers=num_workers, dist_info=dist_info)
    finally:
        if dist_info is not None:
            dist_teardown(dist_info)
    return out


def _export_locked(exp: _Exporter, data: Any, out: Path, *, chunk_size: int, num_shards: int, shard_index: int,
                   resume: bool, progress: bool, num_workers: int, dist_info) -> None:
    n_total = len(data)
    single = out.suffix == ".npz"
    work = out.with_name(out.name + ".parts") if single else out
    rank0 = dist_info is None or dist_info.rank == 0
    meta_base = _export_meta(exp, chunk_size, num_shards, n_total)
    fp = meta_base["export"]["fingerprint"]
    if rank0:
        done = single and single_file_done(out, work, fp, resume)
        if not done:
            covered = range(num_shards) if dist_info is not None else (shard_index,)
            prepare_output(work, num_shards=num_shards, fingerprint=fp, covered=covered, resume=resume)
    if dist_info is not None:
        barrier(exp.device)  # the other ranks start once rank 0 holds the lock and the folder is ready
    if not rank0:  # the same answer as rank 0's: it made the parts folder unless the file was done
        done = single and single_file_done(out, work, fp, resume)
    if done:
        return
    idx_all = list(shard_range(n_total, num_shards, shard_index))
    chunks = [idx_all[s:s + chunk_size] for s in range(0, len(idx_all), chunk_size)]
    names = [shard_name(shard_index, num_shards, c) for c in range(len(chunks))]
    todo = [c for c in range(len(chunks)) if not check_existing(work / names[c], chunks[c])]
    bar = None
    if progress and rank0:
        from .._progress import progress as progress_bar

        bar = progress_bar(total=len(idx_all), initial=len(idx_all) - sum(len(chunks[c]) for c in todo), unit="img",
                   desc=f"export shard {shard_index}")
    try:
        _run_chunks(exp, data, work, chunks, names, todo, meta_base, batch_size=exp.batch_size,
                    num_workers=num_workers, bar=bar, index=(n_total, num_shards) if rank0 else None,
                    shard_index=shard_index)
    finally:
        if bar is not None:
            bar.close()
    if dist_info is not None:
        barrier(exp.device)
    if rank0:
        finish(out, work, n_total, num_shards)
    if dist_info is not None:
        barrier(exp.device)
