"""Part (c) of ``bench/science.py``: the measured effect of each difference between our defaults and the
paper's code, on the reference frames (``../shared/reference_maps``, skipped when absent) and on the
DefocusSynth stores of part (a). Feeds the settings table of ``docs/reproduce_paper.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import stats


def _reference_dir() -> Path | None:
    env = os.environ.get("DEFOCUS_XAI_REFERENCE_MAPS")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "reference_maps"
    return root if (root / "index.csv").is_file() else None


def _load_reference(root: Path):
    import pandas as pd
    from PIL import Image

    index = pd.read_csv(root / "index.csv", dtype=str)
    grids = [np.asarray(Image.open(root / "frames" / f).convert("RGB")) for f in index.file]
    frames = np.stack([g[2:301, 2:301] for g in grids])
    maps = np.stack([g[2:301, 303:602, 0] for g in grids]).astype(np.float64) / 255
    return index, frames, maps


def _border(maps, labels, real_groups=None, fake_groups=None) -> dict:
    from defocus_xai import analysis as A

    out = {}
    for border in ("zeros", "reflect"):
        v = A.variance_test(real_maps=maps[labels == 0], fake_maps=maps[labels == 1], border=border, n_boot=200,
                            real_groups=real_groups, fake_groups=fake_groups)
        out[border] = {"mean_real": v.mean_real, "mean_fake": v.mean_fake, "ks_frames": v.ks_statistic_frames,
                       "p_frames": v.p_value_frames, "p_headline": v.p_value, "unit": v.unit,
                       "cliffs_delta": v.cliffs_delta}
    z, r = out["zeros"], out["reflect"]
    out["reflect_over_zeros"] = (r["mean_real"] + r["mean_fake"]) / (z["mean_real"] + z["mean_fake"])
    return out


def _eps(attr, maps, pairs) -> dict:
    """KL with eps 1e-8 vs 1e-10, and the notebook's (sum + eps) normalization vs ours."""
    from defocus_xai import analysis as A

    kl8, kl10, d_norm = [], [], []
    for a, (f, r) in zip(attr, pairs):
        if np.array_equal(maps[f], maps[r]) or not np.any(a):
            continue
        x8 = A.alignment_score(a, real_map=maps[r], fake_map=maps[f], eps=1e-8)
        kl8.append(x8.kl)
        kl10.append(A.alignment_score(a, real_map=maps[r], fake_map=maps[f], eps=1e-10).kl)
        ha = x8.hist_attr * 1.0
        hd = x8.hist_diff * 1.0
        s_a = np.abs(a).sum()
        s_d = np.abs(maps[f] - maps[r]).sum()
        d_norm.append(abs(np.minimum(hd * s_d / (s_d + 1e-8), ha * s_a / (s_a + 1e-8)).sum() - x8.overlap))
    kl8, kl10 = np.array(kl8), np.array(kl10)
    return {"n": int(kl8.size), "mean_kl_1e-8": float(kl8.mean()), "mean_kl_1e-10": float(kl10.mean()),
            "max_abs_kl_difference": float(np.abs(kl8 - kl10).max()),
            "max_overlap_difference_sum_eps": float(max(d_norm))}


def _pil_resize(frames) -> dict:
    """Maps (reference recipe) of frames resized to 299 by PIL bilinear vs ours, from 400 and 240 px crops."""
    import torch
    from PIL import Image

    from defocus_xai.defocus import estimate_defocus

    out = {}
    for native in (400, 240):
        crops = [Image.fromarray(f).resize((native, native), Image.BICUBIC) for f in frames]
        pil = np.stack([np.asarray(c.resize((299, 299), Image.BILINEAR)) for c in crops]).astype(np.float32) / 255
        t = torch.stack([torch.from_numpy(np.asarray(c)).permute(2, 0, 1).float() / 255 for c in crops])
        ours = torch.nn.functional.interpolate(t, size=(299, 299), mode="bilinear", antialias=True,
                                               align_corners=False).clamp(0, 1)
        m_pil = estimate_defocus(torch.from_numpy(pil).permute(0, 3, 1, 2), recipe="reference", device="cpu").dense
        m_ours = estimate_defocus(ours, recipe="reference", device="cpu").dense
        a, b = (np.asarray(m).reshape(len(frames), -1) for m in (m_pil, m_ours))
        ok = (a.std(axis=1) > 0) & (b.std(axis=1) > 0)
        r = np.array([np.corrcoef(x, y)[0, 1] for x, y in zip(a[ok], b[ok])])
        img_diff = float(np.abs(pil - ours.permute(0, 2, 3, 1).numpy()).mean())
        out[f"from_{native}px"] = {"n": int(ok.sum()), "median_r": float(np.median(r)), "min_r": float(r.min()),
                                   "image_mean_abs_diff": img_diff}
    return out


def _reference_effects(root: Path) -> dict:
    from defocus_xai import analysis as A

    index, frames, maps = _load_reference(root)
    labels = index.label.astype(int).to_numpy()
    video = index.video.to_numpy()
    res = {"n_real": int((labels == 0).sum()), "n_fake": int((labels == 1).sum()),
           "n_videos": int(index.video.nunique())}
    res["border_frames"] = _border(maps, labels)
    res["border_videos"] = _border(maps, labels, video[labels == 0], video[labels == 1])
    fake, real = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    k = min(fake.size, real.size)
    pairs = np.stack([fake[:k], real[:k]], axis=1)  # the notebook's index pairing (a formula check only)
    contrast = np.moveaxis(frames.astype(np.float64) / 255 - 0.5, -1, 1)  # signed RGB stand-in attribution
    res["eps"] = _eps(A.reduce_rgb(contrast[pairs[:, 0]], method="channel0"), maps, pairs)
    res["pil_resize"] = _pil_resize(frames)
    return res


def _wrapper(det, args, arr, pairs, n=24) -> dict:
    """shap_gradient with and without the paper's 224 wrapper on n fakes (data reference of 10 real maps)."""
    import torch

    import defocus_xai as dx
    from defocus_xai import analysis as A

    ref = dx.DefocusSynth(40, size=args.size, seed=0)
    bg = torch.stack([torch.as_tensor(np.asarray(ref[i]["image"])) for i in range(len(ref))
                      if int(ref[i]["label"]) == 0][:10]).float()
    sel = pairs[:n]
    maps = torch.as_tensor(arr["dmaps"][sel[:, 0]], dtype=torch.float32)[:, None]
    out = {}
    for wrapper in (None, "paper224"):
        a = dx.attribute(det, maps, background=bg, wrapper=wrapper, n_samples=args.n_shap, seed=0,
                         sample_indices=[int(i) for i in sel[:, 0]], inputs_are_maps=True).numpy()[:, 0]
        s = A.alignment_scores(a, real_maps=arr["dmaps"][sel[:, 1]], fake_maps=arr["dmaps"][sel[:, 0]],
                               n_permutations=0, n_boot=200)
        out[str(wrapper)] = {"attr": np.abs(a), "mean_overlap": s.mean_overlap}
    rho = [stats.spearmanr(x.ravel(), y.ravel())[0] for x, y in zip(out["None"]["attr"], out["paper224"]["attr"])]
    return {"n": int(len(sel)), "median_spearman_abs": float(np.median(rho)), "min_spearman_abs": float(np.min(rho)),
            "mean_overlap_ours": out["None"]["mean_overlap"], "mean_overlap_paper224": out["paper224"]["mean_overlap"]}


def _synth_effects(det, args, out: Path) -> dict:
    from defocus_xai import analysis as A
    from defocus_xai import pipeline as pl

    res = {}
    for bg in ("zeros", "data"):
        if not (out / f"align_{bg}").exists():
            continue
        arr, _ = pl.open_arrays(out / f"align_{bg}")
        pairs, _ = pl.store_pairs(arr)
        s = pl.PipelineSettings(n_boot=500, n_permutations=200, seed=0, max_examples=1)
        blk = {}
        for red in ("sum_abs", "channel0"):
            r = pl.stage_alignment(arr, s.replace(rgb_reduction=red), pairs=pairs)
            r.close()
            x = r.numbers["rgb"]
            blk[f"rgb_{red}"] = {"mean_overlap": x["mean_overlap"], "controls": x["controls"],
                                 "beats_all_controls": x["beats_all_controls"]}
        fi = pairs[:, 0]
        a3 = np.abs(arr["rgb_shaps"][fi])
        blk["rgb_channel_share_0"] = float(a3[:, 0].sum() / a3.sum())
        blk["eps"] = _eps(A.reduce_rgb(arr["defocus_shaps"][fi]), arr["dmaps"], pairs)
        lab = arr["labels"].astype(int)
        sid = arr["source_ids"].astype(str)
        blk["border"] = _border(arr["dmaps"], lab, sid[lab == 0], sid[lab == 1])
        if bg == "data":
            blk["wrapper"] = _wrapper(det, args, arr, pairs)
        res[bg] = blk
    return res


def settings_effects(det, args, out: Path) -> dict:
    """Every measured effect: ``reference`` (the reference frames) and ``synth`` (the stores of part (a))."""
    root = _reference_dir()
    return {"reference": _reference_effects(root) if root is not None else None,
            "synth": _synth_effects(det, args, out)}


def settings_table(e: dict) -> str:
    """The measured effects as Markdown lines."""
    L = []
    ref = e.get("reference")
    if ref:
        L.append(f"Reference frames: {ref['n_real']} real, {ref['n_fake']} fake ({ref['n_videos']} videos).")
        for unit in ("frames", "videos"):
            b = ref[f"border_{unit}"]
            L.append(f"- local variance ({unit}): zeros real {b['zeros']['mean_real']:.5f} / fake "
                     f"{b['zeros']['mean_fake']:.5f}, headline p {b['zeros']['p_headline']:.3g}; reflect real "
                     f"{b['reflect']['mean_real']:.5f} / fake {b['reflect']['mean_fake']:.5f}, headline p "
                     f"{b['reflect']['p_headline']:.3g}; reflect / zeros {b['reflect_over_zeros']:.3f}")
        x = ref["eps"]
        L.append(f"- eps (stand-in attribution, {x['n']} index pairs): mean KL {x['mean_kl_1e-8']:.4f} (1e-8) vs "
                 f"{x['mean_kl_1e-10']:.4f} (1e-10), max |dKL| {x['max_abs_kl_difference']:.3g}; the notebook's "
                 f"(sum + eps) normalization changes the overlap by at most {x['max_overlap_difference_sum_eps']:.2g}")
        for k, x in ref["pil_resize"].items():
            L.append(f"- PIL vs our resize {k}: image mean |diff| {x['image_mean_abs_diff']:.4f}; maps (reference "
                     f"recipe) Pearson r median {x['median_r']:.4f}, min {x['min_r']:.4f} (n = {x['n']})")
    for bg, blk in (e.get("synth") or {}).items():
        s0, c0 = blk["rgb_sum_abs"], blk["rgb_channel0"]
        L.append(f"- DefocusSynth, {bg} reference: RGB overlap sum|a_c| {s0['mean_overlap']:.3f} (beats all: "
                 f"{s0['beats_all_controls']}) vs channel 0 {c0['mean_overlap']:.3f} (beats all: "
                 f"{c0['beats_all_controls']}); channel 0 holds {100 * blk['rgb_channel_share_0']:.0f}% of |a|")
        x = blk["eps"]
        L.append(f"- DefocusSynth, {bg} reference, eps: mean KL {x['mean_kl_1e-8']:.4f} vs {x['mean_kl_1e-10']:.4f}, "
                 f"max |dKL| {x['max_abs_kl_difference']:.3g}; (sum + eps) overlap change <= "
                 f"{x['max_overlap_difference_sum_eps']:.2g}")
        b = blk["border"]
        L.append(f"- DefocusSynth, {bg} reference, border: zeros p {b['zeros']['p_headline']:.3g} (means "
                 f"{b['zeros']['mean_real']:.5f} / {b['zeros']['mean_fake']:.5f}), reflect p "
                 f"{b['reflect']['p_headline']:.3g}; reflect / zeros {b['reflect_over_zeros']:.3f}")
        if "wrapper" in blk:
            w = blk["wrapper"]
            L.append(f"- 224 wrapper ({w['n']} fakes): Spearman of |a| with vs without median "
                     f"{w['median_spearman_abs']:.3f} (min {w['min_spearman_abs']:.3f}); mean overlap "
                     f"{w['mean_overlap_ours']:.3f} (ours) vs {w['mean_overlap_paper224']:.3f} (paper224)")
    return "\n".join(L)
