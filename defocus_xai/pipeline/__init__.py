"""One analysis pipeline: stages on store arrays, the demo, ``paper_figures`` and the demo's report.

Every stage takes the arrays of an attribution store plus :class:`PipelineSettings` and returns a
:class:`StageResult` (numbers, figures with captions, a table); :func:`run_demo` and
:func:`paper_figures` are built from the same stages. See ``docs/demo.md`` and ``docs/figures.md``.
"""

from .demo import DEFAULT_N, DemoResult, run_demo
from .figures import paper_figures
from .attribution_stages import stage_alignment, stage_attributions, stage_localization
from .inputs import (attribution_maps, attribution_reference, open_arrays, pick_examples, sample_kwargs, sample_name,
                     store_pairs)
from .model_stages import stage_defocus_maps, stage_detection, stage_faithfulness, stage_randomization
from .report import write_report
from .result import StageResult, jsonable
from .settings import PipelineSettings
from .stages import stage_embedding, stage_masks, stage_variance

__all__ = [
    "PipelineSettings", "StageResult", "jsonable",
    "open_arrays", "store_pairs", "attribution_maps", "attribution_reference", "pick_examples", "sample_name",
    "sample_kwargs",
    "stage_defocus_maps", "stage_detection", "stage_masks", "stage_variance", "stage_embedding",
    "stage_alignment", "stage_attributions", "stage_localization", "stage_randomization", "stage_faithfulness",
    "run_demo", "DemoResult", "DEFAULT_N", "paper_figures", "write_report",
]
