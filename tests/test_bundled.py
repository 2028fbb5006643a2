"""The bundled detectors load offline by versioned and unversioned name, carry their identity, detect
held-out DefocusSynth fakes, and have not drifted from the estimator they were trained with.

Names: ``bundled-<kind>@<N>`` are the weights trained on DefocusSynth N (kept loadable when newer ones
ship); ``bundled-<kind>`` loads the newest (``BUNDLED_ALIASES``).

Drift policy: a loaded bundled detector always rebuilds its estimator from the configuration stored in its
sidecar (never from the current defaults), so changing ``DefocusEstimator``'s defaults cannot change it.
Still, a test fails when the estimator defaults (or the DefocusSynth version) differ from those the newest
weights were trained with, so that nobody changes them without retraining. What could change a loaded
detector itself is a change of the estimator's *code* or a new estimator parameter; two more checks catch
that: the newest weights' stored configuration must name exactly the parameters ``DefocusEstimator`` has
now, and the maps and scores of a fixed probe batch (stored at training time) must be reproduced by every
version.
"""

import json
import warnings

import numpy as np
import pytest
import torch

from defocus_xai.data.synth import SYNTH_VERSION, DefocusSynth
from defocus_xai.defocus.estimator import DefocusEstimator
from defocus_xai.detect import DefocusDetector, RGBDetector, detection_metrics, load_detector
from defocus_xai.detect.checkpoints import BUNDLED_ALIASES, BUNDLED_DETECTORS, BUNDLED_VERSIONS, WEIGHTS_DIR
from defocus_xai.detect.sidecar import CONFIG_KEYS, sidecar_digest
from defocus_xai.detect.state_dict import sha256_file

torch.set_num_threads(1)
N_HELD_OUT = 64  # the start of the probe's DefocusSynth seed: never seen in training (seed 0) or validation (2)
SIZE = 128
NEWEST = tuple(BUNDLED_ALIASES.values())


def _sidecar(name):
    return json.loads((WEIGHTS_DIR / f"{BUNDLED_ALIASES.get(name, name)}.json").read_text())


def _kind(name):
    return name.split("@")[0].removeprefix("bundled-")


_BATCHES = {}


def _held_out(name):
    """The first N_HELD_OUT samples of the probe's DefocusSynth seed, at the weights' version."""
    side = _sidecar(name)
    version, seed = side["synth"]["version"], int(side["probe"]["spec"].split(":")[2])
    if (version, seed) not in _BATCHES:
        ds = DefocusSynth(N_HELD_OUT, size=SIZE, seed=seed, version=version)
        images = torch.stack([torch.as_tensor(ds[i]["image"]) for i in range(len(ds))])
        _BATCHES[version, seed] = images, np.asarray(ds.labels), np.asarray(ds.sample_families)
    return _BATCHES[version, seed]


@pytest.fixture(scope="module")
def detectors():
    return {name: load_detector(name, device="cpu") for name in BUNDLED_DETECTORS}


def _proba(det, images):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return det.predict_proba(images, batch_size=32).numpy()


@pytest.fixture(scope="module")
def scores(detectors):
    return {name: _proba(detectors[name], _held_out(name)[0]) for name in BUNDLED_VERSIONS}


@pytest.mark.parametrize("name", BUNDLED_VERSIONS)
def test_files_are_small_safe_and_identified(name):
    pt = WEIGHTS_DIR / f"{name}.pt"
    assert pt.is_file() and pt.stat().st_size < 4 * 2**20
    sd = torch.load(pt, map_location="cpu", weights_only=True)  # plain tensors only
    assert all(torch.is_tensor(v) for v in sd.values())
    side = _sidecar(name)
    # version 1 was saved before the names were versioned
    assert side["name"] == (name.split("@")[0] if name.endswith("@1") else name)
    assert side["sha256"] == sha256_file(pt)
    assert side["sidecar_sha256"] == sidecar_digest(side)  # the sidecar is covered by its own digest
    assert set(side["config"]) <= CONFIG_KEYS[side["arch"]]
    assert side["arch"] == _kind(name) and side["config"]["backbone"] == "small-cnn"
    assert side["synth"]["version"] == f"{name.split('@')[1]}.0"
    assert side["synth"]["train"]["seed"] == 0 and side["synth"]["val"]["seed"] == 2
    assert side["synth"]["size"] == SIZE and side["synth"]["train"]["n"] >= 1000
    assert "train_bundled.py" in side["command"]
    assert side["metrics"]["validation"]["overall"]["roc_auc"] > 0.8


def test_aliases_load_the_newest_version(detectors):
    for alias, target in BUNDLED_ALIASES.items():
        versions = [n for n in BUNDLED_VERSIONS if n.split("@")[0] == alias]
        assert target == max(versions, key=lambda n: int(n.split("@")[1]))
        assert detectors[alias].identity["checksum"] == detectors[target].identity["checksum"]
        assert detectors[alias].identity["name"] == alias


def test_old_and_new_weights_both_load(detectors):
    """``@1`` (DefocusSynth 1.0) stays loadable by name beside the newest weights."""
    for kind, cls in (("defocus", DefocusDetector), ("rgb", RGBDetector)):
        old, new = detectors[f"bundled-{kind}@1"], detectors[f"bundled-{kind}"]
        assert isinstance(old, cls) and isinstance(new, cls)
        assert not old.training and not new.training
        assert old.identity["checksum"] != new.identity["checksum"]
        assert old.identity["synth"]["version"] == "1.0"
        assert new.identity["synth"]["version"] == SYNTH_VERSION != "1.0"
        assert "DefocusSynth" in new.identity["training_data"]
    assert detectors["bundled-defocus"].map_norm == "fixed" and detectors["bundled-rgb"].input_size == SIZE


@pytest.mark.parametrize("name", [n for n in BUNDLED_VERSIONS if _kind(n) == "defocus"])
def test_defocus_detector_uses_the_stored_estimator_config(detectors, name):
    stored = _sidecar(name)["config"]["estimator"]
    det = detectors[name]
    assert det.estimator.config() == {**det.estimator.config(), **stored}
    assert det.identity["estimator"] == stored


def test_newest_estimator_config_names_every_parameter():
    """A new estimator parameter would silently take its default: retrain and ship new weights."""
    stored = _sidecar("bundled-defocus")["config"]["estimator"]
    assert set(DefocusEstimator(size=SIZE).config()) == set(stored)


def test_defaults_have_not_drifted_from_the_bundled_weights():
    """Changing the estimator defaults or DefocusSynth without retraining fails here.

    The bundled detector itself is unaffected (it uses its stored configuration), but
    ``DefocusDetector(estimator={"size": 128})`` would no longer make the maps it was trained on, and its
    documented training recipe would be stale: rerun ``examples/train_bundled.py`` and ship new weights.
    """
    stored = _sidecar("bundled-defocus")["config"]["estimator"]
    current = DefocusEstimator(size=SIZE).config()
    changed = {k: (stored.get(k), current.get(k)) for k in set(current) | set(stored)
               if stored.get(k) != current.get(k)}
    assert not changed, f"estimator defaults changed since the bundled weights were trained (stored, now): {changed}"
    for name in BUNDLED_ALIASES:
        assert _sidecar(name)["synth"]["version"] == SYNTH_VERSION, "DefocusSynth changed: retrain"


@pytest.mark.parametrize("name", BUNDLED_VERSIONS)
def test_probe_batch_reproduced(detectors, scores, name):
    """Maps and scores of the probe batch stored at training time: catches estimator or model drift."""
    probe = _sidecar(name)["probe"]
    n = int(probe["spec"].split(":")[1])
    # sample i of DefocusSynth depends only on (version, seed, i): the probe is the start of the held-out batch
    assert n <= N_HELD_OUT and probe["size"] == SIZE
    images = _held_out(name)[0][:n]
    det = detectors[name]
    if "map_mean" in probe:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", RuntimeWarning)
            maps = det.map_from_images(images)
        np.testing.assert_allclose(maps.flatten(1).mean(1).numpy(), probe["map_mean"], atol=2e-3)
    np.testing.assert_allclose(scores[name][:n], probe["probability"], atol=5e-3)


def test_detect_held_out_fakes(scores):
    auc = {}
    for name in NEWEST:
        _, labels, _ = _held_out(name)
        assert labels.sum() == N_HELD_OUT // 2
        auc[name] = detection_metrics(labels, scores[name])["roc_auc"]
    assert auc[BUNDLED_ALIASES["bundled-defocus"]] > 0.75, auc
    assert auc[BUNDLED_ALIASES["bundled-rgb"]] > 0.75, auc
    # the defocus detector sees a blur floor everywhere and a head pasted at another blur (the absolute
    # blur scale kept by map_norm="fixed"); no_dof is ambiguous on DefocusSynth 2.0 (deep-focus reals)
    name = BUNDLED_ALIASES["bundled-defocus"]
    _, labels, families = _held_out(name)
    sel = np.isin(families, ("real", "generator_smoothing", "splice"))
    assert detection_metrics(labels[sel], scores[name][sel])["roc_auc"] > 0.9
