"""DefocusSynth sanity checks: every family is detectable from its ground truth, no trivial cue.

Two classifiers per fake family, each trained on that family's fakes and the real images of
the same scenes (5-fold cross-validation grouped by ``source_id``, ROC AUC of the out-of-fold
scores):

* oracle: simple features of the TRUE sigma map and depth map (no image): sigma max, min, mean,
  std, fraction of sharp pixels, and the relative residual of the best thin-lens fit
  ``sigma = K |1/d - 1/d_f|`` over candidate focus distances. It should reach AUC ~1: the
  family's manipulation is visible in the ground truth.
* trivial cues: RGB statistics unrelated to blur: mean brightness and per-channel means
  ("means"); those plus per-channel stds and an 8-bin colour histogram per channel
  ("colour"); "colour" plus a sensor-noise estimate from the flattest 20 % of pixels
  ("colour+flat-noise", MAD of a high-pass residual); "colour" plus Immerkaer's whole-image
  high-pass noise estimate ("colour+hp-noise"). Real and fake of a scene share the noise
  realization and JPEG quality, so whatever separates them is a side effect of blur: stds,
  histograms and above all high-pass residuals also measure sharpness, and are expected to
  separate the families whose manipulation is global blur (no_dof, generator_smoothing).
  "means" should stay at chance everywhere, "colour" near it for splice/depth_inconsistent.
* processing cues (``--version 2.0``; no colour, no blur statistic): the flat-region noise
  estimate, the ratio of that estimate in the image centre (where the subject's face is) to the
  border, and JPEG blockiness (mean jump across 8x8 block boundaries over the mean jump inside
  blocks, from rows and columns). They measure the non-blur traces a family leaves: ``face_swap``
  carries a generated face with its own noise and a second compression.

Also, on the REAL images of the first ``--estimator-scenes`` scenes, the error of the defocus
estimator (``dx.estimate_defocus(..., size=None)``, default parameters, sigma in pixels of the
image grid) against the true sigma map:

* sparse: at the estimator's edge pixels, median absolute error and median signed error (bias),
  over all edge pixels and over "clean" ones (the true sigma varies by less than 0.25 px within
  +-(3 max sigma + 2) px, i.e. away from depth discontinuities, where the blur is a mixture);
* dense: mean absolute error over all pixels (mean of per-image MAE) and Pearson r (median of
  per-image r);
* baselines: each image's median true sigma predicted everywhere (an oracle constant), for the
  same pixels.

Usage: ``OMP_NUM_THREADS=1 python bench/synth_checks.py [--scenes 800] [--size 128]
[--estimator-scenes 200] [--version 2.0]``; prints Markdown tables (paste into
bench/results_synth.md).
"""

import argparse
import time

import numpy as np
import torch
from scipy import ndimage
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import defocus_xai as dx
from defocus_xai.data.synth import DefocusSynth


def thin_lens_fit_residual(sigma, depth, n_cand=96, stride=3):
    """Relative RMS residual of the best fit sigma = K |1/d - 1/d_f| (K >= 0, d_f searched)."""
    s = sigma[::stride, ::stride].ravel().astype(np.float64)
    u = 1.0 / depth[::stride, ::stride].ravel().astype(np.float64)
    cands = np.unique(np.concatenate([np.unique(np.round(u, 6)), np.quantile(u, np.linspace(0, 1, n_cand))]))
    if len(cands) > 400:
        cands = np.quantile(cands, np.linspace(0, 1, 400))
    a = np.abs(u[None, :] - cands[:, None])
    k = np.clip((a @ s) / np.maximum((a * a).sum(1), 1e-12), 0, None)
    rms = np.sqrt(((s[None, :] - k[:, None] * a) ** 2).mean(1)).min()
    return rms / (s.std() + 0.05)


def oracle_features(sigma, depth):
    return np.array([sigma.max(), sigma.min(), sigma.mean(), sigma.std(), (sigma < 0.1).mean(),
                     thin_lens_fit_residual(sigma, depth)])


_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)


def noise_estimate(gray):
    """Immerkaer (1996) noise standard deviation from the Laplacian-difference residual."""
    h, w = gray.shape
    r = ndimage.convolve(gray.astype(np.float64), _IMMERKAER)[1:-1, 1:-1]
    return np.sqrt(np.pi / 2) * np.abs(r).sum() / (6 * (w - 2) * (h - 2))


def flat_noise_estimate(gray, quantile=0.2):
    """Noise std from the residual's MAD over the flattest pixels (smallest smoothed gradient).

    Restricted to flat regions it measures the sensor noise, not the image's sharpness.
    """
    r = ndimage.convolve(gray.astype(np.float64), _IMMERKAER)[1:-1, 1:-1] / 6.0
    g = ndimage.gaussian_gradient_magnitude(gray.astype(np.float64), 1.5)[1:-1, 1:-1]
    flat = g <= np.quantile(g, quantile)
    # the kernel's noise gain is sqrt(36) / 6 = 1: MAD -> std with 1.4826
    return 1.4826 * np.median(np.abs(r[flat] - np.median(r[flat])))


def processing_features(gray):
    """Non-blur processing cues: flat-region noise, its centre / border ratio, JPEG blockiness."""
    n = gray.shape[0]
    c0, c1 = n // 4, 3 * n // 4
    centre = flat_noise_estimate(gray[c0:c1, c0:c1])
    border = flat_noise_estimate(np.concatenate([gray[:c0], gray[c1:]], axis=0))
    dx = np.abs(np.diff(gray.astype(np.float64), axis=1))
    dy = np.abs(np.diff(gray.astype(np.float64), axis=0))
    at = (np.arange(dx.shape[1]) % 8) == 7
    block = (dx[:, at].mean() + dy[at, :].mean()) / (dx[:, ~at].mean() + dy[~at, :].mean() + 1e-9)
    return np.array([flat_noise_estimate(gray), centre / (border + 1e-6), block])


def colour_features(img):
    feats = [img.mean()]
    feats += list(img.mean(axis=(1, 2))) + list(img.std(axis=(1, 2)))
    for c in range(3):
        hist, _ = np.histogram(img[c], bins=8, range=(0, 1))
        feats += list(hist / hist.sum())
    return np.array(feats)


def cv_auc(X, y, groups, model):
    folds = GroupKFold(n_splits=5)
    p = cross_val_predict(model, X, y, groups=groups, cv=folds, method="predict_proba")[:, 1]
    return roc_auc_score(y, p)


def estimator_errors(images, sigmas, batch=32):
    """Sparse and dense error of ``dx.estimate_defocus`` against the true sigma maps."""
    imgs = torch.stack(images)
    est = {"dense": [], "sparse": [], "edges": []}
    for i in range(0, len(imgs), batch):
        r = dx.estimate_defocus(imgs[i:i + batch], size=None, device="cpu")
        for k in est:
            est[k].append(getattr(r, k)[:, 0].numpy())
    dense, sparse, edges = (np.concatenate(est[k]) for k in ("dense", "sparse", "edges"))
    edges = edges > 0
    truth = np.stack([t[0].numpy() for t in sigmas]).astype(np.float64)
    rows = {"all": [], "clean": []}
    base = {"all": [], "clean": []}
    maes, rs, base_mae = [], [], []
    for d, sp, e, t in zip(dense, sparse, edges, truth):
        med = np.median(t)
        reach = int(np.ceil(3 * t.max() + 2))
        size = 2 * reach + 1
        rng = ndimage.maximum_filter(t, size) - ndimage.minimum_filter(t, size)
        for key, sel in (("all", e), ("clean", e & (rng < 0.25))):
            rows[key].append(sp[sel] - t[sel])
            base[key].append(med - t[sel])
        maes.append(np.abs(d - t).mean())
        base_mae.append(np.abs(med - t).mean())
        rs.append(np.corrcoef(d.ravel(), t.ravel())[0, 1] if d.std() > 0 and t.std() > 0
                  else np.nan)
    out = {}
    for key in rows:
        err, b = np.concatenate(rows[key]), np.concatenate(base[key])
        out[key] = dict(n=err.size, medae=float(np.median(np.abs(err))),
                        bias=float(np.median(err)), base_medae=float(np.median(np.abs(b))))
    out["dense_mae"] = float(np.mean(maes))
    out["dense_r"] = float(np.nanmedian(rs))
    out["base_mae"] = float(np.mean(base_mae))
    out["n_images"] = len(images)
    out["edge_frac"] = float(edges.mean())
    return out


def models():
    return {
        "logreg": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)),
        "gboost": lambda: HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1, random_state=0),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=800, help="scenes (each gives a real and a fake)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--estimator-scenes", type=int, default=200,
                    help="real images for the estimator error table (0: skip)")
    ap.add_argument("--version", default=None, help="DefocusSynth version (default: the library's default)")
    args = ap.parse_args(argv)

    ds = DefocusSynth(2 * args.scenes, size=args.size, seed=args.seed, version=args.version)
    t0 = time.time()
    rows = []
    real_images, real_sigmas = [], []
    for i in range(len(ds)):
        s = ds[i]
        sig, dep, img = s["sigma"][0].numpy(), s["depth"][0].numpy(), s["image"].numpy()
        if s["label"] == 0 and len(real_images) < args.estimator_scenes:
            real_images.append(s["image"])
            real_sigmas.append(s["sigma"])
        gray = img.mean(0)
        rows.append({
            "family_of_pair": ds.sample_families[i | 1] if i % 2 == 0 else s["family"],
            "label": s["label"], "source_id": s["source_id"],
            "oracle": oracle_features(sig, dep),
            "colour": colour_features(img),
            "noise": np.array([noise_estimate(gray)]),
            "flat_noise": np.array([flat_noise_estimate(gray)]),
            "processing": processing_features(gray),
        })
    t_render = time.time() - t0

    out = ["| family | pairs | oracle logreg | oracle gboost | means logreg | means gboost | colour logreg "
           "| colour gboost | colour+flat-noise logreg | colour+flat-noise gboost | colour+hp-noise logreg "
           "| colour+hp-noise gboost | processing logreg | processing gboost |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for fam in ds.families:
        sub = [r for r in rows if r["family_of_pair"] == fam]
        y = np.array([r["label"] for r in sub])
        g = np.array([r["source_id"] for r in sub])
        feats = {
            "oracle": np.stack([r["oracle"] for r in sub]),
            "means": np.stack([r["colour"][:4] for r in sub]),
            "colour": np.stack([r["colour"] for r in sub]),
            "colour+flat-noise": np.stack([np.concatenate([r["colour"], r["flat_noise"]]) for r in sub]),
            "colour+hp-noise": np.stack([np.concatenate([r["colour"], r["noise"]]) for r in sub]),
            "processing": np.stack([r["processing"] for r in sub]),
        }
        cells = []
        for name in ("oracle", "means", "colour", "colour+flat-noise", "colour+hp-noise", "processing"):
            for mk in models().values():
                cells.append(f"{cv_auc(feats[name], y, g, mk()):.3f}")
        out.append(f"| {fam} | {len(sub) // 2} | " + " | ".join(cells) + " |")
    print(f"rendered {len(ds)} samples ({args.size}x{args.size}, seed {args.seed}, DefocusSynth {ds.version}) "
          f"in {t_render:.0f} s\n")
    print("ROC AUC, 5-fold CV grouped by source_id (fakes of one family vs the reals of the same scenes)\n")
    print("\n".join(out))

    if real_images:
        t = time.time()
        e = estimator_errors(real_images, real_sigmas)
        print(f"\nDefocus estimator on {e['n_images']} REAL images ({args.size}x{args.size}, "
              f"size=None, default parameters; {time.time() - t:.0f} s; edge pixels "
              f"{100 * e['edge_frac']:.1f}% of all pixels)\n")
        print("| pixels | n | median abs error (px) | bias (median signed, px) "
              "| constant-median baseline, median abs error (px) |")
        print("|---|---:|---:|---:|---:|")
        for key, label in (("all", "sparse, all edge pixels"),
                           ("clean", "sparse, clean edge pixels (away from depth jumps)")):
            r = e[key]
            print(f"| {label} | {r['n']} | {r['medae']:.3f} | {r['bias']:+.3f} | "
                  f"{r['base_medae']:.3f} |")
        print(f"\ndense: MAE {e['dense_mae']:.3f} px (constant-median baseline "
              f"{e['base_mae']:.3f} px), Pearson r {e['dense_r']:.3f} (median over images)")


if __name__ == "__main__":
    main()
