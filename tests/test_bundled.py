"""The bundled detectors load offline, carry their identity, detect held-out DefocusSynth fakes, and have not
drifted from the estimator they were trained with.

Drift policy: a loaded bundled detector always rebuilds its estimator from the configuration stored in its
sidecar (never from the current defaults), so changing ``DefocusEstimator``'s defaults cannot change it.
Still, a test fails when the estimator defaults (or the DefocusSynth version)
differ from those the weights were trained with, so that nobody changes them without retraining. What
could change the loaded detector itself is a change of the estimator's *code* or a new estimator
parameter; two more checks catch that: the stored configuration must name exactly the parameters
``DefocusEstimator`` has now, and the maps and scores of a fixed probe batch (stored at training time)
must be reproduced.
"""

import json
import warnings

import numpy as np
import pytest
import torch

from defocus_xai.data.synth import SYNTH_VERSION, DefocusSynth
from defocus_xai.defocus.estimator import DefocusEstimator
from defocus_xai.detect import DefocusDetector, RGBDetector, detection_metrics, load_detector
from defocus_xai.detect.checkpoints import BUNDLED_DETECTORS, WEIGHTS_DIR
from defocus_xai.detect.sidecar import CONFIG_KEYS, sidecar_digest
from defocus_xai.detect.state_dict import sha256_file

torch.set_num_threads(1)
N_HELD_OUT = 64  # DefocusSynth seed 1: never seen in training (seed 0) or validation (seed 2)
SIZE = 128


def _sidecar(name):
    return json.loads((WEIGHTS_DIR / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def held_out():
    ds = DefocusSynth(N_HELD_OUT, size=SIZE, seed=1)
    images = torch.stack([torch.as_tensor(ds[i]["image"]) for i in range(len(ds))])
    return images, np.asarray(ds.labels), ds.sample_families


@pytest.fixture(scope="module")
def detectors():
    return {name: load_detector(name, device="cpu") for name in BUNDLED_DETECTORS}


def _proba(det, images):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return det.predict_proba(images, batch_size=32).numpy()


@pytest.mark.parametrize("name", BUNDLED_DETECTORS)
def test_files_are_small_safe_and_identified(name):
    pt = WEIGHTS_DIR / f"{name}.pt"
    assert pt.is_file() and pt.stat().st_size < 4 * 2**20
    sd = torch.load(pt, map_location="cpu", weights_only=True)  # plain tensors only
    assert all(torch.is_tensor(v) for v in sd.values())
    side = _sidecar(name)
    assert side["name"] == name and side["sha256"] == sha256_file(pt)
    assert side["sidecar_sha256"] == sidecar_digest(side)  # the sidecar is covered by its own digest
    assert set(side["config"]) <= CONFIG_KEYS[side["arch"]]
    assert side["arch"] == {"bundled-defocus": "defocus", "bundled-rgb": "rgb"}[name]
    assert side["config"]["backbone"] == "small-cnn"
    assert side["synth"]["train"]["seed"] == 0 and side["synth"]["val"]["seed"] == 2
    assert side["synth"]["size"] == SIZE and side["synth"]["train"]["n"] >= 1000
    assert "train_bundled.py" in side["command"]
    assert side["metrics"]["validation"]["overall"]["roc_auc"] > 0.8


def test_loaded_identity(detectors):
    d, r = detectors["bundled-defocus"], detectors["bundled-rgb"]
    assert isinstance(d, DefocusDetector) and isinstance(r, RGBDetector)
    assert not d.training and not r.training
    for det, name in ((d, "bundled-defocus"), (r, "bundled-rgb")):
        assert det.identity["name"] == name
        assert det.identity["checksum"] == "sha256:" + _sidecar(name)["sha256"]
        assert "DefocusSynth" in det.identity["training_data"] and "synth" in det.identity
    assert d.map_norm == "fixed" and r.input_size == SIZE


def test_defocus_detector_uses_the_stored_estimator_config(detectors):
    stored = _sidecar("bundled-defocus")["config"]["estimator"]
    det = detectors["bundled-defocus"]
    assert det.estimator.config() == stored
    assert det.identity["estimator"] == stored
    # the estimator has the same parameters as when the weights were trained (a new parameter would
    # silently take its default: retrain with examples/train_bundled.py and update the sidecar)
    assert set(DefocusEstimator(size=SIZE).config()) == set(stored)


def test_defaults_have_not_drifted_from_the_bundled_weights():
    """Changing the estimator defaults or DefocusSynth without retraining fails here.

    The bundled detector itself is unaffected (it uses its stored configuration), but
    ``DefocusDetector(estimator={"size": 128})`` would no longer make the maps it was trained on, and its
    documented training recipe would be stale: rerun ``python examples/train_bundled.py``.
    """
    side = _sidecar("bundled-defocus")
    current = DefocusEstimator(size=SIZE).config()
    changed = {k: (side["config"]["estimator"].get(k), current.get(k))
               for k in set(current) | set(side["config"]["estimator"])
               if side["config"]["estimator"].get(k) != current.get(k)}
    assert not changed, f"estimator defaults changed since the bundled weights were trained (stored, now): {changed}"
    for name in BUNDLED_DETECTORS:
        assert _sidecar(name)["synth"]["version"] == SYNTH_VERSION, "DefocusSynth changed: retrain"


@pytest.fixture(scope="module")
def scores(detectors, held_out):
    return {name: _proba(det, held_out[0]) for name, det in detectors.items()}


@pytest.mark.parametrize("name", BUNDLED_DETECTORS)
def test_probe_batch_reproduced(detectors, held_out, scores, name):
    """Maps and scores of the probe batch stored at training time: catches estimator or model drift."""
    probe = _sidecar(name)["probe"]
    n, seed = (int(v) for v in probe["spec"].split(":")[1:])
    # sample i of DefocusSynth depends only on (seed, i): the probe is the start of the held-out batch
    assert seed == 1 and n <= N_HELD_OUT and probe["size"] == SIZE
    images = held_out[0][:n]
    det = detectors[name]
    if "map_mean" in probe:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", RuntimeWarning)
            maps = det.map_from_images(images)
        np.testing.assert_allclose(maps.flatten(1).mean(1).numpy(), probe["map_mean"], atol=2e-3)
    np.testing.assert_allclose(scores[name][:n], probe["probability"], atol=5e-3)


def test_detect_held_out_fakes(held_out, scores):
    _, labels, families = held_out
    assert labels.sum() == N_HELD_OUT // 2
    auc = {name: detection_metrics(labels, p)["roc_auc"] for name, p in scores.items()}
    assert auc["bundled-defocus"] > 0.75, auc
    assert auc["bundled-rgb"] > 0.6, auc
    # the defocus detector sees "no depth of field at all" (absolute blur scale kept by map_norm="fixed")
    fam = np.asarray(families)
    sel = (fam == "real") | (fam == "no_dof")
    assert detection_metrics(labels[sel], scores["bundled-defocus"][sel])["roc_auc"] > 0.8
