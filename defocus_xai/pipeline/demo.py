"""The whole pipeline in one call on DefocusSynth with the bundled detectors: :func:`run_demo`.

It runs every stage of :mod:`defocus_xai.pipeline` in order and writes ``report.md``, ``results.json``,
the detection tables, the attribution store and every figure into one folder (``docs/demo.md``).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .inputs import masked_fakes, pick_examples, store_pairs
from .model_stages import stage_defocus_maps, stage_detection, stage_faithfulness, stage_randomization
from .report import write_report
from .result import StageResult, jsonable
from .settings import PipelineSettings
from .attribution_stages import stage_alignment, stage_localization
from .stages import stage_embedding, stage_masks, stage_variance

__all__ = ["DEFAULT_N", "DemoResult", "run_demo"]

DEFAULT_N = 96
"""Samples of the default demo (48 real/fake pairs, 12 fakes per family; see docs/demo.md for the runtime)."""

_N_STAGES = 10

REFERENCE = "10 real training images (DefocusSynth seed 0)"
"""The attribution reference (SHAP background) of the demo's export."""


@dataclass
class DemoResult:
    """What :func:`run_demo` wrote and computed.

    Attributes
    ----------
    out : pathlib.Path
        The output folder.
    report : pathlib.Path
        ``out/report.md``: open this first.
    results : dict
        Every number of the report (also in ``out/results.json``), by section.
    figures : list of pathlib.Path
        Every figure file written (PNG and PDF).
    files : list of pathlib.Path
        Every file the report links to (figures, tables, the store).
    timings : dict
        Seconds per stage.
    seconds : float
        Wall time of the whole run.
    """

    out: Path
    report: Path
    results: dict
    figures: list = field(default_factory=list)
    files: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """Plain-Python view (paths as strings)."""
        return {"out": str(self.out), "report": str(self.report), "results": self.results,
                "figures": [str(p) for p in self.figures], "files": [str(p) for p in self.files],
                "timings": dict(self.timings), "seconds": self.seconds}

    def summary(self) -> str:
        """The few headline numbers, as ``defocus-xai demo`` prints them once at the end."""
        r = self.results
        lines = [f"defocus-xai demo: done in {self.seconds:.0f} s ({r['settings']['n']} samples, "
                 f"{r['settings']['device']})"]
        for name, d in r["detection"].items():
            lines.append(f"  {name:8s} detector: ROC AUC {d['overall']['roc_auc']:.3f}, "
                         f"accuracy {d['overall']['accuracy']:.3f}")
        for name, a in r["alignment"].items():
            if name != "paired_difference":
                base = a.get("baseline_mean_overlap")
                lines.append(f"  alignment {name:8s}: overlap {a['mean_overlap']:.3f} [{a['ci_low']:.3f}, "
                             f"{a['ci_high']:.3f}]" + ("" if base is None else f" (permutation baseline {base:.3f})"))
        lines += [f"  {len(self.figures)} figure files in {self.out / 'figures'}", "", f"Open {self.report}"]
        return "\n".join(lines)


class _Run:
    """The demo's output folder: stage messages and timings, figures, numbers and captions."""

    def __init__(self, out: Path, formats: Sequence[str], dpi: int, log: Callable[[str], None]):
        self.out, self.formats, self.dpi, self.log = out, tuple(formats), dpi, log
        self.results: dict = {}
        self.timings: dict = {}
        self.figures: list[Path] = []
        self.stage_figures: dict = {}
        self.captions: dict = {}

    @contextlib.contextmanager
    def stage(self, title: str):
        """Log ``[k/10] title`` and time the block."""
        self.log(f"[{len(self.timings) + 1}/{_N_STAGES}] {title}")
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[title] = round(time.perf_counter() - t0, 2)

    def add(self, key: str, result: StageResult) -> None:
        """Write a stage's figures, keep its numbers (and table) under ``results[key]``."""
        self.figures += result.save_figures(self.out / "figures", formats=self.formats, dpi=self.dpi)
        self.stage_figures[key] = list(result.figures)
        self.captions.update(result.captions)
        table = {} if result.table is None or key == "detection" else {"table": result.table}
        self.results[key] = {**result.numbers, **table}


def _render(n: int, size: int, seed: int, progress: bool) -> list:
    """DefocusSynth rendered once into memory; each sample's path reads ``synth:<seed>:<index>``."""
    from .._progress import progress as progress_bar
    from ..data import DefocusSynth

    ds = DefocusSynth(n, size=size, seed=seed)
    return [{**ds[i], "path": f"synth:{seed}:{i}"}
            for i in progress_bar(range(n), desc="render DefocusSynth", enabled=progress, leave=False)]


def _map_rows(items: list) -> list[int]:
    """The first fake of each family, each right after its own real (same source id)."""
    real_of = {it["source_id"]: i for i, it in enumerate(items) if int(it["label"]) == 0}
    rows, seen = [], set()
    for i, it in enumerate(items):
        if int(it["label"]) == 1 and it["family"] not in seen and it["source_id"] in real_of:
            seen.add(it["family"])
            rows += [real_of[it["source_id"]], i]
    return rows


def _detection_files(run: _Run, result: StageResult) -> None:
    result.table.to_csv(run.out / "detection.csv", index=False)
    (run.out / "detection.json").write_text(json.dumps(jsonable(result.numbers), indent=2))
    run.add("detection", result)


def _reference_images(size: int, k: int = 10):
    """The attribution reference: the first ``k`` real images of DefocusSynth's training split (seed 0)."""
    import torch

    from ..data import DefocusSynth

    ds, out = DefocusSynth(4 * k, size=size, seed=0), []
    for i in range(len(ds)):
        if int(ds[i]["label"]) == 0:
            out.append(torch.as_tensor(np.asarray(ds[i]["image"])).float())
        if len(out) == k:
            break
    return torch.stack(out)


def _export(run: _Run, items: list, dets: dict, *, n_shap_samples: int, seed: int, size: int, device,
            progress: bool) -> dict:
    """The attribution store of the demo (``out/attributions``), read back as arrays (with its meta)."""
    from ..explain import export_attributions
    from .inputs import open_arrays

    store = export_attributions(dets["defocus"], items, run.out / "attributions", methods=("shap_gradient",),
                                rgb_detector=dets.get("rgb"), background=_reference_images(size),
                                n_samples=n_shap_samples, seed=seed, resume=False, progress=progress, device=device,
                                batch_size=16)
    arrays, _ = open_arrays(store)
    meta = json.loads(str(arrays["meta"].item()))
    for entry in (meta.get("attributions") or {}).values():  # in words (the store's meta keeps the checksum)
        entry["background"] = REFERENCE
    arrays["meta"] = np.asarray(json.dumps(meta))
    run.results["export"] = {"path": str(store), "n": int(len(arrays["labels"])),
                             "keys": sorted(k for k in arrays if k != "meta"),
                             "n_pairs": int(len(store_pairs(arrays)[0])), "background": REFERENCE}
    return arrays


def _analyses(run: _Run, arrays: dict, items: list, dets: dict, s: PipelineSettings, *, randomization_maps: int,
              n_shap_samples: int, device, progress: bool) -> None:
    """Stages 4-10 on the store arrays (the same functions as ``paper_figures``)."""
    from ..explain import extract_features

    pairs, _ = store_pairs(arrays)
    examples = pick_examples(pairs, s, arrays=arrays, family="splice")
    with run.stage("binary masks"):
        run.add("masks", stage_masks(arrays, s, pairs=pairs, examples=examples))
    with run.stage("local variance + KS test"):
        run.add("variance", stage_variance(arrays, s, pairs=pairs, examples=examples))
    with run.stage("features + t-SNE"):
        feats = {name: extract_features(d, items, device=device, progress=progress).features
                 for name, d in dets.items()}
        run.add("embedding", stage_embedding(arrays, s, features=feats))
    with run.stage("Shapley alignment (defocus vs RGB)"):
        run.add("alignment", stage_alignment(arrays, s, pairs=pairs, examples=examples))
    with run.stage("localization on splice masks"):
        run.results["localization"] = None
        if masked_fakes(arrays, "splice").size:
            run.add("localization", stage_localization(arrays, s, family="splice",
                                                       images=[it["image"] for it in items]))
    with run.stage("randomization sanity check"):
        run.add("randomization", stage_randomization(dets["defocus"], arrays, s, n_maps=randomization_maps,
                                                     n_samples=min(n_shap_samples, 16), progress=progress))
    with run.stage("deletion / insertion faithfulness"):
        run.add("faithfulness", stage_faithfulness(dets["defocus"], arrays, s))


def run_demo(out, *, n: int = DEFAULT_N, size: int | None = None, seed: int = 1, device=None,
             detector="bundled-defocus", rgb_detector="bundled-rgb", n_shap_samples: int = 50,
             settings: PipelineSettings | None = None, randomization_maps: int = 4,
             formats: Sequence[str] = ("png", "pdf"), dpi: int = 200, progress: bool = True,
             log: Callable[[str], None] | None = None) -> DemoResult:
    """Run the whole pipeline on DefocusSynth with the bundled detectors and write a one-page report.

    Stages: defocus maps; detection metrics per family (``detection.json``, ``detection.csv``);
    attribution export (defocus and RGB ``shap_gradient``) to ``attributions/``; then the stages of
    :mod:`defocus_xai.pipeline.stages` on the store (masks, local variance, t-SNE, alignment,
    localization on the splice masks) and the sanity checks (randomization, deletion / insertion).

    Parameters
    ----------
    out : path-like
        Output folder (created; files of an earlier run are overwritten).
    n : int
        DefocusSynth samples (even: real/fake pairs, at least 8). Default :data:`DEFAULT_N`.
    size : int, optional
        Image size; default the defocus detector's input size.
    seed : int
        Seed of the data (default 1, held out: the bundled detectors were trained on seed 0) and of
        the export's draws.
    device : str, optional
    detector, rgb_detector : str, path or nn.Module
        Defocus and RGB detectors (``"bundled-..."``, checkpoint paths or models; ``rgb_detector=None``
        leaves the RGB side out).
    n_shap_samples : int
        SHAP draws per sample (export; at most 16 in the randomization check).
    settings : PipelineSettings, optional
        Analysis settings; default ``PipelineSettings(seed=seed, max_examples=1)``.
    randomization_maps : int
        Fake maps of the randomization check.
    formats, dpi
        Figure formats and raster resolution.
    progress, log
        Progress bars and stage messages; ``log`` receives the messages (default ``tqdm.write``).

    Returns
    -------
    DemoResult

    Examples
    --------
    >>> res = run_demo("demo_out", n=40, device="cpu")         # doctest: +SKIP
    >>> print(res.summary())                                   # doctest: +SKIP
    """
    import torch
    from tqdm.std import tqdm

    from .._device import resolve_device
    from ..detect import load_detector
    from ..detect.protocol import unwrap

    if n < 8 or n % 2:
        raise ValueError(f"n must be an even number >= 8 (real/fake pairs of every family), got {n}")
    t_start = time.perf_counter()
    out, device = Path(out), resolve_device(device)
    s = settings or PipelineSettings(seed=seed, max_examples=1)
    run = _Run(out, formats, dpi, log or (tqdm.write if progress else (lambda msg: None)))
    (out / "figures").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    with run.stage("data, detectors and defocus maps"):
        dets = {"defocus": load_detector(detector, device=device)}
        if rgb_detector is not None:
            dets["rgb"] = load_detector(rgb_detector, device=device)
        size = int(size or unwrap(dets["defocus"]).input_size or 128)
        items = _render(n, size, seed, progress)
        run.results["settings"] = {
            "dataset": "DefocusSynth", "data_version": str(items[0]["version"]),
            "n": n, "size": size, "seed": seed, "device": str(device), "n_shap_samples": n_shap_samples,
            "analysis": s.to_dict(), "detectors": {k: dict(unwrap(d).identity) for k, d in dets.items()}}
        run.add("defocus_maps", stage_defocus_maps(items, _map_rows(items), size=size, device=device))
    with run.stage("detection metrics"):
        _detection_files(run, stage_detection(dets, items, device=device, progress=progress))
    with run.stage("attribution export (.npz)"):
        arrays = _export(run, items, dets, n_shap_samples=n_shap_samples, seed=seed, size=size, device=device,
                         progress=progress)
    _analyses(run, arrays, items, dets, s, randomization_maps=randomization_maps, n_shap_samples=n_shap_samples,
              device=device, progress=progress)
    seconds = round(time.perf_counter() - t_start, 1)
    run.results["timings"] = dict(run.timings, total=seconds)
    run.results = jsonable(run.results)
    (out / "results.json").write_text(json.dumps(run.results, indent=2))
    report = out / "report.md"
    files = write_report(report, run.results, figures=run.stage_figures, captions=run.captions, formats=formats)
    return DemoResult(out=out, report=report, results=run.results, figures=run.figures, files=files,
                      timings=run.timings, seconds=seconds)
