"""``shap_deep``: shap's DeepExplainer (DeepLift-type rules, the background as the reference distribution)."""

from __future__ import annotations

import numpy as np
import torch

from .base import EngineOutput, Explained, check_layers, chunks

__all__ = ["shap_deep"]


def shap_deep(model: Explained, x, bg, idx, s) -> EngineOutput:
    """Attributions of ``x`` (``s``: resolved AttributionSettings; ``check_additivity`` in its method_kwargs)."""
    import shap

    check_layers(model, bg[:1], "shap_deep")
    check = bool(s.method_kwargs.get("check_additivity", True))
    ex = shap.DeepExplainer(model, bg)
    out = torch.zeros(x.shape, dtype=torch.float32)
    step = max(1, min(s.batch_size, s.eval_batch_size // max(1, 2 * bg.shape[0])))
    for a, e in chunks(x.shape[0], step):
        try:
            vals = ex.shap_values(x[a:e], check_additivity=check)
        except AssertionError as err:
            raise ValueError(f"method='shap_deep': shap's additivity check failed for "
                             f"{type(model.detector).__name__} (functional non-linearities that DeepExplainer "
                             f"cannot see?): {err}") from err
        out[a:e] = torch.from_numpy(np.asarray(vals, dtype=np.float32).reshape((e - a,) + tuple(x.shape[1:])))
    return EngineOutput(out, {"check_additivity": check, "shap_version": shap.__version__}, {})
