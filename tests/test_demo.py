"""``defocus-xai demo`` end to end at a tiny N: every file the report links exists, every number is finite."""

import json
import math
import re

import pytest
import torch

from defocus_xai.cli import main
from defocus_xai.detect import DefocusDetector, RGBDetector, save_detector
from defocus_xai.pipeline import DEFAULT_N, run_demo
from defocus_xai.store import load_attributions
from defocus_xai.data.synth import FAMILIES_V2, SYNTH_VERSION

torch.set_num_threads(1)


def _tiny_detectors(tmp_path):
    """Untrained small detectors at 32 px saved as checkpoints (the bundled ones are larger)."""
    torch.manual_seed(0)
    det = DefocusDetector("small-cnn", estimator={"size": 32}, widths=(4, 8)).eval()
    rgb = RGBDetector("small-cnn", input_size=32, widths=(4, 8)).eval()
    return (save_detector(det, tmp_path / "det.pt", training_data="none (test)"),
            save_detector(rgb, tmp_path / "rgb.pt", training_data="none (test)"))


def _finite_numbers(obj, where="results"):
    """Every number in a JSON document is finite (NaN is written as null and listed)."""
    bad = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            bad += _finite_numbers(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            bad += _finite_numbers(v, f"{where}[{i}]")
    elif isinstance(obj, float) and not math.isfinite(obj):
        bad.append(where)
    return bad


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    det, rgb = _tiny_detectors(tmp_path)
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--n", "16", "--device", "cpu", "--detector", str(det),
            "--rgb-detector", str(rgb), "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count(f"Open {out / 'report.md'}") == 1  # the summary is printed once
    assert printed.count("defocus-xai demo: done") == 1

    report = (out / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", report)
    assert len(links) >= 20
    for link in links:
        assert (out / link).is_file(), link
    for stem in ("defocus_maps", "mask_example_0", "activation_curve", "variance_example_0", "variance_distributions",
                 "embedding", "alignment_example_0", "alignment_comparison", "localization", "localization_example",
                 "randomization", "faithfulness"):
        for fmt in ("png", "pdf"):
            assert f"figures/{stem}.{fmt}" in links, (stem, fmt)
    # the numbers printed in the report are finite
    assert not re.search(r"\b(nan|inf)\b", report, flags=re.IGNORECASE), "NaN/inf in report.md"

    results = json.loads((out / "results.json").read_text())
    for section in ("settings", "defocus_maps", "detection", "export", "masks", "variance", "embedding",
                    "alignment", "localization", "randomization", "faithfulness", "timings"):
        assert results.get(section) is not None, section
    a = results["alignment"]
    for model in ("defocus", "rgb"):
        x = a[model]
        assert 0.0 <= x["ci_low"] <= x["mean_overlap"] <= x["ci_high"] <= 1.0
        assert x["baseline_mean_overlap"] is not None and x["n"] > 0
    assert set(results["localization"]) == {"defocus SHAP", "rgb SHAP", "random"}
    # metrics of one class only are legitimately undefined; everything else must be finite
    checked = {k: v for k, v in results.items() if k != "detection"}
    assert _finite_numbers(checked) == []
    det_json = json.loads((out / "detection.json").read_text())
    assert set(det_json) == {"defocus", "rgb"}
    for d in det_json.values():
        assert math.isfinite(d["overall"]["roc_auc"])
    csv = (out / "detection.csv").read_text().splitlines()
    assert csv[0].startswith("detector,group") and len(csv) == 1 + 2 * (len(FAMILIES_V2) + 1)  # families + all

    # deterministic: the same seed gives the same numbers
    # every example is identified in the report (index, family, source id), and the store names its samples
    assert re.search(r"#\d+, splice, source synth-[0-9a-f]+", report)
    store = load_attributions(out / "attributions")
    assert list(store["paths"][:2]) == ["synth:1:0", "synth:1:1"]
    assert results["variance"]["unit"] == "group"  # the test was given the source ids as groups
    assert results["embedding"]["defocus"]["cv"] == "group"  # kNN cross-validated with whole sources per fold
    assert set(results["alignment"]["defocus"]["controls"]) == {"permutation", "map_value", "uniform"}
    assert "attribution reference: 10 real training images" in report  # the SHAP background is stated
    assert results["settings"]["data_version"] == SYNTH_VERSION and f"DefocusSynth {SYNTH_VERSION}," in report

    res2 = run_demo(tmp_path / "again", n=16, device="cpu", detector=str(det), rgb_detector=str(rgb),
                                progress=False, formats=("png",))
    assert res2.results["alignment"]["defocus"]["mean_overlap"] == a["defocus"]["mean_overlap"]
    assert res2.results["variance"]["ks_statistic"] == results["variance"]["ks_statistic"]


def test_demo_rejects_bad_n(tmp_path):
    with pytest.raises(ValueError, match="even"):
        run_demo(tmp_path, n=7)


def test_demo_cli_registered():
    from defocus_xai.cli import build_parser

    args = build_parser().parse_args(["demo", "--out", "x"])
    assert args.n == DEFAULT_N and args.detector == "bundled-defocus" and not args.quiet
