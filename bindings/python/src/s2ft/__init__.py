"""libs2ft for Python: Structured Sparse Fine-Tuning over the C ABI, with DLPack tensors.

S2FT trains a few selected attention heads and FFN channels per layer
(columns of o_proj/down_proj, rows of v_proj/up_proj), co-permutes them to
the front of the weights, and back-propagates through those slices only.

- :class:`Context`: backend and device; everything that computes takes one.
- :class:`Statistics`, :func:`select`, :class:`Selection`: choosing units.
- :func:`permute`: the co-permutation of one layer's weights.
- :func:`forward_partial`, :func:`backward_partial`, :class:`Optimizer`: training.
- :class:`Adapter`, :class:`Model`, :func:`forward_mixed`: shipping and serving.
- :class:`Checkpoint`: Hugging Face folders, memory-mapped, zero-copy views.
- :class:`SparseDelta`: unstructured sparse deltas (CSR) on a context's device.
- :class:`SparseSet`, :func:`backward_sparse`, :func:`lift_select`: unstructured sparse
  training (LIFT, SpIEL) with gradients at the trained entries only;
  :func:`lift_refresh` (LIFT's mask refresh) and :class:`Spiel` (SpIEL's schedule);
  sparse entries of any :class:`Weight` in an adapter (:meth:`Adapter.set_sparse`).
- :func:`sorsa_init`, :func:`sorsa_forward`, :func:`sorsa_backward`, :func:`sorsa_regularizer`:
  SORSA's trained singular vectors and values.

Tensors are any objects with ``__dlpack__`` (NumPy, PyTorch, JAX, CuPy),
passed zero-copy (see :mod:`s2ft.tensor`). Failures raise
:class:`S2FTError` subclasses with the library's status and message.
Handles are not locked: use a context and what is made from it from one
thread at a time.
"""

from . import _capi
from ._library import api as _api
from ._library import bundled as _bundled
from ._library import path as _path
from .adapter import Adapter, LowRankEntry, LowRankInfo, SparseEntries, SparseInfo, forward_mixed
from .checkpoint import Checkpoint, CheckpointTensor, TensorInfo
from .context import Context, device_count
from .enums import (
    Allocation,
    Axis,
    DeltaPath,
    DeviceType,
    Direction,
    DType,
    HeadGranularity,
    LiftMethod,
    OptimizerKind,
    Order,
    PermKind,
    SpielDecay,
    SpielMaSource,
    SpielRegrow,
    Strategy,
    StatKind,
    Target,
    Weight,
)
from .errors import (
    BackendError,
    DeviceError,
    DtypeError,
    FileIOError,
    FormatError,
    InternalError,
    InvalidArgumentError,
    OutOfMemoryError,
    S2FTError,
    ShapeError,
    StateError,
    UnsupportedError,
    clear_error,
    last_error,
    status_string,
)
from .model import Model
from .optimizer import Optimizer
from .partial import Slice, backward_partial, forward_partial
from .selection import Selection, select
from .shape import ModelShape
from .sorsa import sorsa_backward, sorsa_forward, sorsa_init, sorsa_regularizer, sorsa_regularizer_step
from .sparse import SparseDelta
from .sparse_train import (
    SparseSet,
    Spiel,
    SpielStats,
    backward_sparse,
    lift_count_for_lora_rank,
    lift_refresh,
    lift_select,
    spiel_rate,
)
from .statistics import Statistics
from .tensor import Device, TensorView, as_tensor
from .weights import LayerWeights, permute

#: The version of these bindings (and of the C header they mirror).
__version__ = "%d.%d.%d" % (_capi.S2FT_VERSION_MAJOR, _capi.S2FT_VERSION_MINOR, _capi.S2FT_VERSION_PATCH)

#: The version number these bindings were written for (major * 10000 + minor * 100 + patch).
VERSION_NUMBER = _capi.S2FT_VERSION_NUMBER


def version():
    """The loaded library's version number (major * 10000 + minor * 100 + patch)."""
    return int(_api.s2ft_version())


def version_string():
    """The loaded library's version, e.g. ``"0.1.0"``."""
    return _api.s2ft_version_string().decode("ascii", "replace")


def live_handles():
    """The number of library objects alive in this process (for leak checks)."""
    return int(_api.s2ft_live_handles())


def library_path():
    """The path of the libs2ft file this package loaded."""
    return _path


def library_is_bundled():
    """True when the loaded libs2ft is the copy bundled in this package (pip's default build)."""
    return _bundled


__all__ = [
    "Adapter", "Allocation", "Axis", "BackendError", "Checkpoint", "CheckpointTensor", "Context",
    "DType", "DeltaPath", "Device", "DeviceError", "DeviceType", "Direction", "DtypeError",
    "FileIOError", "FormatError", "HeadGranularity", "InternalError", "InvalidArgumentError",
    "LayerWeights", "LiftMethod", "LowRankEntry", "LowRankInfo", "Model", "ModelShape", "Optimizer", "OptimizerKind", "Order",
    "OutOfMemoryError", "PermKind", "S2FTError", "Selection", "ShapeError", "Slice", "SparseDelta", "SparseSet",
    "SparseEntries", "SparseInfo", "Spiel", "SpielDecay", "SpielMaSource", "SpielRegrow", "SpielStats", "StatKind", "StateError",
    "Statistics", "Strategy", "Target", "TensorInfo", "TensorView", "Weight",
    "UnsupportedError", "VERSION_NUMBER", "as_tensor", "backward_partial", "backward_sparse", "clear_error",
    "device_count", "forward_mixed", "forward_partial", "last_error", "library_is_bundled",
    "library_path", "lift_count_for_lora_rank", "lift_refresh", "lift_select", "live_handles", "permute", "select",
    "sorsa_backward", "sorsa_forward", "sorsa_init", "sorsa_regularizer", "sorsa_regularizer_step", "spiel_rate", "status_string", "version",
    "version_string",
]
