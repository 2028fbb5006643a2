"""Detection metrics against scikit-learn and hand-computed cases."""

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from defocus_xai.detect import detection_metrics, metrics_by_group
from defocus_xai.detect.metrics import METRIC_KEYS, equal_error_rate


@pytest.fixture
def fixed():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.clip(rng.normal(0.4 + 0.25 * y, 0.2), 0, 1)
    return y, s


def test_matches_sklearn(fixed):
    y, s = fixed
    m = detection_metrics(y, s, threshold=0.5)
    pred = (s >= 0.5).astype(int)
    assert list(m) == list(METRIC_KEYS)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(y, s))
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (tn, fp, fn, tp)
    assert m["n"] == 200 and m["n_real"] + m["n_fake"] == 200
    assert all(isinstance(m[k], int) for k in ("tn", "fp", "fn", "tp", "n"))


def test_threshold_and_inputs():
    import torch

    y = [0, 0, 1, 1]
    s = [0.1, 0.6, 0.4, 0.9]
    assert detection_metrics(y, s)["tp"] == 1
    assert detection_metrics(y, s, threshold=0.3)["tp"] == 2
    assert detection_metrics(torch.tensor(y), torch.tensor(s))["roc_auc"] == 0.75
    # nothing predicted fake: precision and F1 are 0, not NaN
    m = detection_metrics(y, s, threshold=2.0)
    assert m["precision"] == 0.0 and m["f1"] == 0.0
    with pytest.raises(ValueError, match="labels must be 0"):
        detection_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="same length"):
        detection_metrics([0, 1], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        detection_metrics([0, 1], [0.1, float("nan")])


def test_single_class_warns():
    with pytest.warns(RuntimeWarning, match="undefined"):
        m = detection_metrics([1, 1], [0.2, 0.9])
    assert math.isnan(m["roc_auc"]) and m["recall"] == 0.5


def test_eer_hand_computed():
    # ROC points (FPR, FNR): (0, .5) at t=.8, (.25, .5) at t=.7, (.25, 0) at t=.6: FPR = FNR at 0.25,
    # halfway between the thresholds 0.7 and 0.6
    eer, thr = equal_error_rate([0, 0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.6, 0.8])
    assert eer == pytest.approx(0.25) and thr == pytest.approx(0.65)
    # perfect separation: 0; reversed scores: 1
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])[0] == 0.0
    assert equal_error_rate([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1])[0] == 1.0
    # operating points (FPR, FNR) at thresholds .6 and .5: (0, 1/3) and (1/2, 1/3); the line FPR = FNR
    # crosses that horizontal segment at FPR = 1/3, two thirds of the way from .6 to .5
    eer, thr = equal_error_rate([0, 0, 1, 1, 1], [0.1, 0.5, 0.4, 0.6, 0.7])
    assert eer == pytest.approx(1 / 3) and thr == pytest.approx(0.6 - 0.1 * 2 / 3)


def test_eer_matches_roc_crossing(fixed):
    y, s = fixed
    fpr, tpr, _ = skm.roc_curve(y, s)
    eer = detection_metrics(y, s)["eer"]
    # the EER lies between the best |FPR - FNR| operating points
    i = np.argmin(np.abs(fpr - (1 - tpr)))
    assert abs(eer - fpr[i]) < 0.05 and abs(eer - (1 - tpr[i])) < 0.05


def test_metrics_by_group_scores_each_family_against_all_reals():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.3, 0.6, 0.9, 0.8, 0.2, 0.7])
    g = ["real", "real", "real", "a", "a", "b", "b"]
    df = metrics_by_group(y, s, g)
    assert list(df.index) == ["a", "b", "all"]
    assert df.loc["a", "n"] == 5 and df.loc["a", "n_real"] == 3 and df.loc["a", "n_fake"] == 2
    assert df.loc["a", "roc_auc"] == pytest.approx(skm.roc_auc_score([0, 0, 0, 1, 1], [0.1, 0.3, 0.6, 0.9, 0.8]))
    assert df.loc["b", "roc_auc"] == pytest.approx(skm.roc_auc_score([0, 0, 0, 1, 1], [0.1, 0.3, 0.6, 0.2, 0.7]))
    assert df.loc["all", "roc_auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert list(metrics_by_group(y, s, g, include_all=False).index) == ["a", "b"]
    with pytest.raises(ValueError, match="groups"):
        metrics_by_group(y, s, g[:-1])
