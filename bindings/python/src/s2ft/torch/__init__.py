"""s2ft.torch: Structured Sparse Fine-Tuning of PyTorch / transformers models with libs2ft.

- :func:`prepare` selects heads and channels of a LLaMA, Mistral or Qwen2
  model (libs2ft's s2ft_select over weight, activation or gradient
  statistics, or at random), co-permutes every layer so that they are
  contiguous, freezes everything and replaces o_proj/down_proj (and
  optionally v_proj/up_proj) by :class:`S2FTLinear` layers whose one
  trainable Parameter is the selected slice. Any torch optimizer trains it.
- :class:`S2FTLinear` runs libs2ft's partial forward/backward
  (:mod:`s2ft.torch.functional`): dx and the slice's gradient only, saving
  x[:, S] instead of x for column slices.
- :func:`export_adapter` writes what training changed as a libs2ft adapter
  (base order, fingerprinted against the unpermuted base) that ``s2ft
  merge``, :class:`s2ft.Model` and the other bindings apply.
- :func:`unprepare` restores the original modules and weight order with the
  trained slices merged.
- :class:`S2FTOptimizer`: libs2ft's fused AdamW/SGD over the slices.

Needs PyTorch (not a dependency of the s2ft package) and, for prepare,
transformers' model classes.
"""

from .adapter import adapter_of, export_adapter
from .architectures import MODEL_TYPES, model_shape
from .functional import ColumnPartialLinear, RowPartialLinear, partial_linear
from .linear import S2FTLinear
from .optim import S2FTOptimizer
from .prepare import DEFAULT_RATIO, prepare, unprepare
from .state import S2FTState, state_of

__all__ = [
    "ColumnPartialLinear",
    "DEFAULT_RATIO",
    "MODEL_TYPES",
    "RowPartialLinear",
    "S2FTLinear",
    "S2FTOptimizer",
    "S2FTState",
    "adapter_of",
    "export_adapter",
    "model_shape",
    "partial_linear",
    "prepare",
    "state_of",
    "unprepare",
]
