"""Attribution engines: one function per method, ``(model, x, bg, idx, settings) -> EngineOutput``.

``model`` is the explained function (:class:`~defocus_xai.explain.engines.base.Explained`), ``x`` the
inputs and ``bg`` the background rows on the model's device, ``idx`` the samples' data-set indices (they
select the random draws) and ``settings`` a resolved :class:`~defocus_xai.explain.settings.AttributionSettings`.
"""

from .base import EngineOutput, Explained, check_differentiable, explained_forward
from .captum_methods import deeplift, input_x_gradient, integrated_gradients, occlusion, saliency
from .expected_gradients import gradient_shap, shap_gradient
from .shap_deep import shap_deep

__all__ = ["ENGINES_BY_METHOD", "EngineOutput", "Explained", "explained_forward", "check_differentiable"]

ENGINES_BY_METHOD = {
    "shap_gradient": shap_gradient,
    "shap_deep": shap_deep,
    "gradient_shap": gradient_shap,
    "integrated_gradients": integrated_gradients,
    "deeplift": deeplift,
    "saliency": saliency,
    "input_x_gradient": input_x_gradient,
    "occlusion": occlusion,
}
"""The engine function of each method in :data:`~defocus_xai.explain.settings.METHODS`."""
