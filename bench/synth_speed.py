"""DefocusSynth rendering speed: samples per second in one process.

Usage: ``OMP_NUM_THREADS=1 python bench/synth_speed.py [--n 400] [--size 128] [--workers 0] [--version 2.0]``.
Renders samples 0..n-1 of ``DefocusSynth(n, size=size)`` (real/fake pairs, all families, JPEG
75-95) after one warm-up sample (imports and the photo cache), and prints samples/s overall
and per family, plus the extrapolated time for 10,000 samples. ``--workers K`` also times a
``torch.utils.data.DataLoader`` with K worker processes.
"""

import argparse
import collections
import os
import platform
import time

import torch

from defocus_xai.data.synth import DefocusSynth, render_scene


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--version", default=None, help="DefocusSynth version (default: the library's default)")
    args = ap.parse_args(argv)

    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    render_scene(size=args.size, seed=0, version=args.version)
    warm = time.perf_counter() - t
    ds = DefocusSynth(args.n, size=args.size, seed=1, version=args.version)
    per = collections.defaultdict(list)
    t0 = time.perf_counter()
    for i in range(len(ds)):
        t = time.perf_counter()
        s = ds[i]
        per[s["family"]].append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    rate = args.n / total
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load avg {os.getloadavg()[0]:.1f} at the end "
          f"({load0:.1f} at the start)")
    print(f"first sample (imports, photo cache): {warm:.2f} s")
    print(f"DefocusSynth {ds.version}: {args.n} samples {args.size}x{args.size}, 1 process: {rate:.1f} samples/s; "
          f"10,000 samples: {10000 / rate / 60:.1f} min")
    for fam, ts in sorted(per.items()):
        print(f"  {fam:20s} {len(ts) / sum(ts):6.1f} samples/s")
    if args.workers:
        loader = torch.utils.data.DataLoader(ds, batch_size=32, num_workers=args.workers)
        t = time.perf_counter()
        n = sum(len(b["label"]) for b in loader)
        dt = time.perf_counter() - t
        print(f"DataLoader, {args.workers} workers: {n / dt:.1f} samples/s")


if __name__ == "__main__":
    main()
