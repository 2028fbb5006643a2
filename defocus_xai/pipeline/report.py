"""The demo's ``report.md``: each stage's figures with their captions, numbers and a one-line reading.

:func:`write_report` reads only the JSON-able ``results`` of :func:`~defocus_xai.pipeline.run_demo`
(the same dict as ``results.json``), so a report can be rewritten from that file. The report states the
attribution reference, the settings that differ from the paper's code, each alignment score beside its
controls, and the unit (source or image) of every statistic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .attribution_stages import controls_text
from .settings import PAPER_SETTINGS

__all__ = ["write_report"]


def _num(value, spec: str) -> str:
    """``value`` formatted, or "n/a" where it is missing (None / NaN: e.g. a CI on fewer than 2 units)."""
    if value is None or (isinstance(value, (float, np.floating)) and not np.isfinite(value)):
        return "n/a"
    return format(value, spec)


def _ci(est, lo, hi, nd=3) -> str:
    return f"{_num(est, f'.{nd}f')} [{_num(lo, f'.{nd}f')}, {_num(hi, f'.{nd}f')}]"


def md_table(records: list[dict], floatfmt: str = ".3f") -> str:
    """A Markdown table of records (floats formatted, None as an empty cell)."""
    if not records:
        return ""
    cols = list(records[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for rec in records:
        cells = [format(float(v), floatfmt) if isinstance(v, (float, np.floating)) else ("" if v is None else str(v))
                 for v in (rec.get(c) for c in cols)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _reading_maps(rows) -> str:
    by_source: dict = {}
    for x in rows:
        by_source.setdefault(x["source_id"], {})[x["label"]] = x
    parts = [f"{p[1]['family']} {p[1]['mean_sigma']:.2f} px vs its real {p[0]['mean_sigma']:.2f} px"
             for p in by_source.values() if 0 in p and 1 in p]
    return ("mean dense sigma of each fake beside its own real (single images, not family means): "
            + "; ".join(parts) + ".")


def _reading_detection(det) -> str:
    parts = []
    for name, d in det.items():
        fam = [g for g in d["per_family"] if g["group"] != "all" and g.get("roc_auc") is not None]
        if fam:
            best, worst = max(fam, key=lambda g: g["roc_auc"]), min(fam, key=lambda g: g["roc_auc"])
            parts.append(f"the {name} detector reaches ROC AUC {d['overall']['roc_auc']:.2f} overall, best on "
                         f"{best['group']} ({best['roc_auc']:.2f}), worst on {worst['group']} ({worst['roc_auc']:.2f})")
    return "; ".join(parts) + " (AUC 0.5 = chance)."


def _reading_masks(m) -> str:
    rows = m["at_threshold"]
    if not rows:
        return "no pair at this threshold."
    hi, lo = max(rows, key=lambda x: x["mean"]), min(rows, key=lambda x: x["mean"])
    return (f"at t = {m['threshold']:g}, {hi['method']} changes the most map pixels ({hi['mean']:,.0f}) and "
            f"{lo['method']} the fewest ({lo['mean']:,.0f}); maps are min-max normalized per image, so a change "
            "anywhere in the scene (e.g. of the blur range) moves the whole map and masks are large.")


def _reading_variance(v) -> str:
    direction = "lower" if v["mean_difference"] < 0 else "higher"
    unit = "per source" if v["unit"] == "group" else "per image"
    if v["p_value"] < 0.05:
        return (f"fake maps have {direction} local variance than real ones (KS {unit}, p = {v['p_value']:.2g}; "
                f"Cliff's delta {v['cliffs_delta']:.2f}).")
    text = (f"fake maps have slightly {direction} mean local variance, but real and fake distributions are not "
            f"distinguishable at this N (KS {unit}, p = {v['p_value']:.2g})")
    if v["unit"] == "group" and v["p_value_frames"] < 0.05:
        text += (f"; the frame-level p = {v['p_value_frames']:.2g} would call it significant only by treating "
                 "frames of one source as independent")
    return text + "."


def _reading_embedding(e) -> str:
    def verdict(x):
        if x["knn_accuracy"] > x["chance_accuracy"] + 0.1:
            return "separate real from fake"
        return "barely separate real from fake" if x["knn_accuracy"] > x["chance_accuracy"] else \
            "do not separate real from fake"

    return "; ".join(f"the {k} detector's features {verdict(x)} (kNN {x['knn_accuracy']:.2f} vs chance "
                     f"{x['chance_accuracy']:.2f})" for k, x in e.items() if "knn_accuracy" in x) + "."


def _reading_alignment(a) -> str:
    models = {k: x for k, x in a.items() if k != "paired_difference"}
    beat = [k for k, x in models.items() if x.get("beats_all_controls")]
    if beat:
        tail = (f"only the {' and the '.join(beat)} detector's attributions beat every control (permutation, "
                "map value, uniform), so only there does the score say more than the fake's own defocus values do.")
    else:
        tail = ("no detector's attributions beat every control (permutation, map value, uniform): the score does "
                "not show that either detector's attributions follow the defocus change.")
    pd_ = a.get("paired_difference")
    if not pd_:
        return tail[0].upper() + tail[1:]
    o = pd_["overlap"]
    verdict = ("the defocus detector's overlap is higher than the RGB detector's" if o["low"] > 0 else
               "the RGB detector's overlap is higher" if o["high"] < 0 else
               "no significant difference between the two detectors' overlaps at this N")
    return f"{verdict}; {tail}"


def _reading_localization(loc) -> str:
    r_auc = {s["metric"]: s for s in loc["random"]["summary"]}.get("auroc", {}).get("mean", 0.5)
    good, bad = [], []
    for k, x in loc.items():
        s = {row["metric"]: row for row in x["summary"]}.get("auroc")
        if k != "random" and s is not None:
            (good if s["ci_low"] > r_auc else bad).append(f"{k} (AUROC {s['mean']:.2f})")
    out = (["above the random baseline: " + ", ".join(good)] if good else []) + \
          (["not distinguishable from random: " + ", ".join(bad)] if bad else [])
    return "; ".join(out) + f" (random AUROC {r_auc:.2f})."


def _reading_randomization(rz) -> str:
    def verdict(v):
        if abs(v) < 0.2:
            return "passes (falls near 0)"
        return "partly depends on the input, not only on the model" if abs(v) < 0.5 else \
            "fails: it stays correlated with itself after the model is random"

    return ("; ".join(f"{x['method']} {verdict(x['spearman_abs'])}" for x in rz["final"])
            + " (a method that explains the model must change when the model does).")


def _reading_faithfulness(fa) -> str:
    f = {x["metric"]: x for x in fa["summary"]}
    d, i = f.get("deletion_vs_random"), f.get("insertion_vs_random")
    if d is None or i is None:
        return "no random ranking computed."

    def sig(x, better):
        lo, hi = x["mean"] - 1.96 * x["sem"], x["mean"] + 1.96 * x["sem"]
        if (better < 0 and hi < 0) or (better > 0 and lo > 0):
            return "better than random"
        return "worse than random" if (better < 0 and lo > 0) or (better > 0 and hi < 0) else \
            "not distinguishable from random"

    text = (f"deleting the most-attributed pixels first is {sig(d, -1)} (AUC difference {d['mean']:+.3f} +- "
            f"{1.96 * d['sem']:.3f}); inserting them first is {sig(i, +1)} ({i['mean']:+.3f} +- "
            f"{1.96 * i['sem']:.3f}).")
    if fa.get("caveat"):
        text += f" Caution: the deletion curves are not evidence of faithfulness on these data: {fa['caveat']}."
    return text


def _numbers_detection(r: dict) -> str:
    recs = [{"detector": name, "group": g["group"], "n_fake": g.get("n_fake"), "roc_auc": g.get("roc_auc"),
             "accuracy": g.get("accuracy"), "eer": g.get("eer")}
            for name, d in r["detection"].items() for g in d["per_family"]]
    return (md_table(recs) + "\n\nFiles: [`detection.csv`](detection.csv), [`detection.json`](detection.json). "
            "Per family: that family's fakes against all reals; unit: one image (each source has one real and "
            "one fake, so images are the sources' two sides).")


def _numbers_export(r: dict) -> str:
    e = r["export"]
    return (f"[`attributions/`](attributions/index.json): {e['n']} samples, keys "
            + ", ".join(f"`{k}`" for k in e["keys"]) + f"; {e['n_pairs']} fake/real pairs by source id.")


def _numbers_masks(r: dict) -> str:
    m = r["masks"]
    return (f"Activated pixels at threshold {m['threshold']:g} (mean per fake/real pair; CIs resample sources): "
            + "; ".join(f"{x['method']} {_num(x['mean'], ',.0f')} [{_num(x['ci_low'], ',.0f')}, "
                        f"{_num(x['ci_high'], ',.0f')}] "
                        f"(n = {x['n_pairs']} pairs, {x.get('n_units', x['n_pairs'])} sources)"
                        for x in m["at_threshold"]) + ".")


def _numbers_variance(r: dict) -> str:
    v = r["variance"]
    return (f"{v['headline'][0].upper()}{v['headline'][1:]}. Mean local variance ({v['border']} border) real "
            f"{v['mean_real']:.4g}, fake {v['mean_fake']:.4g}; difference {v['mean_difference']:.3g} "
            f"[{v['ci_low']:.3g}, {v['ci_high']:.3g}]; Cliff's delta {v['cliffs_delta']:.3f}; n = {v['n_real']} "
            f"real, {v['n_fake']} fake maps.")


def _numbers_embedding(r: dict) -> str:
    return "; ".join(f"{k}: silhouette {x['silhouette']:.3f}, kNN accuracy {x['knn_accuracy']:.3f} (chance "
                     f"{x['chance_accuracy']:.3f}; {x['cv']} cross-validation over {x['n_units']} units)" for k, x in r["embedding"].items() if "knn_accuracy" in x) \
        + " (on the pooled features, not the 2-D embedding)."


def _numbers_alignment(r: dict) -> str:
    lines = [f"Attribution reference: {_reference(r)}. Unit: one fake per source; CIs resample sources."]
    for k, x in r["alignment"].items():
        if k == "paired_difference":
            continue
        lines.append(f"- {k}: overlap {_ci(x['mean_overlap'], x['ci_low'], x['ci_high'])}, KL "
                     f"{_ci(x['mean_kl'], x['kl_ci_low'], x['kl_ci_high'])}; n = {x['n']} fakes, "
                     f"{x.get('n_units', x['n'])} sources ({x['n_skipped']} skipped). Beside its controls: "
                     + controls_text(k, x, with_mean=False).split(": ", 1)[1] + ".")
    pd_ = r["alignment"].get("paired_difference")
    if pd_:
        o = pd_["overlap"]
        lines.append(f"- paired difference {pd_['models'][0]} - {pd_['models'][1]}: overlap "
                     f"{_ci(o['estimate'], o['low'], o['high'])} (n = {pd_['n']}; {pd_['models'][0]} higher on "
                     f"{100 * o['win_rate']:.0f}% of fakes)")
    return "\n".join(lines)


def _numbers_localization(r: dict) -> str:
    loc = r["localization"]
    recs = []
    for k, x in loc.items():
        row = {"method": k, "n": x["n"]}
        row.update({s["metric"]: f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]" for s in x["summary"]})
        recs.append(row)
    mf = next(iter(loc.values()))["mask_fraction"]
    return (md_table(recs) + f"\n\nMean mask fraction (chance level of mass and rank accuracy): {mf:.3f}; "
            f"AUROC chance 0.5. Unit: one fake per source (CIs resample sources); attribution reference: "
            f"{_reference(r)}.")


def _numbers_randomization(r: dict) -> str:
    rz = r["randomization"]
    return (f"Cascading randomization of {rz['n_layers']} layers on {rz['n_maps']} fake maps; Spearman rank "
            "correlation of |attribution| with the trained model's after all layers are random: "
            + ", ".join(f"{x['method']} {x['spearman_abs']:.3f}" for x in rz["final"]) + ".")


def _numbers_faithfulness(r: dict) -> str:
    f = {x["metric"]: x for x in r["faithfulness"]["summary"]}

    def g(k, field="mean"):
        return f[k][field] if k in f else float("nan")

    return (f"On {r['faithfulness']['n_maps']} fake maps, fake logit: deletion AUC {g('deletion_auc'):.3f} "
            f"(random {g('random_deletion_auc'):.3f}), insertion AUC {g('insertion_auc'):.3f} (random "
            f"{g('random_insertion_auc'):.3f}); SHAP beats random on {100 * g('deletion_vs_random', 'win_rate'):.0f}% "
            f"(deletion) and {100 * g('insertion_vs_random', 'win_rate'):.0f}% (insertion) of maps.")


# (results key, title, numbers, reading) in report order
_SECTIONS = (
    ("defocus_maps", "Defocus maps", None, lambda r: _reading_maps(r["defocus_maps"]["rows"])),
    ("detection", "Detection", _numbers_detection, lambda r: _reading_detection(r["detection"])),
    ("export", "Attribution export", _numbers_export, None),
    ("masks", "Binary difference masks", _numbers_masks, lambda r: _reading_masks(r["masks"])),
    ("variance", "Local variance and KS test", _numbers_variance, lambda r: _reading_variance(r["variance"])),
    ("embedding", "Feature embedding (t-SNE)", _numbers_embedding, lambda r: _reading_embedding(r["embedding"])),
    ("alignment", "Shapley alignment: defocus vs RGB detector", _numbers_alignment,
     lambda r: _reading_alignment(r["alignment"])),
    ("localization", "Localization on the splice family", _numbers_localization,
     lambda r: _reading_localization(r["localization"])),
    ("randomization", "Randomization sanity check", _numbers_randomization,
     lambda r: _reading_randomization(r["randomization"])),
    ("faithfulness", "Deletion / insertion faithfulness", _numbers_faithfulness,
     lambda r: _reading_faithfulness(r["faithfulness"])),
)


def _reference(r: dict) -> str:
    """The attribution reference (SHAP background) as the export recorded it."""
    return str((r.get("export") or {}).get("background") or "not recorded")


def _paper_differences(analysis: dict) -> str:
    """The analysis settings that differ from the paper's code, in words."""
    diff = [f"{k} {analysis[k]!r} (paper {v!r})" for k, v in PAPER_SETTINGS.items()
            if k in analysis and analysis[k] != v]
    return ("Analysis settings that differ from the paper's code: " + ", ".join(diff) + " (docs/reproduce_paper.md)."
            if diff else "Analysis settings: the paper's (docs/reproduce_paper.md).")


def _header(r: dict) -> list[str]:
    st = r["settings"]
    data = " ".join(str(x) for x in (st.get("dataset", "DefocusSynth"), st.get("data_version")) if x)
    dets = "; ".join(f"{k} detector `{d.get('name', '?')}` ({d.get('backbone', '?')})"
                     for k, d in st["detectors"].items())
    return ["# defocus-xai demo report", "",
            f"{data}, {st['n']} samples ({st['n'] // 2} real/fake pairs sharing a source id), {st['size']} px, "
            f"seed {st['seed']}; device {st['device']}. {dets}. Attribution reference (SHAP background): "
            f"{_reference(r)}. Brackets are bootstrap 95% CIs ({st['analysis']['n_boot']} replicates) that resample "
            "sources: a source (a real image and the fake made from it) is the independent unit of every headline "
            "test; frame- or image-level numbers are flagged as such. " + _paper_differences(st["analysis"])
            + f" All numbers: [`results.json`](results.json). Runtime: {r['timings']['total']:.0f} s.", ""]


def write_report(path, results: dict, *, figures: dict, captions: dict,
                 formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``report.md`` and return it followed by every file it links to.

    Parameters
    ----------
    path : path-like
        The report file; figures are linked as ``figures/<stem>.<format>`` next to it.
    results : dict
        The JSON-able results of :func:`~defocus_xai.pipeline.run_demo` (``results.json``).
    figures : dict
        Results key -> figure stems of that stage, in order.
    captions : dict
        Figure stem -> caption.
    formats : sequence of str
        The formats the figures were written in (PNG is shown inline, the others linked).

    Examples
    --------
    >>> write_report("demo_out/report.md", results, figures=figs, captions=caps)   # doctest: +SKIP
    """
    path = Path(path)
    out = path.parent
    links = [out / "results.json", out / "detection.csv", out / "detection.json", out / "attributions" / "index.json"]
    lines = _header(results)
    for k, (key, title, numbers, reading) in enumerate(_SECTIONS, start=1):
        lines += [f"## {k}. {title}", ""]
        if results.get(key) is None:
            lines += [("Not produced: no fake of this family with a non-empty ground-truth mask."
                       if key == "localization" else "Not produced in this run."), ""]
            continue
        for stem in figures.get(key, []):
            links += [out / "figures" / f"{stem}.{f}" for f in formats]
            if "png" in formats:
                lines += [f"![{stem}](figures/{stem}.png)", ""]
            other = ", ".join(f"[{f.upper()}](figures/{stem}.{f})" for f in formats if f != "png")
            lines += [f"*{stem}:* {captions.get(stem, '')}" + (f" ({other})" if other else ""), ""]
        if numbers is not None:
            lines += [numbers(results), ""]
        if reading is not None:
            lines += ["*Reading:* " + reading(results), ""]
    lines += ["## Runtime", "", md_table([{"stage": k, "seconds": v} for k, v in results["timings"].items()], ".1f"),
              ""]
    path.write_text("\n".join(lines))
    return [path] + links
