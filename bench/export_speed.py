"""Export speed and memory: the reference per-image shap loop versus ``export_attributions``.

Part 1 (speed, one process, variants interleaved, median of ``--repeats``):

* ``reference+fig``: ``shap.GradientExplainer`` called on one map at a time (its default batch of 50
  draws), a 3-panel matplotlib figure saved per image, results held in lists and written at the end
  as object arrays -- the reference notebook's loop (its Shapley export cell);
* ``reference``: the same loop without the figure;
* ``ours (batched)``: ``export_attributions`` with ``shap_gradient`` through the default batched engine
  (shap's draws and estimator, all samples x draws of a batch in passes of 64 rows, BatchNorm folded,
  ``channels_last``), to sharded ``.npz`` files;
* ``ours (shap)``: the same export through the shap engine (``GradientExplainer`` per image);
* ``floor``: only the forward + ``autograd.grad`` passes the estimator needs (n_samples per image, 64 rows
  per pass, on the folded ``channels_last`` copy), no maps, no draws, no I/O: what any engine must spend
  at these settings on this machine.

All use the same detector, background (the first 10 samples' maps), ``n_samples`` and images; the
images are rendered before timing. Peak RSS of each variant is measured in a fresh process
(``VmHWM`` of ``/proc/self/status``; ``resource.getrusage`` ``ru_maxrss`` elsewhere), since a process's peak cannot be split.

Part 2 (memory versus N): ``export_attributions`` with ``saliency`` on N = 1,000 and N = 10,000 small
images (32 x 32, generated on the fly), each N in a fresh process; peak RSS.

Usage::

    OMP_NUM_THREADS=2 python bench/export_speed.py --threads 2 --n-images 16 --n-samples 50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _detector(size):
    from defocus_xai.detect.checkpoints import load_detector

    try:
        det = load_detector("bundled-defocus", device="cpu")
        return det, "bundled-defocus"
    except (FileNotFoundError, ValueError):
        import torch

        from defocus_xai.detect import DefocusDetector

        torch.manual_seed(0)
        det = DefocusDetector("small-cnn", estimator={"size": size}).eval()
        return det, f"DefocusDetector(small-cnn, size={size}, random weights; bundled weights missing)"


class _Cached:
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _images(n, size):
    from defocus_xai.data.synth import DefocusSynth

    ds = DefocusSynth(n, size=size, seed=0)
    items = []
    for i in range(n):
        s = ds[i]  # rendered once, before any timing
        items.append({k: s[k] for k in ("image", "label", "path", "source_id", "family") if k in s})
    return _Cached(items)


def _reference_loop(det, data, bg_maps, n_samples, figure, out_dir):
    """The reference notebook's way, with our detector: one image at a time."""
    import shap
    import torch

    from defocus_xai.explain.engines import Explained

    explainer = shap.GradientExplainer(Explained(det, "defocus", None), bg_maps)
    dmaps, shaps = [], []
    for i in range(len(data)):
        img = data[i]["image"][None]
        with torch.no_grad():
            m = det.map_from_images(img)
        sv = explainer.shap_values(m, nsamples=n_samples)
        dmaps.append(m[0, 0].numpy())
        shaps.append(np.asarray(sv)[0, 0, :, :, 0])
        if figure:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(1, 3, figsize=(9, 3))
            ax[0].imshow(img[0].permute(1, 2, 0).numpy())
            ax[1].imshow(dmaps[-1], cmap="gray")
            v = np.abs(shaps[-1]).max() + 1e-12
            ax[2].imshow(shaps[-1], cmap="bwr", vmin=-v, vmax=v)
            for a in ax:
                a.axis("off")
            fig.savefig(Path(out_dir) / f"shap_{i:05d}.png", dpi=100)
            plt.close(fig)
    obj = lambda xs: np.array(xs + [None], dtype=object)[:-1]  # noqa: E731  (object arrays, as the reference)
    np.savez(Path(out_dir) / "shap_data.npz", dmaps=obj(dmaps), defocus_shaps=obj(shaps))


def _floor(det, n_images, n_samples, size):
    import torch

    from defocus_xai.explain.engines import Explained
    from defocus_xai.explain.engines.fast_copy import fast_detector

    probe = torch.rand(2, 1, size, size)
    fast, _ = fast_detector(det, "defocus", None, probe)
    net = Explained(fast, "defocus", None)
    total = n_images * n_samples
    for r0 in range(0, total, 64):
        z = torch.rand(min(64, total - r0), 1, size, size).contiguous(memory_format=torch.channels_last)
        z.requires_grad_(True)
        torch.autograd.grad(net(z).sum(), z)


def flops_per_draw(det, size):
    """Multiply-adds of one forward pass of the backbone (Conv2d, Linear), times 2 for FLOPs."""
    import torch
    from torch import nn

    macs = []

    def hook(m, i, o):
        if isinstance(m, nn.Conv2d):
            macs.append(o.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, nn.Linear):
            macs.append(o.numel() * m.in_features)

    hs = [m.register_forward_hook(hook) for m in det.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            det.forward_map(torch.rand(1, 1, size, size))
    finally:
        for h in hs:
            h.remove()
    return 2 * sum(macs)


def _ours(det, data, bg_images, n_samples, engine, out_dir, batch_size):
    from defocus_xai.explain import export_attributions

    export_attributions(det, data, out_dir, methods=("shap_gradient",), background=bg_images, n_samples=n_samples,
                        engine=engine, batch_size=batch_size, progress=False, resume=False)


VARIANTS = ("reference+fig", "reference", "ours (batched)", "ours (shap)", "floor")


def run_variant(name, det, data, bg_images, n_samples, batch_size):
    import torch

    with torch.no_grad():
        bg_maps = det.map_from_images(bg_images)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        if name == "reference+fig":
            _reference_loop(det, data, bg_maps, n_samples, True, d)
        elif name == "reference":
            _reference_loop(det, data, bg_maps, n_samples, False, d)
        elif name == "ours (batched)":
            _ours(det, data, bg_images, n_samples, "batched", d, batch_size)
        elif name == "ours (shap)":
            _ours(det, data, bg_images, n_samples, "shap", d, batch_size)
        else:
            _floor(det, len(data), n_samples, bg_maps.shape[-1])
        return time.perf_counter() - t


def _setup(args):
    import torch

    torch.set_num_threads(args.threads)
    det, det_name = _detector(args.size)
    data = _images(args.n_images + 10, args.size)
    bg_images = torch.stack([data[i]["image"] for i in range(10)])
    return det, det_name, _Cached(data.items[10:]), bg_images


def _maxrss_mb():
    """Peak resident memory of this process in MiB.

    ``VmHWM`` from ``/proc/self/status`` on Linux: ``ru_maxrss`` survives ``exec`` there, so a child
    started from a big parent would report the parent's peak. Elsewhere ``ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20


def child_speed_rss(args):
    det, _, data, bg = _setup(args)
    import shap  # noqa: F401  (import cost outside the timing)
    import captum.attr  # noqa: F401
    base = _maxrss_mb()
    dt = run_variant(args.variant, det, data, bg, args.n_samples, args.batch_size)
    print(json.dumps({"variant": args.variant, "seconds": dt, "peak_rss_mb": _maxrss_mb(),
                      "rss_before_mb": base}))


class _Toy:
    def __init__(self, n, size=32):
        self.n, self.size = n, size

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        import torch

        rng = np.random.default_rng(i)
        return {"image": torch.from_numpy(rng.random((3, self.size, self.size), dtype=np.float32)),
                "label": i % 2, "path": f"toy/{i}"}


def child_rss_n(args):
    import torch

    from defocus_xai.detect import DefocusDetector
    from defocus_xai.explain import export_attributions

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    det = DefocusDetector("small-cnn", estimator={"size": 32}).eval()
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        export_attributions(det, _Toy(args.n), d, methods=("saliency",), batch_size=64, chunk_size=256,
                            progress=False)
        dt = time.perf_counter() - t
    print(json.dumps({"n": args.n, "seconds": dt, "peak_rss_mb": _maxrss_mb()}))


def _child(argv):
    env = {**os.environ, "OMP_NUM_THREADS": str(argv_threads(argv)), "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def argv_threads(argv):
    return argv[argv.index("--threads") + 1] if "--threads" in argv else "1"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=8)
    ap.add_argument("--n-samples", type=int, default=50)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rss-ns", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_export.json")))
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        return child_speed_rss(args)
    if args.n:
        return child_rss_n(args)

    det, det_name, data, bg = _setup(args)
    import captum.attr  # noqa: F401
    import shap  # noqa: F401

    times = {v: [] for v in VARIANTS}
    for v in ("ours (batched)", "reference"):  # warm-up (and the batched engine's cached copy)
        run_variant(v, det, _Cached(data.items[:2]), bg, args.n_samples, args.batch_size)
    for _ in range(args.repeats):
        for v in VARIANTS:
            times[v].append(run_variant(v, det, data, bg, args.n_samples, args.batch_size))
    common = ["--n-images", str(args.n_images), "--n-samples", str(args.n_samples), "--size", str(args.size),
              "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    rss = {v: _child(common + ["--variant", v]) for v in VARIANTS if v != "floor"}
    rss_n = [_child(["--n", str(n), "--threads", str(args.threads)]) for n in args.rss_ns]
    res = {
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus, "
                   f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "detector": det_name, "threads": args.threads, "n_images": args.n_images, "n_samples": args.n_samples,
        "size": args.size, "load_avg": os.getloadavg(),
        "flops_per_image_fwd_only": flops_per_draw(det, args.size) * args.n_samples,
        "speed": {v: {"median_s": statistics.median(t), "images_per_s": args.n_images / statistics.median(t),
                      "all_s": t, "peak_rss_mb_fresh_process": rss.get(v, {}).get("peak_rss_mb")}
                  for v, t in times.items()},
        "load_avg_end": os.getloadavg(),
        "rss_vs_n": rss_n,
    }
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
