"""Inference speed of the detectors: images per second at 299 x 299.

Measures ``bundled-defocus`` (defocus map estimation + SmallCNN), ``bundled-rgb`` (resize + SmallCNN) and a
randomly initialized ``timm`` ``legacy_xception`` with one logit (the reference backbone; the speed does
not depend on the weights) on 299 x 299 images, batch sizes 1 and 16, on the CPU and, when available, on
CUDA. Every configuration is warmed up, then timed ``--repeats`` times (median and min reported).

The bundled detectors were trained at 128 px: at 299 px the estimator runs at its configured size (128)
for ``bundled-defocus`` and the RGB model resizes to 128, so their cost includes that resizing; the
Xception runs at full 299 px. ``--native`` feeds each model its native size instead (128 for the bundled
ones).

Usage::

    OMP_NUM_THREADS=2 python bench/detector_speed.py --threads 2 --out bench/results_detect_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings

import torch


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def time_model(model, batch, size, device, repeats, warmup=2):
    x = torch.rand(batch, 3, size, size, device=device)
    model.to(device).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(warmup):
            model(x)
        _sync(device)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"batch": batch, "size": size, "device": str(device), "median_s": med, "min_s": min(times),
            "images_per_s": batch / med, "repeats": repeats}


def build_models():
    from defocus_xai.detect import RGBDetector, load_detector

    models = {"bundled-defocus": load_detector("bundled-defocus", device="cpu"),
              "bundled-rgb": load_detector("bundled-rgb", device="cpu")}
    try:
        models["legacy_xception"] = RGBDetector("legacy_xception", input_size=None)  # pretrained=False
    except Exception as exc:  # timm missing
        print(f"skipping legacy_xception: {exc}")
    return models


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=299)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--native", action="store_true", help="feed the bundled models 128 px images")
    p.add_argument("--models", nargs="+", default=None,
                   help="subset of bundled-defocus bundled-rgb legacy_xception (default: all)")
    p.add_argument("--no-cuda", action="store_true")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.no_cuda:
        devices.append(torch.device("cuda"))
    rows = []
    for name, model in build_models().items():
        if args.models and name not in args.models:
            continue
        size = 128 if args.native and name.startswith("bundled") else args.size
        for device in devices:
            for b in args.batches:
                r = time_model(model, b, size, device, args.repeats)
                r["model"] = name
                rows.append(r)
                print(f"{name:16s} {r['device']:5s} batch {b:3d} {size} px: {r['images_per_s']:8.1f} img/s "
                      f"(median {r['median_s'] * 1e3:.1f} ms, min {r['min_s'] * 1e3:.1f} ms)", flush=True)
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or
            platform.machine(), "cuda": torch.cuda.get_device_name(0) if len(devices) > 1 else None}
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": info, "rows": rows}, f, indent=2)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
