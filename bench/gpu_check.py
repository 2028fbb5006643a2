"""GPU readiness check: the CUDA tests and the speed benches in one run, within 8 minutes.

Run from the repository root on a fresh machine, after ``pip install -c constraints.txt -e ".[test]"``::

    python bench/gpu_check.py                       # on the GPU; writes bench/results_gpu.md
    python bench/gpu_check.py --device cpu --quick --out /tmp/gpu_dry.md   # dry run (< 1 minute)

Steps, each in its own subprocess with its own time limit (a step that fails or runs out of time is
recorded as such and the next one runs):

1. ``tests``: ``pytest -m cuda`` over the test files that hold CUDA tests (dry run: collection only);
2. ``estimator``: ``estimate_defocus`` (recipe "ours") at 299 px, batch 32, against the reference code's
   structure (``bench/defocus_speed.py``'s baseline: scikit-image Canny per sample on the CPU, conv2d
   and the guided filter on the device), interleaved, medians;
3. ``detectors``: images/s of the bundled detectors and a reference-layout Xception at 299 px;
4. ``export``: ``export_attributions`` of a defocus Xception at 299 px (maps repeated to 3 channels,
   as the reference feeds it), ``shap_gradient``, a few images.

The results file records the device, torch / CUDA versions, each step's status, wall time and numbers.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = {"tests": 180, "estimator": 90, "detectors": 90, "export": 110}   # seconds, 470 in all
QUICK = {"batch": 4, "repeats": 1, "det_batch": 1, "n_export": 2, "n_samples": 2, "size": 96}
FULL = {"batch": 32, "repeats": 5, "det_batch": 16, "n_export": 8, "n_samples": 50, "size": 299}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, device: str, repeats: int) -> list[float]:
    fn()                                    # warm-up (kernels, caches)
    _sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def step_estimator(device: str, p: dict) -> dict:
    """Maps/s of ``estimate_defocus`` and of the reference code's structure, interleaved."""
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from defocus_speed import make_scenes, run_reference_code

    import defocus_xai as dx

    x = make_scenes(p["batch"], p["size"])[0].to(device)
    fns = {"ours": lambda: dx.estimate_defocus(x, recipe="ours", size=p["size"], device=device),
           "reference code": lambda: run_reference_code(x, device)}
    times = {k: [] for k in fns}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, f in fns.items():
            f()
        for _ in range(p["repeats"]):
            for k, f in fns.items():
                times[k] += _timed(f, device, 1)
    rate = {k: round(p["batch"] / statistics.median(v), 1) for k, v in times.items()}
    return {"batch": p["batch"], "size": p["size"], "maps_per_s": rate,
            "ratio": round(rate["ours"] / rate["reference code"], 2)}


def step_detectors(device: str, p: dict) -> dict:
    """Images/s of each detector at ``size`` px (random Xception weights: speed only)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import torch
    from detector_speed import build_models, time_model

    rows = {}
    for name, model in build_models().items():
        r = time_model(model, p["det_batch"], p["size"], torch.device(device), p["repeats"])
        rows[name] = round(r["images_per_s"], 2)
    return {"batch": p["det_batch"], "size": p["size"], "images_per_s": rows}


def step_export(device: str, p: dict) -> dict:
    """Seconds and images/s of a shap_gradient export with a reference-layout defocus Xception."""
    import torch

    from defocus_xai.detect import DefocusDetector
    from defocus_xai.explain import export_attributions

    det = DefocusDetector("legacy_xception", estimator={"size": p["size"]}, map_channels=3)
    gen = torch.Generator().manual_seed(0)
    data = [{"image": torch.rand(3, p["size"], p["size"], generator=gen), "label": i % 2,
             "path": f"img{i}.png"} for i in range(p["n_export"])]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        export_attributions(det, data, Path(tmp) / "x.npz", methods=("shap_gradient",),
                            background=min(2, p["n_export"]), n_samples=p["n_samples"],
                            batch_size=4, progress=False, device=device)
        dt = time.perf_counter() - t0
    return {"n": p["n_export"], "n_samples": p["n_samples"], "size": p["size"], "seconds": round(dt, 2),
            "images_per_s": round(p["n_export"] / dt, 3)}


STEPS = {"estimator": step_estimator, "detectors": step_detectors, "export": step_export}


def _cuda_test_files() -> list[str]:
    return sorted(str(f.relative_to(ROOT)) for f in (ROOT / "tests").glob("test_*.py")
                  if "mark.cuda" in f.read_text())


def run_tests(device: str, quick: bool, limit: float) -> dict:
    files = _cuda_test_files()
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files]
    if device == "cpu":
        cmd.append("--collect-only")        # dry run: the selection works; nothing to run without CUDA
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
        tail = (r.stdout + r.stderr).strip().splitlines()[-1:]
        status = "ok" if r.returncode == 0 else f"failed (exit {r.returncode})"
    except subprocess.TimeoutExpired:
        tail, status = [], f"timed out after {limit:.0f} s"
    return {"status": status, "seconds": round(time.perf_counter() - t0, 1),
            "result": {"files": files, "summary": tail[0] if tail else ""}}


def run_step(name: str, device: str, quick: bool, limit: float) -> dict:
    cmd = [sys.executable, __file__, "--step", name, "--device", device] + (["--quick"] if quick else [])
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {limit:.0f} s", "seconds": round(limit, 1), "result": None}
    dt = round(time.perf_counter() - t0, 1)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        err = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": f"failed (exit {r.returncode}): {err}", "seconds": dt, "result": None}
    return {"status": "ok", "seconds": dt, "result": json.loads(lines[-1])}


def machine(device: str) -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        info["load"] = round(os.getloadavg()[0], 1)
    except OSError:
        pass
    return info


def render(info: dict, rows: dict, total: float, quick: bool) -> str:
    lines = ["# GPU check (`bench/gpu_check.py`)", "",
             f"- date: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
             f"- command: `python {' '.join(sys.argv)}`" + (" (dry run: small sizes)" if quick else ""),
             f"- machine: {json.dumps(info)}", f"- total wall time {total:.0f} s", "",
             "| step | status | wall (s) | result |", "|---|---|---:|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['status']} | {r['seconds']} | `{json.dumps(r['result'])}` |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (dry run)")
    ap.add_argument("--quick", action="store_true", help="small sizes (a dry run of the script)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_gpu.md"))
    ap.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    params = QUICK if args.quick else FULL
    if args.step:                            # a worker: one step, its JSON on the last stdout line
        print(json.dumps(STEPS[args.step](args.device, params)))
        return 0
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("no CUDA device: run with --device cpu --quick for a dry run")
    scale = 0.25 if args.quick else 1.0
    t0 = time.perf_counter()
    rows = {"tests": run_tests(args.device, args.quick, BUDGETS["tests"] * scale)}
    print(f"tests: {rows['tests']['status']}", flush=True)
    for name in STEPS:
        rows[name] = run_step(name, args.device, args.quick, BUDGETS[name] * (0.5 if args.quick else 1))
        print(f"{name}: {rows[name]['status']} ({rows[name]['seconds']} s)", flush=True)
    text = render(machine(args.device), rows, time.perf_counter() - t0, args.quick)
    Path(args.out).write_text(text)
    print(text)
    return 0 if all(r["status"] == "ok" for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
